-- The audit trail (threadline.audit): privileged actions, hash-chained over their
-- stored bytes. seq numbers entries 1, 2, 3 without gaps.
CREATE TABLE audit_entries (
    seq   bigint PRIMARY KEY,
    entry bytea  NOT NULL,
    hash  bytea  NOT NULL
);

-- The last entry's seq and hash, written in the same transaction as the entries
-- (one row, hash NULL before the first entry). Appenders lock it FOR UPDATE, so
-- they take turns and never fork the chain.
CREATE TABLE audit_head (
    id   boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq  bigint  NOT NULL,
    hash bytea
);
INSERT INTO audit_head (id, seq, hash) VALUES (true, 0, NULL);

-- Signed statements that entry seq has hash: at is the signed time as text, exactly.
CREATE TABLE audit_checkpoints (
    seq       bigint PRIMARY KEY,
    hash      bytea  NOT NULL,
    at        text   NOT NULL,
    signature bytea  NOT NULL
);

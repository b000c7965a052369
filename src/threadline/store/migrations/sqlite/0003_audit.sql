-- The audit trail (threadline.audit): privileged actions, hash-chained over their
-- stored bytes. seq numbers entries 1, 2, 3 without gaps.
CREATE TABLE audit_entries (
    seq   INTEGER PRIMARY KEY,
    entry BLOB    NOT NULL,
    hash  BLOB    NOT NULL
);

-- The last entry's seq and hash, written in the same transaction as the entries
-- (one row, hash NULL before the first entry).
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash BLOB
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, NULL);

-- Signed statements that entry seq has hash: at is the signed time as text, exactly.
CREATE TABLE audit_checkpoints (
    seq       INTEGER PRIMARY KEY,
    hash      BLOB    NOT NULL,
    at        TEXT    NOT NULL,
    signature BLOB    NOT NULL
);

-- The identity directory: a projection of the customer streams (threadline.identity).
-- identifier is kind:value in canonical form.
CREATE TABLE identity_links (
    identifier  TEXT    PRIMARY KEY,
    kind        TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    customer_id TEXT    NOT NULL,
    verified    INTEGER NOT NULL,
    method      TEXT    NOT NULL,
    linked_by   TEXT    NOT NULL,
    position    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX identity_links_customer ON identity_links (customer_id, identifier);

CREATE TABLE identity_merges (
    customer_id   TEXT PRIMARY KEY,
    into_customer TEXT NOT NULL,
    merge_id      TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX identity_merges_into ON identity_merges (into_customer);

CREATE TABLE identity_conflicts (
    conflict_id TEXT    PRIMARY KEY,
    identifier  TEXT    NOT NULL,
    claimed_for TEXT    NOT NULL,
    held_by     TEXT    NOT NULL,
    verified    INTEGER NOT NULL,
    method      TEXT    NOT NULL,
    linked_by   TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    position    INTEGER NOT NULL,
    resolved_by TEXT
) WITHOUT ROWID;
CREATE INDEX identity_conflicts_status ON identity_conflicts (status, position);

-- The last log position folded into the tables above, written in the same transaction.
CREATE TABLE identity_checkpoint (
    name     TEXT    PRIMARY KEY,
    position INTEGER NOT NULL
) WITHOUT ROWID;

-- Per-customer data keys (threadline.store.sealing), each wrapped by the master key.
-- owner is a customer id, or conversation:<id> for a conversation's own key.
-- Erasure deletes an owner's rows: the writer connection runs with secure_delete on,
-- so deleted and moved rows are overwritten with zeros, and the WAL is then truncated.
CREATE TABLE data_keys (
    key_id     TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    wrapped_by TEXT NOT NULL,
    wrapped    BLOB NOT NULL,
    created_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX data_keys_owner ON data_keys (owner, created_at);

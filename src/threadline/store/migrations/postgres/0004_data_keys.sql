-- Per-customer data keys (threadline.store.sealing), each wrapped by the master key.
-- owner is a customer id, or conversation:<id> for a conversation's own key.
-- Erasure deletes an owner's rows, then rewrites the table (VACUUM FULL) so no copy of a
-- wrapped key is left in its files.
CREATE TABLE data_keys (
    key_id     text        COLLATE "C" PRIMARY KEY,
    owner      text        COLLATE "C" NOT NULL,
    wrapped_by text        NOT NULL,
    wrapped    bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX data_keys_owner ON data_keys (owner, created_at);

-- The canonical event log, snapshots and consumer progress.
CREATE TABLE events (
    position        INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    event_id        TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    occurred_at     TEXT    NOT NULL,
    recorded_at     TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    leg_id          TEXT,
    actor_kind      TEXT    NOT NULL,
    actor_id        TEXT    NOT NULL,
    customer_id     TEXT,
    correlation_id  TEXT    NOT NULL,
    causation_id    TEXT,
    idempotency_key TEXT    NOT NULL,
    lineage         BLOB    NOT NULL,
    payload         BLOB    NOT NULL
);
CREATE UNIQUE INDEX events_stream ON events (conversation_id, seq);
CREATE UNIQUE INDEX events_idempotency ON events (conversation_id, idempotency_key);
CREATE UNIQUE INDEX events_event_id ON events (event_id);

CREATE TABLE snapshots (
    conversation_id TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    state           BLOB    NOT NULL,
    PRIMARY KEY (conversation_id, schema_version)
) WITHOUT ROWID;

CREATE TABLE consumer_checkpoints (
    group_name TEXT PRIMARY KEY,
    position   INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE handled (
    group_name TEXT NOT NULL,
    key        TEXT NOT NULL,
    PRIMARY KEY (group_name, key)
) WITHOUT ROWID;

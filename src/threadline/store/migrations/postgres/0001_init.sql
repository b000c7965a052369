-- Threadline event store, PostgreSQL schema version 1.
--
-- Runs with search_path set to the store's schema, inside one transaction
-- guarded by an advisory lock (see threadline.store.postgres).

-- One row per conversation: the head of its stream. Appends lock this row, so
-- writers of one conversation take turns while other conversations proceed.
-- last_position lets an append notice that a transaction with a higher id
-- already wrote to the stream (see threadline_append_batch).
CREATE TABLE streams (
    conversation_id text    PRIMARY KEY,
    head            integer NOT NULL,
    last_position   bigint  NOT NULL
);

-- The log. position = (writing transaction id << 20) + ordinal, so ordering by
-- position orders by (transaction id, place in the transaction); the
-- transaction id is position >> 20. Fixed-width columns come first so the row
-- needs no alignment padding.
CREATE TABLE events (
    position        bigint      NOT NULL,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL,
    seq             integer     NOT NULL,
    version         smallint    NOT NULL,
    event_id        uuid        NOT NULL,
    conversation_id text        NOT NULL,
    type            text        NOT NULL,
    channel         text        NOT NULL,
    leg_id          text,
    actor_kind      text        NOT NULL,
    actor_id        text        NOT NULL,
    customer_id     text,
    correlation_id  text        NOT NULL,
    causation_id    text,
    idempotency_key text        NOT NULL,
    lineage         bytea       NOT NULL,
    payload         bytea       NOT NULL,
    CONSTRAINT events_pkey PRIMARY KEY (position),
    CONSTRAINT events_stream_seq UNIQUE (conversation_id, seq),
    CONSTRAINT events_stream_key UNIQUE (conversation_id, idempotency_key),
    CONSTRAINT events_event_id UNIQUE (event_id)
);

CREATE TABLE snapshots (
    conversation_id text     NOT NULL,
    schema_version  integer  NOT NULL,
    seq             integer  NOT NULL,
    state           bytea    NOT NULL,
    PRIMARY KEY (conversation_id, schema_version)
);

CREATE TABLE consumer_checkpoints (
    group_name text   PRIMARY KEY,
    position   bigint NOT NULL
);

CREATE TABLE handled (
    group_name text NOT NULL,
    key        text NOT NULL,
    PRIMARY KEY (group_name, key)
);

-- Appends a batch of appends to distinct conversations in the calling
-- transaction and reports one outcome row per append, in input order. It
-- never raises for a stale expected seq or a reused idempotency key, so one
-- bad append does not fail the others.
--
-- Per append: p_conversation_ids, p_expected_seqs (-1 any, 0 no stream, n head)
-- and p_counts (number of events). Per event, appends concatenated in input
-- order: the remaining arrays. Conversation ids must be distinct; a repeated
-- id makes the call fail.
--
-- status: 'o' appended; 'd' repeat of an earlier append (first_seq and
-- first_position are the stored ones); 'c' stale expected seq (head is the
-- actual head); 'i' idempotency keys reused for a different append; 'r' a
-- transaction with a higher id already wrote to the stream, so this one
-- cannot place the events after it: retry in a new transaction.
--
-- Positions: (transaction id << 20) + ordinal. Ordinals are consecutive
-- within an append and leave a gap of one between appends, so the events of
-- one append are exactly a run of consecutive positions; that is how a repeat
-- is told apart from a call that reuses part of an earlier append's keys.
CREATE FUNCTION threadline_append_batch(
    p_conversation_ids text[],
    p_expected_seqs    integer[],
    p_counts           integer[],
    p_event_ids        uuid[],
    p_types            text[],
    p_versions         smallint[],
    p_occurred_at      timestamptz[],
    p_channels         text[],
    p_leg_ids          text[],
    p_actor_kinds      text[],
    p_actor_ids        text[],
    p_customer_ids     text[],
    p_correlation_ids  text[],
    p_causation_ids    text[],
    p_idempotency_keys text[],
    p_lineages         bytea[],
    p_payloads         bytea[]
) RETURNS TABLE (status "char", head integer, first_seq integer, first_position bigint)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    v_base  bigint := pg_current_xact_id()::text::bigint << 20;
    v_next  bigint;  -- first free ordinal in this transaction
BEGIN
    -- Lock every stream in one consistent order, creating missing ones.
    -- ON CONFLICT DO UPDATE ... WHERE false locks the row without writing it.
    INSERT INTO streams AS s (conversation_id, head, last_position)
    SELECT c, 0, 0 FROM unnest(p_conversation_ids) AS c ORDER BY c COLLATE "C"
    ON CONFLICT (conversation_id) DO UPDATE SET head = s.head WHERE false;

    SELECT coalesce(max(e.position) - v_base + 2, 0) INTO v_next
    FROM events e WHERE e.position >= v_base AND e.position < v_base + 1048576;
    IF v_next + cardinality(p_event_ids) + cardinality(p_conversation_ids) > 1048576 THEN
        RAISE EXCEPTION 'threadline_append_batch: too many events in one transaction'
            USING ERRCODE = 'program_limit_exceeded';
    END IF;

    -- A new statement, so a new snapshot: it sees everything committed by the
    -- transactions that held these locks before us.
    RETURN QUERY
    WITH appends AS (
        SELECT a.i::integer AS i, a.conversation_id, a.expected, a.n,
               (sum(a.n) OVER (ORDER BY a.i) - a.n)::integer AS off
        FROM unnest(p_conversation_ids, p_expected_seqs, p_counts)
             WITH ORDINALITY AS a(conversation_id, expected, n, i)
    ), starts AS (
        SELECT array_agg(off + 1 ORDER BY i) AS firsts FROM appends
    ), keyed AS (
        SELECT width_bucket(k.j, (SELECT firsts FROM starts)) AS i, k.j::integer AS j, k.key
        FROM unnest(p_idempotency_keys) WITH ORDINALITY AS k(key, j)
    ), hits AS (
        -- Earlier events that carry this call's keys; a repeat must match them
        -- all, in order, as one run of seqs and positions.
        SELECT k.i, count(*)::integer AS n,
               bool_or(k.j = a.off + 1) AS first_hit,
               min(e.seq - k.j) = max(e.seq - k.j)
                   AND min(e.position - k.j) = max(e.position - k.j) AS aligned,
               min(e.seq - k.j) + min(a.off) + 1 AS first_seq,
               min(e.position - k.j) + min(a.off) + 1 AS first_position
        FROM keyed k
        JOIN appends a ON a.i = k.i
        JOIN events e ON e.conversation_id = a.conversation_id AND e.idempotency_key = k.key
        GROUP BY k.i
    ), classified AS (
        SELECT a.i, a.conversation_id, a.n, a.off, s.head, h.first_seq, h.first_position,
               CASE
                 WHEN h.i IS NULL THEN
                   CASE WHEN a.expected <> -1 AND a.expected <> s.head THEN 'c'
                        WHEN s.last_position >= v_base + 1048576 THEN 'r'
                        ELSE 'o' END
                 WHEN h.first_hit AND h.n = a.n AND h.aligned
                      AND NOT EXISTS (
                          SELECT 1 FROM events b
                          WHERE b.conversation_id = a.conversation_id
                            AND b.seq = h.first_seq - 1 AND b.position = h.first_position - 1)
                      AND NOT EXISTS (
                          SELECT 1 FROM events b
                          WHERE b.conversation_id = a.conversation_id
                            AND b.seq = h.first_seq + a.n AND b.position = h.first_position + a.n)
                   THEN 'd'
                 ELSE 'i'
               END::"char" AS status
        FROM appends a
        JOIN streams s ON s.conversation_id = a.conversation_id
        LEFT JOIN hits h ON h.i = a.i
    ), accepted AS (
        SELECT c.i, c.conversation_id, c.n, c.off, c.head,
               v_base + v_next + sum(c.n + 1) OVER (ORDER BY c.i) - (c.n + 1) AS first_position
        FROM classified c
        WHERE c.status = 'o'
    ), inserted AS (
        INSERT INTO events (
            position, occurred_at, recorded_at, seq, version, event_id, conversation_id,
            type, channel, leg_id, actor_kind, actor_id, customer_id, correlation_id,
            causation_id, idempotency_key, lineage, payload)
        SELECT a.first_position + (x.j - a.off - 1), x.occurred_at, now(),
               a.head + (x.j - a.off)::integer, x.version, x.event_id, a.conversation_id,
               x.type, x.channel, x.leg_id, x.actor_kind, x.actor_id, x.customer_id,
               x.correlation_id, x.causation_id, x.idempotency_key, x.lineage, x.payload
        FROM unnest(p_event_ids, p_types, p_versions, p_occurred_at, p_channels, p_leg_ids,
                    p_actor_kinds, p_actor_ids, p_customer_ids, p_correlation_ids,
                    p_causation_ids, p_idempotency_keys, p_lineages, p_payloads)
             WITH ORDINALITY AS x(event_id, type, version, occurred_at, channel, leg_id,
                                  actor_kind, actor_id, customer_id, correlation_id,
                                  causation_id, idempotency_key, lineage, payload, j)
        JOIN accepted a ON a.i = width_bucket(x.j, (SELECT firsts FROM starts))
        ORDER BY 1
    ), advanced AS (
        UPDATE streams s
        SET head = a.head + a.n, last_position = a.first_position + a.n - 1
        FROM accepted a
        WHERE s.conversation_id = a.conversation_id
    )
    SELECT c.status, c.head,
           CASE c.status WHEN 'o' THEN c.head + 1 WHEN 'd' THEN c.first_seq END::integer,
           CASE c.status WHEN 'o' THEN a.first_position WHEN 'd' THEN c.first_position END
    FROM classified c
    LEFT JOIN accepted a ON a.i = c.i
    ORDER BY c.i;
END
$fn$;

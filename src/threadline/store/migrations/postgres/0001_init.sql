-- Threadline event store, PostgreSQL schema version 1.
--
-- Runs with search_path set to the store's schema, inside one transaction
-- guarded by an advisory lock (see threadline.store.postgres).
--
-- Identifiers that are indexed use COLLATE "C": they are opaque ids, and byte
-- comparison keeps every index probe cheap whatever the database's locale.

-- One row per conversation: the head of its stream. Appends lock this row, so
-- writers of one conversation take turns while other conversations proceed.
-- last_position lets an append notice that a transaction with a higher id
-- already wrote to the stream (see threadline_append_batch).
CREATE TABLE streams (
    conversation_id text    COLLATE "C" PRIMARY KEY,
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
    conversation_id text        COLLATE "C" NOT NULL,
    type            text        NOT NULL,
    channel         text        NOT NULL,
    leg_id          text,
    actor_kind      text        NOT NULL,
    actor_id        text        NOT NULL,
    customer_id     text,
    correlation_id  text        NOT NULL,
    causation_id    text,
    idempotency_key text        COLLATE "C" NOT NULL,
    lineage         bytea       NOT NULL,
    payload         bytea       NOT NULL,
    CONSTRAINT events_pkey PRIMARY KEY (position),
    CONSTRAINT events_stream_seq UNIQUE (conversation_id, seq),
    CONSTRAINT events_stream_key UNIQUE (conversation_id, idempotency_key),
    CONSTRAINT events_event_id UNIQUE (event_id)
);

CREATE TABLE snapshots (
    conversation_id text     COLLATE "C" NOT NULL,
    schema_version  integer  NOT NULL,
    seq             integer  NOT NULL,
    state           bytea    NOT NULL,
    PRIMARY KEY (conversation_id, schema_version)
);

CREATE TABLE consumer_checkpoints (
    group_name text   COLLATE "C" PRIMARY KEY,
    position   bigint NOT NULL
);

CREATE TABLE handled (
    group_name text COLLATE "C" NOT NULL,
    key        text COLLATE "C" NOT NULL,
    PRIMARY KEY (group_name, key)
);

-- Appends a batch of appends to distinct conversations in the calling
-- transaction and reports one outcome row per append, in input order. It never
-- raises for a stale expected seq or a reused idempotency key, so one bad
-- append does not fail the others.
--
-- Per append: p_conversation_ids (distinct), p_expected_seqs (-1 any, 0 no
-- stream, n head) and p_counts (number of events, at least one). Per event,
-- the appends' events concatenated in input order: the remaining arrays.
-- Malformed arrays are the caller's bug and raise invalid_parameter_value.
-- Locking a stream may create its row with head 0, which means "no events".
--
-- status: 'o' appended; 'd' repeat of an earlier append (first_seq and
-- first_position are the stored ones); 'c' stale expected seq (head is the
-- actual head); 'i' idempotency keys reused for a different append; 'r' a
-- transaction with a higher id already wrote to the stream, so this one cannot
-- place events after it: send the append again in a new transaction.
--
-- Two statements: the first locks every stream of the batch in conversation-id
-- order (COLLATE "C", so concurrent batches cannot deadlock); the second, under
-- a snapshot taken after the locks, decides each append, inserts the accepted
-- events, moves the heads and returns the outcomes.
--
-- Positions are (transaction id << 20) + ordinal. Ordinals are consecutive
-- within an append and leave a gap of one after it, so the events of one
-- append are exactly a run of consecutive positions: that is how a repeat is
-- told from a call that reuses only part of an earlier append's keys.
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
SET plan_cache_mode = force_generic_plan  -- lookups are by key; planning each call costs more
AS $fn$
DECLARE
    v_fresh boolean := pg_current_xact_id_if_assigned() IS NULL;
    v_xid   bigint  := pg_current_xact_id()::text::bigint;
    v_limit bigint  := (v_xid + 1) << 20;  -- lowest position of any later transaction
    v_next  bigint  := v_xid << 20;        -- first free position in this transaction
    v_starts integer[];                    -- per append: index of its first event
    v_distinct boolean;
BEGIN
    IF NOT v_fresh THEN  -- an earlier call in this transaction used some ordinals
        SELECT coalesce(max(e.position) + 2, v_next) INTO v_next
        FROM events e WHERE e.position >= v_next AND e.position < v_limit;
    END IF;
    SELECT array_agg(x.start ORDER BY x.i), count(DISTINCT x.c COLLATE "C") = count(*)
    INTO v_starts, v_distinct
    FROM (SELECT a.i, a.c, sum(a.n) OVER (ORDER BY a.i) - a.n + 1 AS start
          FROM unnest(p_counts, p_conversation_ids) WITH ORDINALITY AS a(n, c, i)) AS x;
    IF v_starts[cardinality(v_starts)] + p_counts[cardinality(p_counts)] - 1
           IS DISTINCT FROM cardinality(p_event_ids)
       OR 0 >= ANY (p_counts) OR cardinality(p_counts) <> cardinality(p_conversation_ids) THEN
        RAISE EXCEPTION 'threadline_append_batch: counts do not match the events'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT v_distinct THEN
        RAISE EXCEPTION 'threadline_append_batch: a conversation appears twice in one batch'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_next + cardinality(p_event_ids) + cardinality(p_counts) >= v_limit THEN
        RAISE EXCEPTION 'threadline_append_batch: too many events in one transaction'
            USING ERRCODE = 'program_limit_exceeded';
    END IF;

    -- Lock every stream, creating missing ones. ON CONFLICT DO UPDATE ...
    -- WHERE false locks the existing row without writing it.
    INSERT INTO streams AS s (conversation_id, head, last_position)
    SELECT c, 0, 0 FROM unnest(p_conversation_ids) AS c ORDER BY c COLLATE "C"
    ON CONFLICT (conversation_id) DO UPDATE SET head = s.head WHERE false;

    -- A new statement, so a new snapshot: it sees every commit made by the
    -- transactions that held these locks before.
    RETURN QUERY
    WITH appends AS (
        SELECT a.i::integer AS i, a.c, a.expected, a.n, a.start, st.head, st.last_position,
               h.hits, h.run_seq, h.run_pos
        FROM unnest(p_conversation_ids, p_expected_seqs, p_counts, v_starts)
             WITH ORDINALITY AS a(c, expected, n, start, i)
        -- OFFSET 0 keeps each lookup a probe of an index by its whole key: the
        -- plan is generic, and a join it chose freely could scan a big table.
        CROSS JOIN LATERAL (
            SELECT s.head, s.last_position FROM streams s WHERE s.conversation_id = a.c OFFSET 0
        ) AS st
        CROSS JOIN LATERAL (
            -- Earlier uses of the keys. A repeat matches them all, in order, as
            -- one run of seqs and positions.
            SELECT count(*)::integer AS hits,
                   CASE WHEN min(e.seq - x.k) = max(e.seq - x.k)
                         AND min(e.position - x.k) = max(e.position - x.k)
                        THEN min(e.seq - x.k)::integer + 1 END AS run_seq,
                   min(e.position - x.k) + 1 AS run_pos
            FROM unnest(p_idempotency_keys[a.start : a.start + a.n - 1])
                 WITH ORDINALITY AS x(key, k)
            CROSS JOIN LATERAL (
                SELECT e.seq, e.position FROM events e
                WHERE e.conversation_id = a.c AND e.idempotency_key = x.key OFFSET 0
            ) AS e
        ) AS h
    ), decided AS (
        SELECT a.*,
               CASE
                 WHEN a.hits > 0 THEN
                   CASE WHEN a.hits = a.n AND a.run_seq IS NOT NULL
                         -- the run is the whole of one earlier append
                         AND NOT EXISTS (
                            SELECT FROM events e WHERE e.conversation_id = a.c
                            AND e.seq = a.run_seq - 1 AND e.position = a.run_pos - 1)
                         AND NOT EXISTS (
                            SELECT FROM events e WHERE e.conversation_id = a.c
                            AND e.seq = a.run_seq + a.n AND e.position = a.run_pos + a.n)
                        THEN 'd' ELSE 'i' END
                 WHEN a.expected >= 0 AND a.expected <> a.head THEN 'c'
                 WHEN a.last_position >= v_limit THEN 'r'
                 ELSE 'o'
               END::"char" AS status
        FROM appends a
    ), accepted AS (
        SELECT d.i, d.c, d.n, d.start, d.head,
               v_next + sum(d.n + 1) OVER (ORDER BY d.i) - d.n - 1 AS first_pos
        FROM decided d WHERE d.status = 'o'
    ), inserted AS (
        INSERT INTO events (
            position, occurred_at, recorded_at, seq, version, event_id, conversation_id,
            type, channel, leg_id, actor_kind, actor_id, customer_id, correlation_id,
            causation_id, idempotency_key, lineage, payload)
        SELECT a.first_pos + x.j - a.start, x.occurred_at, now(),
               a.head + (x.j - a.start)::integer + 1, x.version, x.event_id, a.c, x.type,
               x.channel, x.leg_id, x.actor_kind, x.actor_id, x.customer_id, x.correlation_id,
               x.causation_id, x.idempotency_key, x.lineage, x.payload
        FROM unnest(p_event_ids, p_types, p_versions, p_occurred_at, p_channels, p_leg_ids,
                    p_actor_kinds, p_actor_ids, p_customer_ids, p_correlation_ids,
                    p_causation_ids, p_idempotency_keys, p_lineages, p_payloads)
             WITH ORDINALITY AS x(event_id, type, version, occurred_at, channel, leg_id,
                                  actor_kind, actor_id, customer_id, correlation_id,
                                  causation_id, idempotency_key, lineage, payload, j)
        JOIN accepted a ON a.i = width_bucket(x.j, v_starts)
    ), advanced AS (
        UPDATE streams s SET head = a.head + a.n, last_position = a.first_pos + a.n - 1
        FROM accepted a WHERE s.conversation_id = a.c
    )
    SELECT d.status, d.head,
           CASE d.status WHEN 'o' THEN d.head + 1 WHEN 'd' THEN d.run_seq END,
           CASE d.status WHEN 'o' THEN a.first_pos WHEN 'd' THEN d.run_pos END
    FROM decided d LEFT JOIN accepted a ON a.i = d.i
    ORDER BY d.i;
END
$fn$;

"""PostgreSQL backend: the log, snapshots and checkpoints on psycopg 3 (async).

Open it with :func:`open_postgres`, which connects, applies the versioned
migrations in ``migrations/postgres`` and returns a :class:`PostgresStore`.
Appends go through the group committer in :mod:`threadline.store.postgres_writer`.

Global order without a table lock
---------------------------------
Writers never queue behind one lock. An event's position is derived from the id
of the transaction that wrote it::

    position = (pg_current_xact_id() << 20) + ordinal within the transaction

so ordering by position orders by (transaction id, place in the transaction),
and ``position >> 20`` is the writing transaction's id. Ids are handed out in
increasing order but transactions commit in any order, so a reader must never
return a position while a lower one may still commit. :meth:`PostgresStore.read_all`
therefore returns only rows below the xmin of its own snapshot,
``position < pg_snapshot_xmin(pg_current_snapshot()) << 20``: every transaction
with a lower id has finished, and any transaction still running has an id of
at least xmin, so nothing can later commit below a position already returned.
Positions are sparse but strictly increasing in read order.

The trade-off: a long-running write transaction anywhere in the cluster holds
xmin back, and ``read_all`` stops short of it until it ends. It delays events,
never loses them.

Within a conversation, seq order and position order agree: appends lock the
conversation's row in ``streams``, and an append whose transaction id is lower
than that of one which already wrote to the stream is sent again in a new
transaction.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Collection, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Final

import psycopg
from psycopg import AsyncConnection, AsyncCursor, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import RowMaker
from psycopg_pool import AsyncConnectionPool

from threadline.core import errors
from threadline.core.events import EventRecord
from threadline.core.ports import ANY, AppendResult, KeyProvider, Snapshot, Storage
from threadline.store.migrations import migrations
from threadline.store.postgres_keys import PostgresKeyTable, shred
from threadline.store.postgres_writer import CommitStats, GroupCommit, Pending, translate
from threadline.store.sealing import KeyTable, Sealer, Shredded

__all__ = ["CommitStats", "PostgresStore", "open_postgres"]

#: At most this many events in one append (positions allow 2**20 per transaction).
MAX_APPEND_EVENTS: Final = 100_000

_SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_COLUMNS: Final = (
    "event_id::text, conversation_id, type, version, occurred_at, channel, leg_id,"
    " actor_kind, actor_id, customer_id, correlation_id, causation_id, idempotency_key,"
    " lineage, payload, seq, position, recorded_at"
)  # EventRecord's field order
_READ: Final = (
    f"SELECT {_COLUMNS} FROM events WHERE conversation_id = %s AND seq >= %s ORDER BY seq LIMIT %s"
)
_READ_ALL: Final = (
    f"SELECT {_COLUMNS} FROM events WHERE position > %s"
    " AND position < (pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20)"
    " ORDER BY position LIMIT %s"
)


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        raise translate(exc) from exc


def _records(cursor: AsyncCursor[Any]) -> RowMaker[EventRecord]:
    return EventRecord._make


class PostgresStore(Storage):
    """Event, snapshot and checkpoint store on PostgreSQL; open it with :func:`open_postgres`.

    With a key provider (``keys``, or :meth:`use_keys`), personal data is encrypted before
    it is written and decrypted as it is read (:mod:`threadline.store.sealing`).
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        committer: GroupCommit,
        keys: KeyProvider | None = None,
    ) -> None:
        self._pool = pool
        self._committer = committer
        self._closed = False
        self._keys = PostgresKeyTable(self)
        self._sealer: Sealer | None = None
        if keys is not None:
            self.use_keys(keys)

    @property
    def key_table(self) -> KeyTable:
        """The ``data_keys`` table of this store's database."""
        return self._keys

    @property
    def sealer(self) -> Sealer | None:
        """What encrypts personal data here; None for a store that keeps it in plaintext."""
        return self._sealer

    def use_keys(self, provider: KeyProvider) -> None:
        """Encrypt personal data from now on, with data keys wrapped by ``provider``."""
        if self._sealer is None or self._sealer.provider.key_id != provider.key_id:
            self._sealer = Sealer(provider)

    async def shred(self, owners: Collection[str], conversation_ids: Collection[str]) -> Shredded:
        """Destroy the data keys of ``owners`` and the snapshots of ``conversation_ids``, then
        vacuum (:func:`~threadline.store.postgres_keys.shred`)."""
        shredded = await shred(self, owners, conversation_ids)
        if self._sealer is not None:
            self._sealer.forget(owners)
        return shredded

    async def expire(self, conversation_id: str, seqs: Sequence[int]) -> int:
        """Erase the personal fields of events ``seqs`` in place (retention), and the
        conversation's snapshots (:func:`~threadline.store.expiry.expire_postgres`)."""
        from threadline.store.expiry import expire_postgres

        return await expire_postgres(self, conversation_id, seqs)

    @property
    def commits(self) -> int:
        """Append transactions sent so far (group commit shares them among appends)."""
        return self._committer.stats.transactions

    @property
    def commit_stats(self) -> CommitStats:
        """Append transactions sent so far, and the appends and events they committed."""
        return self._committer.stats

    async def append(
        self, conversation_id: str, records: Sequence[EventRecord], expected_seq: int = ANY
    ) -> AppendResult:
        self._check_open()
        if not ANY <= expected_seq < 2**31:
            raise errors.ValidationError(
                f"expected_seq {expected_seq} is out of range",
                [{"field": "expected_seq", "reason": "must be ANY, NO_STREAM or a seq"}],
            )
        if self._sealer is not None:
            records = await self._sealer.seal(records, self._keys)
        rows = _rows(conversation_id, records)
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        return await self._committer.submit(Pending(conversation_id, expected_seq, rows, future))

    async def read(
        self, conversation_id: str, from_seq: int = 1, limit: int | None = None
    ) -> list[EventRecord]:
        return await self._read(_READ, (conversation_id, from_seq, _limit(limit)))

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[EventRecord]:
        """Events in global order; the module docstring says why none is ever skipped."""
        return await self._read(_READ_ALL, (after_position, _limit(limit)))

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        if self._sealer is not None:
            snapshot = await self._sealer.seal_snapshot(snapshot, self._keys)
        await self._fetch(
            "INSERT INTO snapshots AS s (conversation_id, schema_version, seq, state)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (conversation_id, schema_version)"
            " DO UPDATE SET seq = excluded.seq, state = excluded.state"
            " WHERE s.seq <= excluded.seq",
            (snapshot.conversation_id, snapshot.schema_version, snapshot.seq, snapshot.state),
        )

    async def load_snapshot(self, conversation_id: str, schema_version: int) -> Snapshot | None:
        row = await self._fetch(
            "SELECT seq, state FROM snapshots WHERE conversation_id = %s AND schema_version = %s",
            (conversation_id, schema_version),
        )
        if row is None:
            return None
        snapshot = Snapshot(conversation_id, row[0], schema_version, row[1])
        if self._sealer is None:
            return snapshot
        return await self._sealer.open_snapshot(snapshot, self._keys)

    async def load_checkpoint(self, group: str) -> int:
        row = await self._fetch(
            "SELECT position FROM consumer_checkpoints WHERE group_name = %s", (group,)
        )
        return 0 if row is None else int(row[0])

    async def save_checkpoint(self, group: str, position: int) -> None:
        await self._fetch(
            "INSERT INTO consumer_checkpoints AS c (group_name, position) VALUES (%s, %s)"
            " ON CONFLICT (group_name) DO UPDATE SET position = excluded.position"
            " WHERE c.position < excluded.position",
            (group, position),
        )

    async def mark_handled(self, group: str, key: str) -> bool:
        row = await self._fetch(
            "INSERT INTO handled (group_name, key) VALUES (%s, %s)"
            " ON CONFLICT DO NOTHING RETURNING true",
            (group, key),
        )
        return row is not None

    async def was_handled(self, group: str, key: str) -> bool:
        row = await self._fetch(
            "SELECT true FROM handled WHERE group_name = %s AND key = %s", (group, key)
        )
        return row is not None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        """A connection from the store's read pool, for tables kept beside the log (the
        identity directory) and tools that load them.

        It is in autocommit mode (open ``conn.transaction()`` to group statements),
        its ``search_path`` is the store's schema, and driver errors raised while it
        is held come out as :class:`~threadline.core.errors.PersistenceError`. Give it
        back promptly: reads wait for the pool.
        """
        self._check_open()
        with _translated():
            async with self._pool.connection() as conn:
                yield conn

    async def close(self) -> None:
        """Finish the appends in hand, then close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._committer.close()
        finally:
            await self._pool.close()

    def _check_open(self) -> None:
        if self._closed:
            raise errors.ProgrammingError("the PostgreSQL store is closed")

    async def _read(self, query: str, params: tuple[Any, ...]) -> list[EventRecord]:
        self._check_open()
        with _translated():
            async with self._pool.connection() as conn:
                cursor = conn.cursor(row_factory=_records, binary=True)
                await cursor.execute(query, params)
                records: list[EventRecord] = await cursor.fetchall()
        if self._sealer is None:
            return records
        return await self._sealer.open(records, self._keys)

    async def _fetch(self, query: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """Run one statement (in its own transaction); its first row, if any."""
        self._check_open()
        with _translated():
            async with self._pool.connection() as conn:
                cursor = await conn.execute(query, params)
                return await cursor.fetchone() if cursor.description else None


def _limit(limit: int | None) -> int | None:
    if limit is not None and limit < 0:
        raise errors.ValidationError(
            f"limit {limit} is negative", [{"field": "limit", "reason": "negative"}]
        )
    return limit


def _rows(conversation_id: str, records: Sequence[EventRecord]) -> list[tuple[Any, ...]]:
    """Check ``records`` and lay them out as ``threadline_append_batch`` columns."""
    if not records:
        raise errors.ValidationError(
            "an append needs at least one record", [{"field": "records", "reason": "empty"}]
        )
    if len(records) > MAX_APPEND_EVENTS:
        raise errors.ValidationError(
            f"an append holds at most {MAX_APPEND_EVENTS:,} records",
            [{"field": "records", "reason": "too many"}],
        )
    if len({r.idempotency_key for r in records}) != len(records):
        raise errors.IdempotencyError(
            f"conversation {conversation_id}: an idempotency key repeats within one append"
        )
    rows = []
    for r in records:
        if r.conversation_id != conversation_id:
            raise errors.ValidationError(
                f"record {r.event_id} belongs to conversation {r.conversation_id!r}",
                [{"field": "conversation_id", "reason": "differs from the appended stream"}],
            )
        try:
            event_id = uuid.UUID(r.event_id)
        except (ValueError, TypeError, AttributeError):
            raise errors.ValidationError(
                f"event_id {r.event_id!r} is not a UUID",
                [{"field": "event_id", "reason": "not a UUID"}],
            ) from None
        rows.append(
            (event_id, r.type, r.version, r.occurred_at, r.channel, r.leg_id, r.actor_kind,
             r.actor_id, r.customer_id, r.correlation_id, r.causation_id, r.idempotency_key,
             r.lineage, r.payload)
        )  # fmt: skip
    return rows


# -- opening and migrating ----------------------------------------------------------------


async def _migrate(conn: AsyncConnection[Any], schema: str) -> None:
    """Apply the migrations ``schema_migrations`` does not list yet, one transaction each.

    Each transaction first takes an advisory lock keyed by the schema, so
    processes that start together apply every migration exactly once.
    """
    pending = await asyncio.to_thread(migrations, "postgres")
    try:  # the usual case, and the only one that needs no DDL privileges
        cursor = await conn.execute("SELECT version FROM schema_migrations")
        applied = {version for (version,) in await cursor.fetchall()}
        pending = [(v, script) for v, script in pending if v not in applied]
    except psycopg.errors.UndefinedTable:
        pass
    lock = f"threadline.migrations:{schema}"
    for version, script in pending:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock,))
            await conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
            )
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cursor = await conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = %s", (version,)
            )
            if await cursor.fetchone() is not None:
                continue
            await conn.execute(script)  # no parameters: sent as one multi-statement query
            await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))


def _conninfo(url: str, schema: str, *settings: str) -> str:
    """``url`` plus the session settings every store connection needs, and ``settings``."""
    session = " ".join((f"-c search_path={schema}", "-c TimeZone=UTC", *settings))
    try:
        options = conninfo_to_dict(url).get("options")
        return make_conninfo(url, options=f"{options} {session}" if options else session)
    except psycopg.ProgrammingError as exc:
        raise errors.ConfigurationError(f"bad PostgreSQL url: {exc}") from exc


async def open_postgres(
    url: str,
    *,
    schema: str = "public",
    writers: int = 2,
    readers: int = 4,
    connect_timeout: float = 10.0,
    keys: KeyProvider | None = None,
) -> PostgresStore:
    """Connect to ``url``, bring ``schema`` up to date and return the store.

    ``schema`` (created if missing) must be a plain lower-case identifier.
    ``writers`` connections send group-committed appends; a pool of up to
    ``readers`` connections serves reads, snapshots and checkpoints. With ``keys``,
    personal data is encrypted at rest.
    """
    if not _SCHEMA_NAME.fullmatch(schema):
        raise errors.ConfigurationError(f"schema {schema!r} is not a plain lower-case identifier")
    if writers < 1 or readers < 1:
        raise errors.ConfigurationError("writers and readers must each be at least 1")
    conninfo = _conninfo(url, schema)
    timeout = max(1, round(connect_timeout))

    async def connect() -> AsyncConnection[Any]:
        return await AsyncConnection.connect(conninfo, autocommit=True, connect_timeout=timeout)

    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        # Every read walks one index in its own order. Without statistics (a
        # young table) the planner may prefer to fetch a conversation unordered
        # and sort it, on disk once it is large; forbidding sorts rules that out.
        _conninfo(url, schema, "-c enable_sort=off"),
        min_size=1,
        max_size=readers,
        kwargs={"autocommit": True, "connect_timeout": timeout},
        timeout=connect_timeout,
        open=False,
        name=f"threadline-{schema}",
    )
    with _translated():
        conn = await connect()
        try:
            await _migrate(conn, schema)
            await pool.open(wait=True, timeout=connect_timeout)
        except BaseException:
            await conn.close()
            await pool.close()
            raise
    committer = GroupCommit(connect, writers)
    committer.adopt(conn)
    return PostgresStore(pool, committer, keys)

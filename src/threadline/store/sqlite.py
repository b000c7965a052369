"""SQLite backend: the embedded default event store.

One writer thread owns the write connection and commits in groups: every
append, snapshot or checkpoint that arrives while a commit is in flight joins
the next transaction, so concurrent appends share one fsync and each
acknowledgement still means durable (WAL, ``synchronous=FULL``). Reads run on
a few reader threads with their own connections; WAL lets them proceed while
the writer commits. Nothing here blocks the event loop.

Positions are the table's AUTOINCREMENT key. SQLite admits one writer at a
time, so positions are assigned in commit order and ``read_all`` can never
skip an event that commits later.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from threadline.core.errors import IdempotencyError, ProgrammingError, ValidationError
from threadline.core.events import EventRecord
from threadline.core.ports import ANY, AppendResult, KeyProvider, Snapshot, Storage
from threadline.store.migrations import migrations
from threadline.store.sealing import MARK, KeyTable, Sealer, Shredded, with_payload
from threadline.store.sqlite_keys import SQLiteKeyTable, keys_by_id, shred
from threadline.store.sqlite_writer import (
    AppendCommand,
    Feed,
    Job,
    Work,
    Writer,
    moment,
    translate,
)

_COLUMNS: Final = (
    "event_id, conversation_id, type, version, occurred_at, channel, leg_id, actor_kind,"
    " actor_id, customer_id, correlation_id, causation_id, idempotency_key, lineage, payload,"
    " seq, position, recorded_at"
)


_STREAM_COLUMNS: Final = _COLUMNS.replace(" conversation_id,", "")


def _stream_record(conversation_id: str) -> Any:
    """Builds records of one conversation, whose id the query already fixes."""

    def build(row: tuple[Any, ...]) -> EventRecord:
        (eid, typ, ver, occ, chan, leg, akind, aid, cust, corr, caus, key, lin, pay, seq, pos,
         rec) = row  # fmt: skip
        return EventRecord(
            eid, conversation_id, typ, ver, moment(occ), chan, leg, akind, aid, cust, corr,
            caus, key, lin, pay, seq, pos, moment(rec),
        )  # fmt: skip

    return build


def _record(row: tuple[Any, ...]) -> EventRecord:
    (eid, cid, typ, ver, occ, chan, leg, akind, aid, cust, corr, caus, key, lin, pay, seq, pos,
     rec) = row  # fmt: skip
    return EventRecord(
        eid, cid, typ, ver, moment(occ), chan, leg, akind, aid, cust, corr, caus, key,
        lin, pay, seq, pos, moment(rec),
    )  # fmt: skip


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=10000")
    # Deleted rows (and rows moved when a page is rebalanced) are overwritten with zeros:
    # erasure leaves no copy of a destroyed key or a purged row in the file.
    conn.execute("PRAGMA secure_delete=ON")
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        done = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
        for version, sql in migrations("sqlite"):
            if version in done:
                continue
            for statement in sql.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, ?)",
                (version, datetime.now(UTC).isoformat()),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _validate_append(records: Sequence[EventRecord], conversation_id: str) -> None:
    if not records:
        raise ValidationError(
            "an append needs at least one event", [{"field": "events", "reason": "empty"}]
        )
    keys = {r.idempotency_key for r in records}
    if len(keys) != len(records):
        raise IdempotencyError("an append carries the same idempotency key twice")
    for r in records:
        if r.conversation_id != conversation_id:
            raise ValidationError(
                "every event of an append belongs to the conversation appended to",
                [{"field": "conversation_id", "reason": f"{r.conversation_id!r} differs"}],
            )


#: Events one commit feed call carries at most.
FEED_PAGE: Final = 500


def _feed_page(conn: sqlite3.Connection, after: int) -> list[EventRecord]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
        (after, FEED_PAGE),
    ).fetchall()
    return [_record(row) for row in rows]


# -- reader threads -----------------------------------------------------------------------

Query = Callable[[sqlite3.Connection], Any]
_ReadJob = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Query]
#: Queries a reader answers in one go when they queue up.
READ_BATCH: Final = 64


def _settle_reads(outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in outcomes:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class _Readers:
    """Reader threads, each with its own connection, taking queries from one queue.

    Lighter than an executor: a query is one queue put, and a reader hands back
    every answer it has at once with one ``call_soon_threadsafe`` per loop.
    """

    def __init__(self, path: str, count: int) -> None:
        self._path = path
        self._queue: queue.SimpleQueue[_ReadJob | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"threadline-sqlite-read-{n}", daemon=True)
            for n in range(count)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, job: _ReadJob) -> None:
        self._queue.put(job)

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            if thread.is_alive():
                thread.join()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        failure: BaseException | None = None
        try:
            conn = _connect(self._path)
        except sqlite3.Error as exc:
            failure = translate(exc)
        try:
            stopping = False
            while not stopping:
                job = self._queue.get()
                if job is None:
                    return
                batch = [job]
                while len(batch) < READ_BATCH:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stopping = True
                        break
                    batch.append(more)
                by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
                for loop, future, query in batch:
                    outcome: tuple[asyncio.Future[Any], bool, Any]
                    if conn is None:
                        outcome = (future, False, failure)
                    else:
                        try:
                            outcome = (future, True, query(conn))
                        except sqlite3.Error as exc:
                            outcome = (future, False, translate(exc))
                        except BaseException as exc:  # fails its query, never the reader
                            outcome = (future, False, exc)
                    by_loop.setdefault(loop, []).append(outcome)
                for loop, outcomes in by_loop.items():
                    # A closed loop means nobody is waiting for these any more.
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(_settle_reads, outcomes)
        finally:
            if conn is not None:
                conn.close()


# -- the store --------------------------------------------------------------------------


class SQLiteStore(Storage):
    """Event log, snapshots and checkpoints in one SQLite file.

    With a key provider (``keys``, or :meth:`use_keys`), personal data is encrypted before
    it is written and decrypted as it is read (:mod:`threadline.store.sealing`).
    """

    def __init__(self, path: str, readers: int = 2, keys: KeyProvider | None = None) -> None:
        self.path = path
        self._writer = Writer(path, _connect, _migrate)
        self._writer.opener = self._open_fed
        self._readers = _Readers(path, readers)
        self._closed = False
        self._keys = SQLiteKeyTable(self)
        self._sealer: Sealer | None = None
        # Plaintext of the appends in flight, by event id: the commit feed needs no decrypt.
        self._plain: dict[str, bytes] = {}
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
        """Destroy the data keys of ``owners`` and the snapshots of ``conversation_ids``, and
        leave no copy in the file or its WAL (:func:`~threadline.store.sqlite_keys.shred`)."""
        shredded = await shred(self, owners, conversation_ids)
        if self._sealer is not None:
            self._sealer.forget(owners)
        return shredded

    async def expire(self, conversation_id: str, seqs: Sequence[int]) -> int:
        """Erase the personal fields of events ``seqs`` in place (retention), and the
        conversation's snapshots (:func:`~threadline.store.expiry.expire_sqlite`)."""
        from threadline.store.expiry import expire_sqlite

        return await expire_sqlite(self, conversation_id, seqs)

    def _open_fed(self, conn: sqlite3.Connection, records: list[EventRecord]) -> list[EventRecord]:
        """The commit feed's records in plaintext (on the writer thread)."""
        sealer = self._sealer
        if sealer is None:
            return records
        plain = self._plain
        opened: list[EventRecord] = []
        sealed = False
        for record in records:
            payload = plain.get(record.event_id)
            if payload is None:
                sealed = sealed or MARK in record.payload
                opened.append(record)
            else:
                opened.append(with_payload(record, payload))
        if not sealed:  # the usual page: what this process just appended
            return opened
        return sealer.open_with(opened, lambda key_ids: keys_by_id(conn, key_ids))

    @property
    def commits(self) -> int:
        """Transactions the writer has committed (group commit folds many appends into one)."""
        return self._writer.commits

    async def _start(self) -> None:
        await asyncio.to_thread(self._writer.start)  # migrations first, then the readers
        self._readers.start()

    # writes

    async def _write(self, work: Work | None = None, append: AppendCommand | None = None) -> Any:
        if self._closed:
            raise ProgrammingError("the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._writer.submit(Job(loop, future, append, work))
        return await future

    async def transact(self, work: Work) -> Any:
        """Run ``work(conn, now)`` on the writer thread in the next group commit; its result.

        For tables kept beside the log (the identity directory) and tools that
        load them. ``work`` must not commit or roll back; it runs in a savepoint,
        so when it raises only its own writes are undone, and the error is
        raised here (the database's as ``PersistenceError``).
        """
        return await self._write(work)

    async def append(
        self, conversation_id: str, records: Sequence[EventRecord], expected_seq: int = ANY
    ) -> AppendResult:
        _validate_append(records, conversation_id)
        sealer = self._sealer
        if sealer is None:
            result: AppendResult = await self._write(
                append=AppendCommand(conversation_id, tuple(records), expected_seq)
            )
            return result
        sealed = await sealer.seal(records, self._keys)
        changed = [r for r, s in zip(records, sealed, strict=True) if r is not s]
        for record in changed:
            self._plain[record.event_id] = record.payload
        try:
            result = await self._write(
                append=AppendCommand(conversation_id, tuple(sealed), expected_seq)
            )
        finally:
            for record in changed:
                self._plain.pop(record.event_id, None)
        return result

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        if self._sealer is not None:
            snapshot = await self._sealer.seal_snapshot(snapshot, self._keys)

        def work(conn: sqlite3.Connection, now: str) -> None:
            conn.execute(
                "INSERT INTO snapshots (conversation_id, schema_version, seq, state)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (conversation_id, schema_version)"
                " DO UPDATE SET seq = excluded.seq, state = excluded.state"
                " WHERE excluded.seq > snapshots.seq",
                (snapshot.conversation_id, snapshot.schema_version, snapshot.seq, snapshot.state),
            )

        await self._write(work)

    async def save_checkpoint(self, group: str, position: int) -> None:
        def work(conn: sqlite3.Connection, now: str) -> None:
            conn.execute(
                "INSERT INTO consumer_checkpoints (group_name, position) VALUES (?, ?)"
                " ON CONFLICT (group_name) DO UPDATE SET position = excluded.position"
                " WHERE excluded.position > consumer_checkpoints.position",
                (group, position),
            )

        await self._write(work)

    async def follow(self, feed: Feed) -> None:
        """After each commit that appended, call ``feed(after, records)`` on this loop with
        every event committed after position ``after`` (a page at most, in position
        order, with no gaps from one call to the next): what a relay would read next."""
        loop = asyncio.get_running_loop()
        await self._write(self._writer.follow(loop, feed, _feed_page))

    async def mark_handled(self, group: str, key: str) -> bool:
        def work(conn: sqlite3.Connection, now: str) -> bool:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO handled (group_name, key) VALUES (?, ?)", (group, key)
            )
            return cursor.rowcount == 1

        result: bool = await self._write(work)
        return result

    # reads

    async def _read(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if self._closed:
            raise ProgrammingError("the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[tuple[Any, ...]]] = loop.create_future()
        self._readers.submit((loop, future, lambda conn: conn.execute(sql, params).fetchall()))
        return await future

    async def read(
        self, conversation_id: str, from_seq: int = 1, limit: int | None = None
    ) -> list[EventRecord]:
        rows = await self._read(
            f"SELECT {_STREAM_COLUMNS} FROM events WHERE conversation_id = ? AND seq >= ?"
            " ORDER BY seq LIMIT ?",
            (conversation_id, from_seq, -1 if limit is None else limit),
        )
        build = _stream_record(conversation_id)
        return await self._opened([build(row) for row in rows])

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[EventRecord]:
        rows = await self._read(
            f"SELECT {_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
            (after_position, limit),
        )
        return await self._opened([_record(row) for row in rows])

    async def _opened(self, records: list[EventRecord]) -> list[EventRecord]:
        if self._sealer is None:
            return records
        return await self._sealer.open(records, self._keys)

    async def load_snapshot(self, conversation_id: str, schema_version: int) -> Snapshot | None:
        rows = await self._read(
            "SELECT seq, state FROM snapshots WHERE conversation_id = ? AND schema_version = ?",
            (conversation_id, schema_version),
        )
        if not rows:
            return None
        seq, state = rows[0]
        snapshot = Snapshot(conversation_id, seq, schema_version, bytes(state))
        if self._sealer is None:
            return snapshot
        return await self._sealer.open_snapshot(snapshot, self._keys)

    async def load_checkpoint(self, group: str) -> int:
        rows = await self._read(
            "SELECT position FROM consumer_checkpoints WHERE group_name = ?", (group,)
        )
        return int(rows[0][0]) if rows else 0

    async def was_handled(self, group: str, key: str) -> bool:
        rows = await self._read(
            "SELECT 1 FROM handled WHERE group_name = ? AND key = ?", (group, key)
        )
        return bool(rows)

    async def head(self, conversation_id: str) -> int:
        """The conversation's last seq, or 0."""
        rows = await self._read(
            "SELECT max(seq) FROM events WHERE conversation_id = ?", (conversation_id,)
        )
        return int(rows[0][0] or 0)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._writer.stop)
        await asyncio.to_thread(self._readers.stop)


def _private(target: Path) -> None:
    """Make the database file (and a folder made for it) readable by this user only.

    SQLite creates the ``-wal`` and ``-shm`` files with the database file's
    permissions, so a private database keeps its log private too.
    """
    if not target.parent.exists():
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(target, os.O_RDWR | os.O_CREAT, 0o600))
    for path in (target, *(target.with_name(target.name + suffix) for suffix in ("-wal", "-shm"))):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)  # made before, by an older version or another umask


async def open_sqlite(
    path: str | os.PathLike[str], *, readers: int = 2, keys: KeyProvider | None = None
) -> SQLiteStore:
    """Open (creating if needed) the store at ``path`` and apply pending migrations; with
    ``keys``, personal data is encrypted at rest."""
    target = Path(path)
    if str(target) != ":memory:":
        _private(target)
    store = SQLiteStore(str(target), readers=readers, keys=keys)
    try:
        await store._start()
    except sqlite3.Error as exc:
        raise translate(exc) from exc
    return store

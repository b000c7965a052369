"""SQLite backend: the embedded default event store.

One writer thread owns the write connection and commits in groups: every
append, snapshot or checkpoint that arrives while a commit is in flight joins
the next transaction, so concurrent appends share one fsync and each
acknowledgement still means durable (WAL, ``synchronous=FULL``). Reads run on
a small pool of reader threads with their own connections; WAL lets them
proceed while the writer commits. Nothing here blocks the event loop.

Positions are the table's AUTOINCREMENT key. SQLite admits one writer at a
time, so positions are assigned in commit order and ``read_all`` can never
skip an event that commits later.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from threadline.core.errors import IdempotencyError, ProgrammingError, ValidationError
from threadline.core.events import EventRecord
from threadline.core.ports import ANY, AppendResult, Snapshot, Storage
from threadline.store.migrations import migrations
from threadline.store.sqlite_writer import AppendCommand, Job, Work, Writer, moment, translate

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


# -- the store --------------------------------------------------------------------------


class SQLiteStore(Storage):
    """Event log, snapshots and checkpoints in one SQLite file."""

    def __init__(self, path: str, readers: int = 2) -> None:
        self.path = path
        self._writer = Writer(path, _connect, _migrate)
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="threadline-sqlite-read")
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    @property
    def commits(self) -> int:
        """Transactions the writer has committed (group commit folds many appends into one)."""
        return self._writer.commits

    async def _start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._readers, self._writer.start)

    # writes

    async def _write(self, work: Work | None = None, append: AppendCommand | None = None) -> Any:
        if self._closed:
            raise ProgrammingError("the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._writer.submit(Job(loop, future, append, work))
        return await future

    async def append(
        self, conversation_id: str, records: Sequence[EventRecord], expected_seq: int = ANY
    ) -> AppendResult:
        _validate_append(records, conversation_id)
        command = AppendCommand(conversation_id, tuple(records), expected_seq)
        result: AppendResult = await self._write(append=command)
        return result

    async def save_snapshot(self, snapshot: Snapshot) -> None:
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

    async def mark_handled(self, group: str, key: str) -> bool:
        def work(conn: sqlite3.Connection, now: str) -> bool:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO handled (group_name, key) VALUES (?, ?)", (group, key)
            )
            return cursor.rowcount == 1

        result: bool = await self._write(work)
        return result

    # reads

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            self._local.conn = conn
            with self._lock:
                self._reader_conns.append(conn)
        return conn

    async def _read(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if self._closed:
            raise ProgrammingError("the store is closed")

        def work() -> list[tuple[Any, ...]]:
            try:
                return self._reader().execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise translate(exc) from exc

        return await asyncio.get_running_loop().run_in_executor(self._readers, work)

    async def read(
        self, conversation_id: str, from_seq: int = 1, limit: int | None = None
    ) -> list[EventRecord]:
        rows = await self._read(
            f"SELECT {_STREAM_COLUMNS} FROM events WHERE conversation_id = ? AND seq >= ?"
            " ORDER BY seq LIMIT ?",
            (conversation_id, from_seq, -1 if limit is None else limit),
        )
        build = _stream_record(conversation_id)
        return [build(row) for row in rows]

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[EventRecord]:
        rows = await self._read(
            f"SELECT {_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
            (after_position, limit),
        )
        return [_record(row) for row in rows]

    async def load_snapshot(self, conversation_id: str, schema_version: int) -> Snapshot | None:
        rows = await self._read(
            "SELECT seq, state FROM snapshots WHERE conversation_id = ? AND schema_version = ?",
            (conversation_id, schema_version),
        )
        if not rows:
            return None
        seq, state = rows[0]
        return Snapshot(conversation_id, seq, schema_version, bytes(state))

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
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._writer.stop)

        def close_readers() -> None:
            with self._lock:
                for conn in self._reader_conns:
                    conn.close()
                self._reader_conns.clear()

        await loop.run_in_executor(None, close_readers)
        self._readers.shutdown(wait=False)


async def open_sqlite(path: str | os.PathLike[str], *, readers: int = 2) -> SQLiteStore:
    """Open (creating if needed) the store at ``path`` and apply pending migrations."""
    target = Path(path)
    if str(target) != ":memory:":
        target.parent.mkdir(parents=True, exist_ok=True)
    store = SQLiteStore(str(target), readers=readers)
    try:
        await store._start()
    except sqlite3.Error as exc:
        raise translate(exc) from exc
    return store

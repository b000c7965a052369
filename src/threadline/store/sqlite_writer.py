"""The SQLite writer thread: group commit for the embedded store.

Appends, snapshots and checkpoints queue up while a commit is in flight and
are then written together in one transaction, so concurrent writers share one
fsync. Appends in a group are decided together: one query looks up every
append's idempotency key and stream head, Python decides each append in
arrival order, and one ``executemany`` inserts all accepted events. If
anything in that fast path raises (the database refusing a row, a value that
cannot be encoded, a bug in a piece of work, whatever the exception), the
group is rolled back and written again one unit at a time, each in its own
savepoint: the unit at fault fails alone with its own error, its neighbours
commit, nothing is left half-written, and the thread goes on serving. A
job's ``KeyboardInterrupt`` or ``SystemExit`` is handed to its caller like
any other error, where it means what it would have meant there.

Writers in other processes on the same file take turns through
:class:`~threadline.store.sqlite_lock.TurnLock`. A follower (the relay) can be
handed what each commit appended, read in the same turn on the file so the
pages have no gaps: the rows just inserted when nothing else was committed
since the last page, else a read of everything after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import structlog

from threadline.core.errors import (
    ConflictError,
    IdempotencyError,
    IntegrityError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
    ThreadlineError,
)
from threadline.core.events import EventRecord
from threadline.core.ports import ANY, AppendResult
from threadline.store.sqlite_checkpoint import Checkpointer
from threadline.store.sqlite_lock import TurnLock

log = structlog.get_logger("threadline.store")

MAX_BATCH: Final = 256
INSERT: Final = (
    "INSERT INTO events (position, conversation_id, seq, event_id, type, version, occurred_at,"
    " recorded_at, channel, leg_id, actor_kind, actor_id, customer_id, correlation_id,"
    " causation_id, idempotency_key, lineage, payload)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
Work = Callable[[sqlite3.Connection, str], Any]
#: ``feed(after, records)``: every event committed after position ``after``, up to a page.
Feed = Callable[[int, list[EventRecord]], None]
PageReader = Callable[[sqlite3.Connection, int], list[EventRecord]]
#: Turns a feed page's records as stored into records as read (decrypted), on the writer.
Opener = Callable[[sqlite3.Connection, list[EventRecord]], list[EventRecord]]


def stamp(moment: datetime) -> str:
    """A UTC time as stored: ISO 8601, which SQLite sorts and Python parses fastest."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat()


moment: Final = datetime.fromisoformat


def _failure(exc: BaseException) -> BaseException:
    """What a job's caller gets for ``exc``: a driver error translated, anything else as is."""
    return translate(exc) if isinstance(exc, sqlite3.Error) else exc


def translate(exc: sqlite3.Error) -> PersistenceError:
    """The Threadline error for a driver error (PEP 249 classes map one to one)."""
    message = str(exc)
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityError(message)
    if isinstance(exc, sqlite3.ProgrammingError) or "no such" in message:
        return ProgrammingError(message)
    return OperationalError(message)


@dataclass(frozen=True, slots=True)
class AppendCommand:
    conversation_id: str
    records: Sequence[EventRecord]
    expected_seq: int


@dataclass(slots=True)
class Job:
    """One unit for the writer: an append, or a one-statement piece of work."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    append: AppendCommand | None = None
    work: Work | None = None
    outcome: tuple[bool, Any] = field(default=(False, None))


def _settle(jobs: list[Job], fed: tuple[Feed, int, list[EventRecord]] | None = None) -> None:
    try:
        if fed is not None:
            feed, after, records = fed
            try:
                feed(after, records)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:  # the follower reads the log itself when it misses a page
                log.exception("the commit feed failed")
    finally:  # whatever the feed did, every job of the commit gets its outcome
        for job in jobs:
            if job.future.done():
                continue
            ok, value = job.outcome
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)


def _run_work(conn: sqlite3.Connection, work: Work, now: str) -> tuple[bool, Any]:
    """Run ``work`` in a savepoint; a failure not the database's undoes only its writes."""
    conn.execute("SAVEPOINT work")
    try:
        result = work(conn, now)
    except sqlite3.Error:
        raise  # the group is rolled back and written again one job at a time
    except Exception as exc:  # raised on, it would end the writer thread
        conn.execute("ROLLBACK TO work")
        conn.execute("RELEASE work")
        return (False, exc)
    conn.execute("RELEASE work")
    return (True, result)


def _row(position: int, seq: int, r: EventRecord, now: str) -> tuple[Any, ...]:
    return (
        position, r.conversation_id, seq, r.event_id, r.type, r.version, stamp(r.occurred_at),
        now, r.channel, r.leg_id, r.actor_kind, r.actor_id, r.customer_id, r.correlation_id,
        r.causation_id, r.idempotency_key, r.lineage, r.payload,
    )  # fmt: skip


def _stored(row: tuple[Any, ...], recorded: datetime) -> EventRecord:
    """The record a read returns for ``row`` (as built by :func:`_row`)."""
    (pos, cid, seq, eid, typ, ver, occ, _, chan, leg, akind, aid, cust, corr, caus, key, lin,
     pay) = row  # fmt: skip
    return EventRecord(
        eid, cid, typ, ver, moment(occ), chan, leg, akind, aid, cust, corr, caus, key, lin, pay,
        seq, pos, recorded,
    )  # fmt: skip


class _Group:
    """Decides the appends of one group against the heads and keys it looked up."""

    def __init__(self, conn: sqlite3.Connection, appends: list[Job]) -> None:
        self.heads: dict[str, int] = {}
        self.keys: dict[tuple[str, str], tuple[int, int]] = {}
        self.stored: dict[tuple[str, str], int] = {}
        params: list[Any] = []
        for job in appends:
            assert job.append is not None
            params += (job.append.conversation_id, job.append.records[0].idempotency_key)
        values = ",".join("(?,?)" for _ in appends)
        rows = conn.execute(
            f"WITH j(c, k) AS (VALUES {values}) SELECT j.c, j.k,"
            " (SELECT seq FROM events e WHERE e.conversation_id = j.c AND e.idempotency_key = j.k),"
            " (SELECT max(seq) FROM events e WHERE e.conversation_id = j.c) FROM j",
            params,
        ).fetchall()
        for conversation_id, key, seq, head in rows:
            self.heads[conversation_id] = head or 0
            if seq is not None:
                self.stored[(conversation_id, key)] = seq
        position = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        self.position: int = position[0] if position else 0

    def decide(self, conn: sqlite3.Connection, cmd: AppendCommand, now: str,
               rows: list[tuple[Any, ...]]) -> AppendResult:  # fmt: skip
        cid = cmd.conversation_id
        keys = [r.idempotency_key for r in cmd.records]
        first = (cid, keys[0])
        if first in self.keys or first in self.stored:
            return self._repeat(conn, cid, keys)
        head = self.heads[cid]
        if cmd.expected_seq != ANY and cmd.expected_seq != head:
            raise ConflictError(cid, cmd.expected_seq, head)
        if len(keys) > 1 and self._any_used(conn, cid, keys[1:]):
            raise IdempotencyError("an idempotency key of this append was used by another one")
        seqs = []
        positions = []
        for offset, record in enumerate(cmd.records, start=1):
            self.position += 1
            rows.append(_row(self.position, head + offset, record, now))
            seqs.append(head + offset)
            positions.append(self.position)
            self.keys[(cid, record.idempotency_key)] = (head + offset, self.position)
        self.heads[cid] = head + len(cmd.records)
        return AppendResult(cid, tuple(seqs), tuple(positions))

    def _any_used(self, conn: sqlite3.Connection, cid: str, keys: list[str]) -> bool:
        if any((cid, key) in self.keys for key in keys):
            return True
        marks = ",".join("?" * len(keys))
        return (
            conn.execute(
                f"SELECT 1 FROM events WHERE conversation_id = ? AND idempotency_key IN ({marks})",
                (cid, *keys),
            ).fetchone()
            is not None
        )

    def _repeat(self, conn: sqlite3.Connection, cid: str, keys: list[str]) -> AppendResult:
        found: list[tuple[int, int]] = []
        for key in keys:
            hit = self.keys.get((cid, key))
            if hit is None:
                row = conn.execute(
                    "SELECT seq, position FROM events"
                    " WHERE conversation_id = ? AND idempotency_key = ?",
                    (cid, key),
                ).fetchone()
                hit = (row[0], row[1]) if row else None
            if hit is None:
                raise IdempotencyError(f"idempotency key {keys[0]!r} was used by another append")
            found.append(hit)
        seqs = [seq for seq, _ in found]
        if seqs != list(range(seqs[0], seqs[0] + len(seqs))):
            raise IdempotencyError(f"idempotency key {keys[0]!r} was used by another append")
        return AppendResult(cid, tuple(seqs), tuple(p for _, p in found), duplicate=True)


class Writer:
    """The one thread that writes; it commits whatever has queued up as one transaction."""

    def __init__(self, path: str, connect: Callable[[str], sqlite3.Connection],
                 prepare: Callable[[sqlite3.Connection], None]) -> None:  # fmt: skip
        self._path = path
        self._connect = connect
        self._prepare = prepare
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="threadline-sqlite-writer")
        self._thread.daemon = True
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._turns: TurnLock | None = None
        self.commits = 0
        self._follower: tuple[asyncio.AbstractEventLoop, Feed, PageReader] | None = None
        self._fed_after = 0
        # What the last commit inserted: the position before it, and its rows.
        self._written: tuple[int, list[tuple[Any, ...]]] | None = None
        #: Applied to each feed page before the follower gets it.
        self.opener: Opener | None = None
        # The log is copied back into the file off this thread (see sqlite_checkpoint).
        self._checkpoints = Checkpointer(path, connect)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error
        self._checkpoints.start()

    def submit(self, job: Job) -> None:
        self._queue.put(job)

    def follow(self, loop: asyncio.AbstractEventLoop, feed: Feed, page: PageReader) -> Work:
        """The work that starts feeding ``feed`` on ``loop``: after each commit that
        appended, ``page`` reads what was committed since the last page, in the same turn
        on the file, so the feed has no gaps (one follower; a new one replaces it)."""

        def start(conn: sqlite3.Connection, now: str) -> None:
            row = conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()
            self._fed_after = int(row[0])
            self._follower = (loop, feed, page)

        return start

    def _fed(
        self, conn: sqlite3.Connection, batch: list[Job], recorded: datetime
    ) -> tuple[Any, ...] | None:
        if self._follower is None or not any(
            job.append is not None and job.outcome[0] and not job.outcome[1].duplicate
            for job in batch
        ):
            return None
        loop, feed, page = self._follower
        after = self._fed_after
        written = self._written
        if written is not None and written[0] == after:
            # Nothing was committed between the last page and this commit: the page is
            # the rows just written, as a read would return them.
            records = [_stored(row, recorded) for row in written[1]]
        else:
            try:
                records = page(conn, after)
            except BaseException:  # the follower reads the log itself
                log.exception("the commit feed could not read a page")
                return None
        if records:
            self._fed_after = records[-1].position
            if self.opener is not None:
                try:
                    records = self.opener(conn, records)
                except BaseException:  # the follower finds the gap and reads the log itself
                    log.exception("the commit feed could not open a page")
                    return None
        return loop, (feed, after, records)

    def stop(self) -> None:
        """Write everything already queued, then end the thread."""
        self._queue.put(None)
        self._thread.join()
        self._checkpoints.stop()

    def _run(self) -> None:
        try:
            conn = self._connect(self._path)
            turns = self._turns = TurnLock(self._path)
            with turns:
                self._prepare(conn)
        except BaseException as exc:
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is None:
                    return
                with turns:
                    # Collected once it is our turn: what queued up meanwhile joins this commit.
                    batch = [first]
                    while len(batch) < MAX_BATCH:
                        try:
                            job = self._queue.get_nowait()
                        except queue.Empty:
                            break
                        if job is None:
                            stopping = True
                            break
                        batch.append(job)
                    self._commit(conn, batch)
        finally:
            turns.close()
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[Job]) -> None:
        recorded = datetime.now(UTC)
        now = stamp(recorded)
        self._written = None
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._write_group(conn, batch, now)
            except BaseException:  # some job is at fault: each alone, so only it fails
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                self._write_each(conn, batch, now)
            conn.execute("COMMIT")
            self.commits += 1
            self._checkpoints.committed()
        except BaseException as exc:  # the database refused the transaction itself
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            self._written = None
            error = _failure(exc)
            for job in batch:
                job.outcome = (False, error)
        fed = self._fed(conn, batch, recorded)
        by_loop: dict[asyncio.AbstractEventLoop, list[Job]] = {}
        for job in batch:
            by_loop.setdefault(job.loop, []).append(job)
        if fed is not None:
            by_loop.setdefault(fed[0], [])
        for loop, jobs in by_loop.items():
            # A closed loop means nobody is waiting for these any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, jobs, fed[1] if fed and fed[0] is loop else None)

    def _write_group(self, conn: sqlite3.Connection, batch: list[Job], now: str) -> None:
        appends = [job for job in batch if job.append is not None]
        rows: list[tuple[Any, ...]] = []
        if appends:
            group = _Group(conn, appends)
            start = group.position
            for job in appends:
                assert job.append is not None
                try:
                    job.outcome = (True, group.decide(conn, job.append, now, rows))
                except ThreadlineError as exc:
                    job.outcome = (False, exc)
            conn.executemany(INSERT, rows)
            self._written = (start, rows)
        for job in batch:
            if job.work is not None:
                job.outcome = _run_work(conn, job.work, now)

    def _write_each(self, conn: sqlite3.Connection, batch: list[Job], now: str) -> None:
        self._written = None
        for job in batch:
            conn.execute("SAVEPOINT job")
            try:
                if job.append is not None:
                    rows: list[tuple[Any, ...]] = []
                    result = _Group(conn, [job]).decide(conn, job.append, now, rows)
                    conn.executemany(INSERT, rows)
                    job.outcome = (True, result)
                elif job.work is not None:
                    job.outcome = (True, job.work(conn, now))
            except BaseException as exc:
                conn.execute("ROLLBACK TO job")
                job.outcome = (False, _failure(exc))
            conn.execute("RELEASE job")

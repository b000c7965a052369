"""Group commit for the PostgreSQL store: concurrent appends share transactions.

When every writer connection is idle, an append is sent at once from the
caller's own task: no timer, no hand-off. Appends that arrive while a writer is
busy wait; whenever a batch commits, the tasks it woke get one turn of the
event loop to append again, and then everything waiting is shared out among
the idle writers, each share sent as one transaction in one round trip (one
call of ``threadline_append_batch``, see ``migrations/postgres``).

The function decides every append of the batch without raising, so a stale
expected seq or a reused idempotency key fails that append alone. When a batch
raises instead (the server refuses a row, or a value cannot even be encoded),
each of its appends is sent again alone, so only the culprit fails, with its
own error, and the writer goes on serving. A batch
holds at most one append per conversation; the next append of a conversation
waits until the previous one committed, which keeps each conversation's
appends in submission order and means this process's writers never contend
for a stream. An append is acknowledged only after its commit returned
(``synchronous_commit`` is left on).

A lone one-event append, the shape of a sequential appender, first tries one
plain statement that does only the function's success case; whenever that
statement declines, the function decides.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import AsyncConnection, AsyncCursor
from psycopg.pq import TransactionStatus

from threadline.core import errors
from threadline.core.ports import AppendResult

#: A batch closes at this many events (one larger append still goes alone)...
BATCH_EVENTS: Final = 2_000
#: ... or at this many appends.
BATCH_APPENDS: Final = 500
#: Waiting appends are split among idle writers only in shares at least this big.
SPLIT_AT: Final = 8
#: Times an append is sent again after losing the race for transaction order.
MAX_RESENDS: Final = 100

APPEND_BATCH: Final = (
    "SELECT status, head, first_seq, first_position FROM threadline_append_batch("
    "%b::text[], %b::int4[], %b::int4[], %b::uuid[], %b::text[], %b::int2[],"
    " %b::timestamptz[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],"
    " %b::text[], %b::text[], %b::text[], %b::bytea[], %b::bytea[])"
)
# The success case of threadline_append_batch for one event, as one statement:
# lock and advance the stream only if the expected seq holds and no later
# transaction wrote to it, then insert the event. A reused key surfaces as a
# unique violation (the whole statement rolls back); anything unusual means no
# row back, and the function then says why.
_INSERT_ONE: Final = (
    " INSERT INTO events (position, recorded_at, seq, conversation_id, event_id, type,"
    " version, occurred_at, channel, leg_id, actor_kind, actor_id, customer_id,"
    " correlation_id, causation_id, idempotency_key, lineage, payload)"
    " SELECT s.last_position, now(), s.head, s.conversation_id, %b::uuid, %b::text, %b::int2,"
    " %b::timestamptz, %b::text, %b::text, %b::text, %b::text, %b::text, %b::text, %b::text,"
    " %b::text, %b::bytea, %b::bytea FROM s RETURNING seq, position"
)
APPEND_ONE_AFTER_ANY: Final = (  # expected seq ANY or NO_STREAM
    "WITH s AS (INSERT INTO streams AS s (conversation_id, head, last_position)"
    " VALUES (%b::text, 1, pg_current_xact_id()::text::bigint << 20)"
    " ON CONFLICT (conversation_id) DO UPDATE"
    " SET head = s.head + 1, last_position = excluded.last_position"
    " WHERE (%b::int4 < 0 OR s.head = 0) AND s.last_position < excluded.last_position + 1048576"
    " RETURNING s.conversation_id, s.head, s.last_position)" + _INSERT_ONE
)
APPEND_ONE_AFTER_SEQ: Final = (  # expected seq n >= 1
    "WITH s AS (UPDATE streams AS s"
    " SET head = s.head + 1, last_position = pg_current_xact_id()::text::bigint << 20"
    " WHERE s.conversation_id = %b::text AND s.head = %b::int4"
    " AND s.last_position < (pg_current_xact_id()::text::bigint + 1) << 20"
    " RETURNING s.conversation_id, s.head, s.last_position)" + _INSERT_ONE
)


def translate(exc: psycopg.Error) -> errors.PersistenceError:
    """The Threadline error for a driver error (PEP 249 classes map one to one)."""
    cls: type[errors.PersistenceError]
    if isinstance(exc, psycopg.OperationalError):  # also pool timeouts, deadlocks, cancels
        cls = errors.OperationalError
    elif isinstance(exc, psycopg.IntegrityError):
        cls = errors.IntegrityError
    elif isinstance(exc, psycopg.ProgrammingError | psycopg.InterfaceError):
        cls = errors.ProgrammingError
    else:
        cls = errors.PersistenceError
    state = f" [{exc.sqlstate}]" if exc.sqlstate else ""
    return cls(f"postgres: {str(exc).strip()}{state}")


@dataclass(frozen=True, slots=True)
class CommitStats:
    """What the group committer sent so far: transactions, and appends and events committed."""

    transactions: int = 0
    appends: int = 0
    events: int = 0


@dataclass(slots=True, eq=False)
class Pending:
    """One append waiting for its transaction."""

    conversation_id: str
    expected_seq: int
    rows: list[tuple[Any, ...]]  # per event, in threadline_append_batch's column order
    future: asyncio.Future[AppendResult]
    resends: int = 0


class _Writer:
    """A connection that sends batches; connected lazily, replaced when broken."""

    __slots__ = ("conn", "cursor")

    def __init__(self) -> None:
        self.conn: AsyncConnection[Any] | None = None
        self.cursor: AsyncCursor[Any] | None = None

    def use(self, conn: AsyncConnection[Any]) -> AsyncCursor[Any]:
        self.conn = conn
        self.cursor = conn.cursor(binary=True)  # reused: one cursor per append costs
        return self.cursor


class GroupCommit:
    """Shares transactions among concurrent appends (see the module docstring).

    Waiting appends sit in ``_queues``, one deque per conversation; a
    conversation with an append in flight keeps its (maybe empty) deque and is
    absent from ``_ready``, the FIFO of conversations whose next append may go.
    """

    def __init__(
        self, connect: Callable[[], Awaitable[AsyncConnection[Any]]], writers: int
    ) -> None:
        self._connect = connect
        self._writers = [_Writer() for _ in range(writers)]
        self._idle = list(self._writers)
        self._queues: dict[str, deque[Pending]] = {}
        self._ready: deque[str] = deque()
        self._drivers: set[asyncio.Task[None]] = set()
        self._waking = False  # a batch just settled and the tasks it woke have not run yet
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._transactions = self._appends = self._events = 0

    @property
    def stats(self) -> CommitStats:
        return CommitStats(self._transactions, self._appends, self._events)

    def adopt(self, conn: AsyncConnection[Any]) -> None:
        """Use ``conn``, already open, for the writer that a lone append takes first."""
        self._idle[-1].use(conn)

    async def submit(self, item: Pending) -> AppendResult:
        """Queue ``item``, send it now if every writer is idle, and await its outcome."""
        queue = self._queues.get(item.conversation_id)
        if queue is None:
            self._queues[item.conversation_id] = deque((item,))
            self._ready.append(item.conversation_id)
        else:
            queue.append(item)
        self._quiet.clear()
        if not self._waking and len(self._idle) == len(self._writers):
            writer = self._idle.pop()
            batch = self._take(BATCH_APPENDS)
            if batch == [item]:  # the usual case: send from this task, no hand-off
                try:
                    await self._commit(writer, batch)
                finally:
                    self._idle.append(writer)
                    self._dispatch()
            elif batch:
                self._start(writer, batch)
            else:
                self._idle.append(writer)
        return await item.future

    async def close(self) -> None:
        """Wait until every queued append is settled, then close the connections."""
        await self._quiet.wait()
        for writer in self._writers:
            if writer.conn is not None:
                await writer.conn.close()
                writer.conn = writer.cursor = None

    def _take(self, limit: int) -> list[Pending]:
        batch: list[Pending] = []
        events = 0
        while self._ready and len(batch) < limit:
            conversation_id = self._ready[0]
            queue = self._queues[conversation_id]
            item = queue[0]
            if item.future.done():  # its caller was cancelled before it was sent
                queue.popleft()
                if not queue:
                    del self._queues[conversation_id]
                    self._ready.popleft()
                continue
            if batch and events + len(item.rows) > BATCH_EVENTS:
                break
            self._ready.popleft()
            queue.popleft()
            batch.append(item)
            events += len(item.rows)
        return batch

    def _dispatch(self) -> None:
        """Share the ready appends out among the idle writers."""
        shares = min(len(self._idle), max(1, len(self._ready) // SPLIT_AT))
        size = -(-len(self._ready) // shares) if shares else 0
        for _ in range(shares):
            batch = self._take(min(size, BATCH_APPENDS))
            if batch:
                self._start(self._idle.pop(), batch)
        if not self._queues and not self._waking and len(self._idle) == len(self._writers):
            self._quiet.set()

    def _start(self, writer: _Writer, batch: list[Pending]) -> None:
        task = asyncio.create_task(self._drive(writer, batch))
        self._drivers.add(task)
        task.add_done_callback(self._drivers.discard)

    async def _drive(self, writer: _Writer, batch: list[Pending]) -> None:
        try:
            await self._commit(writer, batch)
        finally:
            self._idle.append(writer)
            if not self._waking:
                self._waking = True
                # call_soon is FIFO: this runs after the wake-ups of the settled tasks.
                asyncio.get_running_loop().call_soon(self._woken)

    def _woken(self) -> None:
        self._waking = False
        self._dispatch()

    async def _commit(self, writer: _Writer, batch: list[Pending]) -> None:
        """Send ``batch``; then queue again what must be resent and free its streams."""
        try:
            await self._send(writer, batch)
        except asyncio.CancelledError:
            for item in batch:
                item.future.cancel()
            raise
        except Exception as exc:  # a bug here must fail the appends, not strand them
            for item in batch:
                _fail(item, exc)
        finally:
            for item in batch:
                queue = self._queues[item.conversation_id]
                if not item.future.done():
                    queue.appendleft(item)  # lost the race for transaction order
                if queue:
                    self._ready.append(item.conversation_id)
                else:
                    del self._queues[item.conversation_id]

    async def _send(self, writer: _Writer, batch: list[Pending]) -> None:
        """Send ``batch`` as one transaction and settle every append in it."""
        try:
            cursor = writer.cursor
            if cursor is None or cursor.connection.closed:
                cursor = writer.use(await self._connect())
            if (
                len(batch) == 1
                and len(batch[0].rows) == 1
                and await self._send_one(cursor, batch[0])
            ):
                return
            await cursor.execute(APPEND_BATCH, _batch_params(batch))
            outcomes = await cursor.fetchall()
        except psycopg.Error as exc:
            if writer.conn is not None and writer.conn.broken:
                await writer.conn.close()
                writer.conn = writer.cursor = None
            if len(batch) > 1 and not isinstance(exc, psycopg.OperationalError):
                # The statement rolled back as a whole (say an event id used
                # before): send each append alone so only the culprit fails.
                for item in batch:
                    await self._send(writer, [item])
                return
            failure = translate(exc)
            for item in batch:
                _fail(item, failure)
            return
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # not the server's: say a value that cannot be encoded
            conn = writer.conn
            if conn is not None and conn.info.transaction_status != TransactionStatus.IDLE:
                await conn.close()  # stopped half-way through a statement: start afresh
                writer.conn = writer.cursor = None
            if len(batch) > 1:  # nothing was written: each alone, so only the culprit fails
                for item in batch:
                    await self._send(writer, [item])
                return
            _fail(batch[0], exc)
            return
        self._transactions += 1
        for item, outcome in zip(batch, outcomes, strict=True):
            if _settle(item, *outcome):
                self._appends += 1
                self._events += len(item.rows)

    async def _send_one(self, cursor: AsyncCursor[Any], item: Pending) -> bool:
        """The one-statement path for a lone one-event append; false when it declines."""
        query = APPEND_ONE_AFTER_ANY if item.expected_seq <= 0 else APPEND_ONE_AFTER_SEQ
        self._transactions += 1
        try:
            await cursor.execute(query, (item.conversation_id, item.expected_seq, *item.rows[0]))
            row = await cursor.fetchone()
        except psycopg.errors.UniqueViolation:
            return False
        if row is None:
            return False
        self._appends += 1
        self._events += 1
        if not item.future.done():
            item.future.set_result(AppendResult(item.conversation_id, (row[0],), (row[1],)))
        return True


def _batch_params(batch: list[Pending]) -> list[list[Any]]:
    rows = [row for item in batch for row in item.rows]
    return [
        [item.conversation_id for item in batch],
        [item.expected_seq for item in batch],
        [len(item.rows) for item in batch],
        *([*column] for column in zip(*rows, strict=True)),
    ]


def _settle(
    item: Pending, status: str, head: int | None, first_seq: int | None, first: int | None
) -> bool:
    """Resolve ``item`` from its outcome row; true if it was appended now.

    Status ``r`` leaves it unresolved, and :meth:`GroupCommit._commit` queues it again.
    """
    count = len(item.rows)
    if status in ("o", "d") and first_seq is not None and first is not None:
        seqs = tuple(range(first_seq, first_seq + count))
        positions = tuple(range(first, first + count))
        if not item.future.done():
            item.future.set_result(
                AppendResult(item.conversation_id, seqs, positions, duplicate=status == "d")
            )
        return status == "o"
    if status == "c" and head is not None:
        _fail(item, errors.ConflictError(item.conversation_id, item.expected_seq, head))
    elif status == "i":
        _fail(
            item,
            errors.IdempotencyError(
                f"conversation {item.conversation_id}: the idempotency keys of this append"
                " belong to a different earlier append"
            ),
        )
    elif status == "r" and item.resends < MAX_RESENDS:
        item.resends += 1
    else:
        _fail(
            item,
            errors.OperationalError(
                f"conversation {item.conversation_id}: no outcome after {item.resends} resends"
                f" (status {status!r})"
            ),
        )
    return False


def _fail(item: Pending, exc: BaseException) -> None:
    if not item.future.done():
        item.future.set_exception(exc)

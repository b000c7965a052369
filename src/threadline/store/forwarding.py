"""One writer per SQLite file: a store that reads the file and lets another process write.

SQLite takes one writer at a time. Two processes writing one file (the service
and its bot worker) serialise their commits anyway, each paying its own fsync
and waiting for the other's. :class:`ForwardingStore` gives the worker the
store it needs: reads go straight to the file (WAL lets them run beside the
writer), and every write (append, snapshot, checkpoint, handled mark) is sent
to the service, whose writer commits it in the same group as its own appends.

The two processes speak in frames over a pipe: a 4-byte length, then a pickled
tuple. Pickle is safe here only because both ends are Threadline processes,
the service and the worker it started, on a pipe nobody else holds.

``("call", id, op, args)``
    worker → service: run write ``op`` (see :data:`WRITES`) with ``args``.
``("result", id, ok, value)``
    service → worker: its return value, or an error from :func:`error_value`.
``("page", after, rows, through)``
    service → worker: the events committed after position ``after`` up to ``through``,
    less those the worker appended itself (it holds them already).
``("poke",)`` and ``("ready",)``
    something was appended; the worker is up.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from threadline.core.errors import (
    ConflictError,
    IdempotencyError,
    IntegrityError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
    ThreadlineError,
    UnknownEventType,
    ValidationError,
)
from threadline.core.events import EventRecord
from threadline.core.ports import ANY, AppendResult, Snapshot, Storage

HEADER: Final = struct.Struct(">I")
Message = tuple[Any, ...]
#: Writes still sent once no answer can come back: what a clean stop saves.
_UNANSWERED: Final = frozenset({"checkpoint", "snapshot"})


def frame(message: Message) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


POKE: Final = frame(("poke",))
READY: Final = frame(("ready",))


class Outgoing:
    """Frames for one pipe, written together once per turn of the event loop: a commit's
    page and the answer to the write in it cost one system call, not two."""

    def __init__(self, write: Callable[[bytes], None], *, with_answers: bool = True) -> None:
        """``with_answers``: wait one more callback, for the service's side of the pipe,
        where a commit settles its writes in one callback and the tasks that answer them
        run in the next, so their answers join its page. The worker's writes go at the end
        of the callbacks that sent them."""
        self._write = write
        self._frames: list[bytes] = []
        self._first = self._soon if with_answers else self.flush

    def send(self, data: bytes) -> None:
        if not self._frames:
            asyncio.get_running_loop().call_soon(self._first)
        self._frames.append(data)

    def _soon(self) -> None:
        asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write what waits now."""
        frames, self._frames = self._frames, []
        if frames:
            self._write(b"".join(frames))


async def read_frame(reader: asyncio.StreamReader) -> Message | None:
    """The next message, or None once the other end has closed the pipe."""
    try:
        header = await reader.readexactly(HEADER.size)
        (size,) = HEADER.unpack(header)
        message: Message = pickle.loads(await reader.readexactly(size))
    except asyncio.IncompleteReadError:
        return None
    return message


# -- errors across the pipe --------------------------------------------------------------

_PLAIN_ERRORS: Final = (
    IdempotencyError, IntegrityError, OperationalError, PersistenceError, ProgrammingError,
)  # fmt: skip
_PLAIN: Final = {cls.__name__: cls for cls in _PLAIN_ERRORS}


def error_value(exc: BaseException) -> tuple[str, tuple[Any, ...]]:
    """What :func:`error_from` needs to raise ``exc`` again on the other side."""
    if isinstance(exc, ConflictError):
        return "ConflictError", (exc.conversation_id, exc.expected, exc.actual)
    if isinstance(exc, ValidationError):
        kind = "UnknownEventType" if isinstance(exc, UnknownEventType) else "ValidationError"
        return kind, (str(exc), exc.errors)
    name = type(exc).__name__
    return (name if name in _PLAIN else "OperationalError"), (str(exc),)


def error_from(value: tuple[str, tuple[Any, ...]]) -> ThreadlineError:
    kind, args = value
    if kind == "ConflictError":
        return ConflictError(*args)
    if kind == "ValidationError":
        return ValidationError(*args)
    if kind == "UnknownEventType":
        return UnknownEventType(*args)
    return _PLAIN.get(kind, OperationalError)(*args)


# -- the writing side ----------------------------------------------------------------------


def writes(store: Storage) -> dict[str, Callable[..., Awaitable[Any]]]:
    """The writes a :class:`ForwardingStore` may ask ``store`` for, by name."""

    async def append(
        conversation_id: str, rows: Sequence[tuple[Any, ...]], expected_seq: int
    ) -> tuple[Any, ...]:
        # Records and results cross as plain tuples: named tuples pickle at twice the cost.
        records = [EventRecord._make(row) for row in rows]
        return tuple(await store.append(conversation_id, records, expected_seq))

    return {
        "append": append,
        "snapshot": store.save_snapshot,
        "checkpoint": store.save_checkpoint,
        "handled": store.mark_handled,
    }


async def answer(
    ops: dict[str, Callable[..., Awaitable[Any]]], message: Message
) -> tuple[bytes, bool]:
    """Run one ``call`` message; the ``result`` frame, and whether it appended anything."""
    _, call_id, op, args = message
    try:
        value = await ops[op](*args)
    except Exception as exc:  # every failure goes back: the caller is waiting for it
        return frame(("result", call_id, False, error_value(exc))), False
    appended = op == "append" and not AppendResult._make(value).duplicate
    return frame(("result", call_id, True, value)), appended


# -- the reading side ----------------------------------------------------------------------


class ForwardingStore(Storage):
    """Reads from ``store``; sends each write through ``send`` and awaits its result."""

    def __init__(self, store: Storage, send: Callable[[bytes], None]) -> None:
        self._store = store
        self._send = send
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._next = 0
        self._detached = False
        self._closed = False

    async def _call(self, op: str, *args: Any) -> Any:
        if self._closed:
            raise ProgrammingError("the store is closed")
        self._next += 1
        call_id = self._next
        if self._detached:
            if op in _UNANSWERED:
                self._send(frame(("call", call_id, op, args)))
                return None
            raise OperationalError("the writer no longer answers")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = future
        try:
            self._send(frame(("call", call_id, op, args)))
            return await future
        finally:
            self._calls.pop(call_id, None)

    def settle(self, message: Message) -> None:
        """Hand a ``result`` message to the write waiting for it."""
        _, call_id, ok, value = message
        future = self._calls.get(call_id)
        if future is None or future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(error_from(value))

    def fail_all(self, reason: str) -> None:
        """The writer is gone: every write still waiting fails."""
        for future in self._calls.values():
            if not future.done():
                future.set_exception(OperationalError(reason))

    def detach(self) -> None:
        """No answer can arrive any more (the writer closed our end of the pipe, as it does
        when it stops): waiting writes fail, later ones fail at once, except the progress
        marks of a clean stop (checkpoints, snapshots), which are sent unanswered."""
        self._detached = True
        self.fail_all("the writer no longer answers")

    async def append(
        self, conversation_id: str, records: Sequence[EventRecord], expected_seq: int = ANY
    ) -> AppendResult:
        rows = tuple(tuple(r) for r in records)
        return AppendResult._make(await self._call("append", conversation_id, rows, expected_seq))

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        await self._call("snapshot", snapshot)

    async def save_checkpoint(self, group: str, position: int) -> None:
        await self._call("checkpoint", group, position)

    async def mark_handled(self, group: str, key: str) -> bool:
        handled: bool = await self._call("handled", group, key)
        return handled

    async def read(
        self, conversation_id: str, from_seq: int = 1, limit: int | None = None
    ) -> list[EventRecord]:
        return await self._store.read(conversation_id, from_seq, limit)

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[EventRecord]:
        return await self._store.read_all(after_position, limit)

    async def load_snapshot(self, conversation_id: str, schema_version: int) -> Snapshot | None:
        return await self._store.load_snapshot(conversation_id, schema_version)

    async def load_checkpoint(self, group: str) -> int:
        return await self._store.load_checkpoint(group)

    async def was_handled(self, group: str, key: str) -> bool:
        return await self._store.was_handled(group, key)

    async def close(self) -> None:
        self.detach()
        self._closed = True
        await self._store.close()

"""The worker's store on SQLite: reads from the file, writes through the service's writer.

The event-store contract runs against it with both ends of the pipe in one
process (every message still goes through real frames), and the specifics of
the pipe are pinned below: errors keep their kind and fields, and once the
writer stops answering, writes fail at once except a clean stop's progress marks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from threadline.core.errors import ConflictError, IdempotencyError, OperationalError
from threadline.core.errors import ValidationError as ThreadlineValidationError
from threadline.core.ports import EventStore, Snapshot
from threadline.store.forwarding import ForwardingStore, answer, read_frame, writes
from threadline.store.sqlite import SQLiteStore, open_sqlite
from threadline.testing.factories import record, records
from threadline.testing.store_contract import EventStoreContract


class Pipe:
    """Both ends of the worker's pipe in one process: the service's writer on one side,
    the worker's forwarding store on the other, and only frames between them."""

    def __init__(self, writer: SQLiteStore) -> None:
        self.writer = writer
        self.to_writer = asyncio.StreamReader()
        self.to_worker = asyncio.StreamReader()
        self.answering = True
        self.sent: list[bytes] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, data: bytes) -> None:
        self.sent.append(data)
        self.to_writer.feed_data(data)

    async def serve(self) -> None:
        ops = writes(self.writer)
        while (message := await read_frame(self.to_writer)) is not None:
            task = asyncio.create_task(self._answer(ops, message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, ops, message) -> None:  # type: ignore[no-untyped-def]
        reply, _ = await answer(ops, message)
        if self.answering:
            self.to_worker.feed_data(reply)

    async def deliver(self, store: ForwardingStore) -> None:
        while (message := await read_frame(self.to_worker)) is not None:
            store.settle(message)


@contextlib.asynccontextmanager
async def forwarding(path: Path) -> AsyncIterator[tuple[ForwardingStore, Pipe]]:
    writer = await open_sqlite(path)
    pipe = Pipe(writer)
    store = ForwardingStore(await open_sqlite(path), pipe.send)
    tasks = [asyncio.create_task(pipe.serve()), asyncio.create_task(pipe.deliver(store))]
    try:
        yield store, pipe
    finally:
        for task in tasks:
            task.cancel()
        await store.close()
        await writer.close()


class TestForwardingStore(EventStoreContract):
    unencodable_error = OperationalError  # as the service's writer answers across the pipe

    @pytest.fixture
    async def store(self, tmp_path) -> AsyncIterator[EventStore]:
        self.path = tmp_path / "threadline.db"
        async with contextlib.AsyncExitStack() as stack:
            self.stack = stack
            store, _ = await stack.enter_async_context(forwarding(self.path))
            yield store

    @pytest.fixture
    def reopen(self):
        async def reopen(store: EventStore) -> EventStore:
            await store.close()
            fresh, _ = await self.stack.enter_async_context(forwarding(self.path))
            return fresh

        return reopen


async def test_a_conflict_comes_back_with_its_fields(tmp_path) -> None:
    async with forwarding(tmp_path / "f.db") as (store, _):
        await store.append("c", records("c", 2))
        with pytest.raises(ConflictError) as caught:
            await store.append("c", records("c", 1, "late"), expected_seq=1)
        assert (caught.value.conversation_id, caught.value.expected, caught.value.actual) == (
            "c", 1, 2,
        )  # fmt: skip


async def test_refusals_come_back_as_what_the_writer_raised(tmp_path) -> None:
    async with forwarding(tmp_path / "f.db") as (store, _):
        await store.append("c", records("c", 2, "k"))
        with pytest.raises(IdempotencyError):
            await store.append("c", [*records("c", 1, "k"), record("c", key="fresh")])
        with pytest.raises(ThreadlineValidationError):
            await store.append("c", [record("another")])


async def test_once_the_writer_stops_answering_writes_fail_but_progress_marks_are_sent(
    tmp_path,
) -> None:
    async with forwarding(tmp_path / "f.db") as (store, pipe):
        pipe.answering = False
        waiting = asyncio.create_task(store.append("c", records("c", 1)))
        await asyncio.sleep(0.1)
        store.detach()
        with pytest.raises(OperationalError):
            await waiting
        with pytest.raises(OperationalError):
            await store.append("c", records("c", 1, "again"))
        sent = len(pipe.sent)
        await store.save_checkpoint("bot", 1)
        await store.save_snapshot(Snapshot("c", 1, 1, b"{}"))
        assert len(pipe.sent) == sent + 2
        async with asyncio.timeout(5):
            while await pipe.writer.load_checkpoint("bot") != 1:
                await asyncio.sleep(0.01)


async def test_frames_sent_in_one_callback_go_in_one_write_after_it() -> None:
    """The worker's frames go together once the callbacks that sent them are done; the
    service's wait one more, for the answers that join a commit's page."""
    from threadline.store.forwarding import Outgoing

    written: dict[str, list[bytes]] = {"worker": [], "service": []}
    worker = Outgoing(written["worker"].append, with_answers=False)
    service = Outgoing(written["service"].append)
    for out in (worker, service):
        out.send(b"a")
        out.send(b"b")
    await asyncio.sleep(0)  # the callbacks that were ready ran
    assert written == {"worker": [b"ab"], "service": []}
    service.send(b"c")  # an answer, settled in the next callback: it joins the page
    await asyncio.sleep(0)
    assert written == {"worker": [b"ab"], "service": [b"abc"]}

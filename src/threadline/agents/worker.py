"""The bot in a process of its own, beside the service, on the same store.

One Python process runs one core's worth of Python, and the bot's turns are
the heaviest work the service does. With ``THREADLINE_BOT_PROCESS`` (the
default of ``threadline serve``) the service starts ``python -m
threadline.agents.worker``: it follows the log with its own relay and bus and
answers turns exactly as the in-process runtime would. The two processes speak
in frames (:mod:`threadline.store.forwarding`) over the worker's stdin and
stdout: the service hands the worker what each commit appended (or, on a store
that cannot say, pokes it), so it never waits for a poll; and on SQLite, which
takes one writer at a time, the worker reads the file itself but sends its
writes to the service, whose writer commits them with its own. The worker ends
when its stdin closes, i.e. when the service stops or dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Collection, Sequence
from typing import Any, Final

import structlog

from threadline.agents.engine import EmbeddedAgent
from threadline.agents.runtime import BotRuntime
from threadline.bus.memory import MemoryBus
from threadline.business import Business, load
from threadline.cli import tune_collector
from threadline.core.errors import ConfigurationError
from threadline.core.events import EventRecord
from threadline.core.ports import Storage
from threadline.engine.conversations import Conversations
from threadline.engine.outbox import PAGE, Relay
from threadline.settings import Settings, data_dir, load_settings
from threadline.store import open_store
from threadline.store.forwarding import (
    POKE,
    READY,
    ForwardingStore,
    Message,
    Outgoing,
    answer,
    frame,
    read_frame,
    writes,
)
from threadline.store.sqlite import SQLiteStore
from threadline.systems import Systems

log = structlog.get_logger("threadline.agents.worker")

START_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 10.0
#: Frames read from the pipe at most (a large append fits many times over).
PIPE_LIMIT: Final = 16 * 1024 * 1024
#: Bytes waiting for the worker beyond which it is poked rather than handed pages.
PIPE_BACKLOG: Final = 1024 * 1024


class BotWorker:
    """The service's handle on its bot process: start, poke on every append, write, stop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process: asyncio.subprocess.Process | None = None
        self._listener: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[None]] = set()
        self._poke_due = False
        self._stopping = False
        self._out = Outgoing(self._write_now)
        #: Event ids of the worker's appends in flight: its pages leave them out.
        self._own: set[str] = set()

    async def start(self, store: Storage, appended: Callable[[], None]) -> None:
        """Start the worker; its writes go to ``store``, and ``appended()`` runs after each
        append the worker made."""
        env = {**os.environ, "THREADLINE_STORE": self.settings.store,
               "THREADLINE_SNAPSHOT_EVERY": str(self.settings.snapshot_every),
               "THREADLINE_DATA_DIR": str(data_dir(self.settings).resolve())}  # fmt: skip
        if self.settings.business is not None:
            env["THREADLINE_BUSINESS"] = str(self.settings.business.resolve())
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "threadline.agents.worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
            limit=PIPE_LIMIT,
        )  # fmt: skip
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(START_TIMEOUT):
                first = await read_frame(self.process.stdout)
        except TimeoutError:
            first = None
        if first != ("ready",):
            await self.stop()
            raise ConfigurationError("the bot worker process did not start")
        self._listener = asyncio.create_task(self._listen(store, appended), name="bot-worker")

    async def _listen(self, store: Storage, appended: Callable[[], None]) -> None:
        assert self.process is not None and self.process.stdout is not None
        ops = writes(store)
        while (message := await read_frame(self.process.stdout)) is not None:
            if message[0] == "call":
                own = _event_ids(message)
                self._own.update(own)
                # One task per write, so writes from many conversations share a commit.
                task = asyncio.create_task(self._answer(ops, message, appended, own))
                self._calls.add(task)
                task.add_done_callback(self._calls.discard)
            elif message[0] == "poke":  # the worker appended to a store it writes itself
                appended()
        if not self._stopping:
            log.warning("the bot worker process ended", returncode=self.process.returncode)

    async def _answer(
        self,
        ops: dict[str, Any],
        message: Message,
        appended: Callable[[], None],
        own: Sequence[str],
    ) -> None:
        try:
            reply, wrote = await answer(ops, message)
        finally:
            self._own.difference_update(own)  # a repeat appends nothing the page could skip
        self._write(reply)
        if wrote:
            appended()

    def _write(self, data: bytes) -> None:
        self._out.send(data)

    def _write_now(self, data: bytes) -> None:
        process = self.process
        if process is not None and process.stdin is not None and not process.stdin.is_closing():
            process.stdin.write(data)

    def feed(self, after: int, page: Sequence[EventRecord]) -> None:
        """Hand the worker what the store just committed (all events after ``after``), so
        it publishes them without reading them back; it reads itself if they leave a gap,
        as when pages pile up unread in the pipe and a poke goes instead."""
        process = self.process
        if process is None or process.stdin is None:
            return
        if process.stdin.transport.get_write_buffer_size() > PIPE_BACKLOG:
            self.poke()
            return
        self._write(page_frame(after, page, self._own))

    def reload(self) -> None:
        """Ask the worker to read the business pack again (the service has checked it)."""
        self._write(frame(("reload",)))

    def poke(self) -> None:
        """Something was appended: tell the worker to look (once per turn of the loop)."""
        if not self._poke_due:
            self._poke_due = True
            asyncio.get_running_loop().call_soon(self._send_poke)

    def _send_poke(self) -> None:
        self._poke_due = False
        self._write(POKE)

    async def stop(self) -> None:
        process = self.process
        if process is None:
            return
        self._stopping = True
        if process.stdin is not None:
            process.stdin.close()
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await process.wait()
                # The worker's last writes (its checkpoint) are still in the pipe: do them.
                if self._listener is not None:
                    await self._listener
                if self._calls:
                    await asyncio.gather(*self._calls)
        except TimeoutError:
            if process.returncode is None:
                process.kill()
                await process.wait()
        for task in (self._listener, *self._calls):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def page_frame(after: int, page: Sequence[EventRecord], own: Collection[str]) -> bytes:
    """The ``page`` frame for what a commit appended after ``after``, less the events in
    ``own`` (the worker's appends in flight, which it holds already), through the page's
    last position. A full page goes whole: the worker reads on after it."""
    through = page[-1].position if page else after
    if own and len(page) < PAGE:
        rows = tuple(tuple(r) for r in page if r.event_id not in own)
    else:
        rows = tuple(tuple(r) for r in page)
    return frame(("page", after, rows, through))


def _event_ids(message: Message) -> tuple[str, ...]:
    """The ids of the events a ``call`` message appends (none for other writes)."""
    _, _, op, args = message
    if op != "append":
        return ()
    return tuple(row[0] for row in args[1])


async def serve_bot(settings: Settings) -> None:
    """Run the bot on ``settings.store`` until stdin closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=PIPE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    # The pipe to the service is ours alone: logs and prints go to stderr instead.
    pipe = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, pipe)

    def write(data: bytes) -> None:
        if not transport.is_closing():
            transport.write(data)

    outgoing = Outgoing(write)
    send = outgoing.send

    opened = await open_store(settings.store)
    # SQLite takes one writer per file: the service's. Other stores take writes from anyone.
    forwarding = ForwardingStore(opened, send) if isinstance(opened, SQLiteStore) else None
    store: Storage = forwarding or opened
    bus = MemoryBus(store)
    relay = Relay(store, bus, store)
    # The worker's own appends wake no relay here: its hot states hold them already and the
    # bot has nothing to answer in them, so they are read with the next customer message.
    # The service must hear of them, though: it wrote them itself, or it is poked.
    on_append = None if forwarding is not None else lambda: send(POKE)
    conversations = Conversations(store, snapshot_every=settings.snapshot_every,
                                  on_append=on_append)  # fmt: skip
    systems = Systems.open(_business(settings), data_dir(settings))
    runtime = BotRuntime(conversations, EmbeddedAgent(systems))
    await runtime.start(bus)
    await relay.start()
    send(READY)
    try:
        while (message := await read_frame(reader)) is not None:
            if message[0] == "result" and forwarding is not None:
                forwarding.settle(message)
            elif message[0] == "page":
                _, after, rows, through = message
                relay.feed_through(after, [EventRecord._make(row) for row in rows], through)
            elif message[0] == "poke":
                relay.poke()
            elif message[0] == "reload":
                systems = _reloaded(settings, systems, runtime)
    finally:
        await systems.close()
        if forwarding is not None:
            forwarding.detach()  # the service closed our stdin: its answers cannot arrive
        await relay.stop()
        await bus.close()  # its last checkpoint still reaches the service, unanswered
        await store.close()
        outgoing.flush()
        transport.close()


def _business(settings: Settings) -> Business:
    if settings.business is None:
        raise ConfigurationError("the bot worker needs THREADLINE_BUSINESS")
    return load(settings.business)


def _reloaded(settings: Settings, systems: Systems, runtime: BotRuntime) -> Systems:
    """The pack read again: a valid one answers the next turns, an invalid one is logged and
    the running one stays (the service checked it before asking)."""
    try:
        business = _business(settings)
    except ConfigurationError as exc:
        log.error("business pack not reloaded", error=str(exc))
        return systems
    reloaded = systems.with_business(business)
    runtime.replace_agent(EmbeddedAgent(reloaded))
    return reloaded


def main() -> None:
    settings = load_settings()
    tune_collector()
    with contextlib.suppress(KeyboardInterrupt):
        try:
            # The loop uvicorn serves on when installed: cheaper tasks, futures and pipes.
            import uvloop
        except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
            asyncio.run(serve_bot(settings))
        else:
            uvloop.run(serve_bot(settings))


if __name__ == "__main__":
    main()

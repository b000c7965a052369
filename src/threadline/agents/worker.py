"""The bot in a process of its own, beside the service, on the same store.

One Python process runs one core's worth of Python, and the bot's turns are
the heaviest work the service does. With ``THREADLINE_BOT_PROCESS`` (the
default of ``threadline serve``) the service starts ``python -m
threadline.agents.worker``: it follows the log with its own relay and bus,
answers turns and appends them, exactly as the in-process runtime would. The
two processes poke each other through the worker's stdin and stdout, a byte
per append, so neither waits for a poll; the worker ends when its stdin
closes, i.e. when the service stops or dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable
from typing import Final

import structlog

from threadline.agents.bot import NorthwindBot
from threadline.agents.runtime import BotRuntime
from threadline.bus.memory import MemoryBus
from threadline.business import northwind
from threadline.core.errors import ConfigurationError
from threadline.core.events import utcnow
from threadline.engine.conversations import Conversations
from threadline.engine.outbox import Relay
from threadline.runtime_tuning import tune_collector
from threadline.settings import Settings, load_settings
from threadline.store import open_store

log = structlog.get_logger("threadline.agents.worker")

READY: Final = b"ready\n"
POKE: Final = b"."
START_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 10.0


class BotWorker:
    """The service's handle on its bot process: start, poke on every append, stop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process: asyncio.subprocess.Process | None = None
        self._listener: asyncio.Task[None] | None = None

    async def start(self, poke: Callable[[], None]) -> None:
        """Start the worker; ``poke()`` runs whenever the worker has appended something."""
        env = {**os.environ, "THREADLINE_STORE": self.settings.store,
               "THREADLINE_SNAPSHOT_EVERY": str(self.settings.snapshot_every)}  # fmt: skip
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "threadline.agents.worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(START_TIMEOUT):
                line = await self.process.stdout.readline()
        except TimeoutError:
            line = b""
        if line != READY:
            await self.stop()
            raise ConfigurationError("the bot worker process did not start")
        self._listener = asyncio.create_task(self._listen(poke), name="bot-worker:listen")

    async def _listen(self, poke: Callable[[], None]) -> None:
        assert self.process is not None and self.process.stdout is not None
        while await self.process.stdout.read(4096):
            poke()
        log.warning("the bot worker process ended", returncode=self.process.returncode)

    def poke(self) -> None:
        """Something was appended here: tell the worker to look now."""
        process = self.process
        if process is not None and process.stdin is not None and not process.stdin.is_closing():
            process.stdin.write(POKE)

    async def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener


async def serve_bot(settings: Settings) -> None:
    """Run the bot on ``settings.store`` until stdin closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    # The pipe to the service is ours alone: logs and prints go to stderr instead.
    pipe = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, pipe)
    store = await open_store(settings.store)
    bus = MemoryBus(store)
    relay = Relay(store, bus, store)

    def appended() -> None:
        relay.poke()
        if not transport.is_closing():
            transport.write(POKE)

    conversations = Conversations(store, snapshot_every=settings.snapshot_every, on_append=appended)
    runtime = BotRuntime(conversations, NorthwindBot(northwind(utcnow())))
    await runtime.start(bus)
    await relay.start()
    transport.write(READY)
    try:
        while await reader.read(4096):
            relay.poke()
    finally:
        await relay.stop()
        await bus.close()
        await store.close()
        transport.close()


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

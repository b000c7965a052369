"""The outbox relay: moves appended events from the log to the bus.

The log is the outbox. The relay follows ``read_all`` from its cursor and
publishes what it finds, so nothing appended is lost to a bus outage: a
failed publish is retried from the same cursor. On a durable bus the cursor
is saved after each publish (a crash republishes at most one page, which the
bus deduplicates by position). On the in-process bus, which forgets
everything on restart, the relay starts from the slowest group's checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import structlog

from threadline.core.errors import ThreadlineError
from threadline.core.ports import Bus, CheckpointStore, EventStore

log = structlog.get_logger("threadline.relay")

PAGE: Final = 500


class Relay:
    """Follows the log and publishes every event to the bus, at least once."""

    def __init__(
        self,
        store: EventStore,
        bus: Bus,
        checkpoints: CheckpointStore,
        *,
        name: str = "relay",
        poll_interval: float = 0.2,
    ) -> None:
        self._store = store
        self._bus = bus
        self._checkpoints = checkpoints
        self._name = name
        self._poll = poll_interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.cursor = 0

    async def start(self) -> None:
        self.cursor = await self._resume_from()
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def _resume_from(self) -> int:
        if self._bus.durable:
            return await self._checkpoints.load_checkpoint(self._name)
        groups = self._bus.groups()
        if not groups:
            return 0
        return min([await self._checkpoints.load_checkpoint(g) for g in groups])

    def poke(self) -> None:
        """Something was appended: look now rather than at the next poll."""
        self._wake.set()

    async def _run(self) -> None:
        delay = self._poll
        while True:
            # Clear before reading: a poke that lands during the read must wake the next wait.
            self._wake.clear()
            try:
                page = await self._store.read_all(self.cursor, PAGE)
                if page:
                    await self._bus.publish(page)
                    self.cursor = page[-1].position
                    if self._bus.durable:
                        await self._checkpoints.save_checkpoint(self._name, self.cursor)
                    delay = self._poll
                    if len(page) == PAGE:
                        continue
            except ThreadlineError as exc:
                log.warning("relay failed; retrying", error=str(exc), cursor=self.cursor)
                delay = min(delay * 2, 5.0)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that races with the wake-up, and stop() would hang.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

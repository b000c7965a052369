"""The in-process bus: the embedded default.

Published events wait in memory, in position order; each consumer group has
its own delivery task that walks them in order, retries a failing handler
with backoff (at-least-once), and saves its checkpoint to the store. The bus
itself keeps nothing across a restart, so it reports ``durable = False`` and
the relay republishes from the slowest group's checkpoint.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections.abc import Sequence
from typing import Final

import structlog

from threadline.core.events import EventRecord
from threadline.core.ports import Bus, CheckpointStore, Handler

log = structlog.get_logger("threadline.bus")

CHECKPOINT_EVERY: Final = 256


class _Group:
    def __init__(self, name: str, handler: Handler, after: int) -> None:
        self.name = name
        self.handler = handler
        self.after = after
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.redeliveries = 0


class MemoryBus(Bus):
    """Ordered, at-least-once delivery to consumer groups inside one process."""

    durable = False

    def __init__(
        self, checkpoints: CheckpointStore, retry_delay: float = 0.05, max_delay: float = 2.0
    ) -> None:
        self._checkpoints = checkpoints
        self._retry_delay = retry_delay
        self._max_delay = max_delay
        self._positions: list[int] = []
        self._records: list[EventRecord] = []
        self._groups: dict[str, _Group] = {}
        self._closed = False
        self._progress = asyncio.Event()

    def groups(self) -> list[str]:
        return list(self._groups)

    def redeliveries(self, group: str) -> int:
        """How many times ``group``'s handler failed and got an event again."""
        return self._groups[group].redeliveries

    async def publish(self, records: Sequence[EventRecord]) -> None:
        last = self._positions[-1] if self._positions else 0
        for record in records:
            if record.position > last:  # a republished event is already here
                self._positions.append(record.position)
                self._records.append(record)
                last = record.position
        for group in self._groups.values():
            group.wake.set()

    async def subscribe(self, group: str, handler: Handler) -> None:
        if group in self._groups:
            raise ValueError(f"group {group!r} is already subscribed")
        state = _Group(group, handler, await self._checkpoints.load_checkpoint(group))
        self._groups[group] = state
        state.task = asyncio.create_task(self._deliver(state), name=f"bus:{group}")

    async def drain(self) -> None:
        """Wait until every group has handled everything published so far."""
        target = self._positions[-1] if self._positions else 0
        while any(g.after < target for g in self._groups.values()):
            self._progress.clear()
            await self._progress.wait()

    async def _deliver(self, group: _Group) -> None:
        while True:
            index = bisect.bisect_right(self._positions, group.after)
            if index >= len(self._records):
                group.wake.clear()
                await group.wake.wait()
                continue
            for done, record in enumerate(self._records[index:], start=1):
                await self._handle(group, record)
                group.after = record.position
                if done % CHECKPOINT_EVERY == 0:
                    await self._checkpoints.save_checkpoint(group.name, group.after)
            await self._checkpoints.save_checkpoint(group.name, group.after)
            self._progress.set()
            self._trim()

    async def _handle(self, group: _Group, record: EventRecord) -> None:
        delay = self._retry_delay
        while True:
            try:
                await group.handler(record)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                group.redeliveries += 1
                log.warning(
                    "handler failed; redelivering",
                    group=group.name,
                    position=record.position,
                    conversation_id=record.conversation_id,
                    error=repr(exc),
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_delay)

    def _trim(self) -> None:
        floor = min(g.after for g in self._groups.values())
        cut = bisect.bisect_right(self._positions, floor)
        if cut > 1024:
            del self._positions[:cut]
            del self._records[:cut]

    async def close(self) -> None:
        self._closed = True
        for group in self._groups.values():
            if group.task is not None:
                group.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await group.task
            await self._checkpoints.save_checkpoint(group.name, group.after)

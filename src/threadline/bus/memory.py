"""The in-process bus: the embedded default.

Published events wait in memory, in position order. Each consumer group has
a dispatcher that walks them in order and hands each one to its
conversation's lane: one lane per conversation with work in hand, at most
``concurrency`` lanes at once. A group that names the event ``types`` it
handles has the others counted as finished as they pass, without a lane, a
task or a call. A lane handles its events strictly in seq
order and retries a failing handler with backoff (at-least-once), so a
failure holds back only its own conversation. The group's checkpoint is the
end of the contiguous run of finished positions, so a restart never skips an
event that a slower lane had not finished. The bus itself keeps nothing
across a restart, so it reports ``durable = False`` and the relay republishes
from the slowest group's checkpoint.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import deque
from collections.abc import Collection, Sequence
from typing import Final

import structlog

from threadline.core.events import EventRecord
from threadline.core.ports import Bus, CheckpointStore, Handler
from threadline.core.tasks import stop_tasks

log = structlog.get_logger("threadline.bus")

CHECKPOINT_EVERY: Final = 256
TRIM_AFTER: Final = 1024
CHECKPOINT_PAUSE: Final = 0.1


class _Group:
    """One consumer group: its dispatcher, its lanes and its finished frontier."""

    def __init__(
        self,
        name: str,
        handler: Handler,
        after: int,
        concurrency: int,
        types: frozenset[str] | None,
    ) -> None:
        self.name = name
        self.handler = handler
        self.concurrency = concurrency
        self.types = types
        self.after = after  # every position up to here is finished
        self.dispatched = after  # every position up to here is in a lane or finished
        self.saved = after
        self.unsaved = 0  # events finished since the last saved checkpoint
        self.in_flight: deque[int] = deque()  # dispatched, in position order
        self.finished: set[int] = set()  # finished, but behind an unfinished one
        self.lanes: dict[str, deque[EventRecord]] = {}
        self.lane_tasks: set[asyncio.Task[None]] = set()
        self.wake = asyncio.Event()
        self.lane_free = asyncio.Event()
        self.dirty = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.redeliveries = 0

    def finish(self, position: int) -> bool:
        """Mark ``position`` handled; true when the frontier moved."""
        self.finished.add(position)
        moved = False
        while self.in_flight and self.in_flight[0] in self.finished:
            self.finished.discard(self.in_flight[0])
            self.after = self.in_flight.popleft()
            self.unsaved += 1
            moved = True
        return moved

    def skip(self, position: int) -> None:
        """Count an event the group does not handle as finished, in order."""
        self.dispatched = position
        if self.in_flight:
            self.in_flight.append(position)
            self.finished.add(position)
        else:
            self.after = position
            self.unsaved += 1


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

    async def subscribe(
        self,
        group: str,
        handler: Handler,
        *,
        concurrency: int = 1,
        types: Collection[str] | None = None,
    ) -> None:
        if group in self._groups:
            raise ValueError(f"group {group!r} is already subscribed")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if types is not None and (isinstance(types, str) or not types):
            raise ValueError("types must be a non-empty collection of event types")
        after = await self._checkpoints.load_checkpoint(group)
        wanted = frozenset(types) if types is not None else None
        state = _Group(group, handler, after, concurrency, wanted)
        self._groups[group] = state
        state.tasks = [
            asyncio.create_task(self._dispatch(state), name=f"bus:{group}"),
            asyncio.create_task(self._checkpoint(state), name=f"bus:{group}:checkpoint"),
        ]

    async def drain(self) -> None:
        """Wait until every group has handled everything published so far."""
        target = self._positions[-1] if self._positions else 0
        while any(g.after < target for g in self._groups.values()):
            self._progress.clear()
            await self._progress.wait()

    async def _dispatch(self, group: _Group) -> None:
        while True:
            index = bisect.bisect_right(self._positions, group.dispatched)
            if index >= len(self._records):
                group.wake.clear()
                await group.wake.wait()
                continue
            if group.concurrency == 1:
                await self._walk(group, index)
                continue
            types = group.types
            skipped = False
            for record in self._records[index:]:
                if types is not None and record.type not in types:
                    group.skip(record.position)
                    skipped = True
                    continue
                lane = group.lanes.get(record.conversation_id)
                if lane is None:
                    while len(group.lanes) >= group.concurrency:
                        group.lane_free.clear()
                        await group.lane_free.wait()
                    lane = group.lanes[record.conversation_id] = deque()
                    task = asyncio.create_task(self._run_lane(group, record.conversation_id, lane))
                    group.lane_tasks.add(task)
                    task.add_done_callback(group.lane_tasks.discard)
                lane.append(record)
                group.in_flight.append(record.position)
                group.dispatched = record.position
            if skipped:
                self._settled(group)

    async def _walk(self, group: _Group, index: int) -> None:
        """One conversation at a time: handle in position order, without lanes."""
        types = group.types
        skipped = False
        for record in self._records[index:]:
            if types is not None and record.type not in types:
                group.skip(record.position)
                skipped = True
                continue
            group.in_flight.append(record.position)
            group.dispatched = record.position
            await self._handle(group, record)
            self._finished(group, record.position)
        if skipped:
            self._settled(group)

    def _finished(self, group: _Group, position: int) -> None:
        if group.finish(position):
            self._settled(group)

    def _settled(self, group: _Group) -> None:
        """The group's frontier may have moved: wake the checkpoint, drains and the trim."""
        self._progress.set()
        group.dirty.set()
        self._trim()

    async def _run_lane(
        self, group: _Group, conversation_id: str, lane: deque[EventRecord]
    ) -> None:
        try:
            while lane:
                record = lane[0]
                await self._handle(group, record)
                lane.popleft()
                self._finished(group, record.position)
        finally:
            if group.lanes.get(conversation_id) is lane:
                del group.lanes[conversation_id]
            group.lane_free.set()

    async def _checkpoint(self, group: _Group) -> None:
        """Save the frontier after it moves: at most one write per pause (or per page of
        events), however often it moves, since every write is a commit of the store."""
        loop = asyncio.get_running_loop()
        last = -CHECKPOINT_PAUSE
        while True:
            await group.dirty.wait()
            group.dirty.clear()
            if group.after <= group.saved:
                continue
            pause = last + CHECKPOINT_PAUSE - loop.time()
            if pause > 0 and group.unsaved < CHECKPOINT_EVERY:
                await asyncio.sleep(pause)  # let what follows settle into one write
            position, covered = group.after, group.unsaved
            await self._checkpoints.save_checkpoint(group.name, position)
            group.saved = position
            group.unsaved -= covered
            last = loop.time()

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
        if len(self._positions) <= 2 * TRIM_AFTER:
            return  # cheap test first: this runs for every event each group finishes
        floor = min(g.after for g in self._groups.values())
        cut = bisect.bisect_right(self._positions, floor)
        if cut > TRIM_AFTER:
            del self._positions[:cut]
            del self._records[:cut]

    async def close(self) -> None:
        for group in self._groups.values():
            await stop_tasks([*group.tasks, *group.lane_tasks])
            await self._checkpoints.save_checkpoint(group.name, group.after)

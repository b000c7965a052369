"""The outbox relay: moves appended events from the log to the bus.

The log is the outbox. The relay follows ``read_all`` from its cursor and
publishes what it finds, so nothing appended is lost to a bus outage: a
failed publish is retried from the same cursor. On a durable bus the cursor
is saved after each publish (a crash republishes at most one page, which the
bus deduplicates by position). On the in-process bus, which forgets
everything on restart, the relay starts from the slowest group's checkpoint.

A store that can hand over what each of its commits appended (a
:class:`CommitFeed`, as SQLite's writer does) spares the relay the read: a fed
page that follows the relay's cursor is published as it is, and anything else
(a gap, a poke, the poll) falls back to ``read_all``. Fed pages can be passed on
(:meth:`Relay.forward`), to a bot worker following the same log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final, Protocol, runtime_checkable

import structlog

from threadline.core.errors import ThreadlineError
from threadline.core.events import EventRecord
from threadline.core.ports import Bus, CheckpointStore, EventStore

log = structlog.get_logger("threadline.relay")

PAGE: Final = 500
Feed = Callable[[int, Sequence[EventRecord]], None]
#: A page that skips what the follower holds already: (after, records, through).
Page = tuple[int, Sequence[EventRecord], int]


@runtime_checkable
class CommitFeed(Protocol):
    """A store that calls ``feed(after, records)`` after each commit that appended, with
    every event after position ``after``, in order, a page at most."""

    async def follow(self, feed: Feed) -> None: ...


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
        self._read_due = True
        self._fed: deque[Page] = deque()
        self._forward: list[Feed] = []
        #: True when the store hands the relay its commits (then appends need no poke).
        self.fed = False
        self.cursor = 0
        self._stopping = False

    async def start(self) -> None:
        self._stopping = False
        self.cursor = await self._resume_from()
        if isinstance(self._store, CommitFeed):
            await self._store.follow(self.feed)
            self.fed = True
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
        self._read_due = True
        self._wake.set()

    def appended(self) -> None:
        """This process appended through the store: look now, unless the store feeds us."""
        if not self.fed:
            self.poke()

    def feed(self, after: int, page: Sequence[EventRecord]) -> None:
        """Every event after position ``after`` (a page at most), as the store committed it."""
        self._fed.append((after, page, page[-1].position if page else after))
        for forward in self._forward:
            forward(after, page)
        self._wake.set()

    def feed_through(self, after: int, page: Sequence[EventRecord], through: int) -> None:
        """The events after ``after`` up to ``through``, less some this process holds
        already and does not publish (a bot worker's own appends)."""
        self._fed.append((after, page, through))
        self._wake.set()

    def forward(self, feed: Feed) -> None:
        """Pass each fed page on to ``feed`` as it arrives."""
        self._forward.append(feed)

    async def _publish(self, page: Sequence[EventRecord]) -> None:
        await self._bus.publish(page)
        self.cursor = page[-1].position
        if self._bus.durable:
            await self._checkpoints.save_checkpoint(self._name, self.cursor)

    async def _publish_fed(self) -> None:
        """Publish the fed pages that follow the cursor; a gap or a full page means a read."""
        while self._fed:
            after, page, through = self._fed.popleft()
            if after > self.cursor:
                self._read_due = True  # behind what the store fed: read from the cursor
                continue
            fresh = [r for r in page if r.position > self.cursor]
            if fresh:
                await self._publish(fresh)
            if through > self.cursor:
                self.cursor = through
            if len(page) >= PAGE:
                self._read_due = True

    async def _run(self) -> None:
        delay = self._poll
        while not self._stopping:
            # Clear before reading: a poke that lands during the read must wake the next wait.
            self._wake.clear()
            try:
                await self._publish_fed()
                if self._read_due:
                    self._read_due = False
                    page = await self._store.read_all(self.cursor, PAGE)
                    if page:
                        await self._publish(page)
                        delay = self._poll
                        if len(page) == PAGE:
                            self._read_due = True
                            continue
            except ThreadlineError as exc:
                log.warning("relay failed; retrying", error=str(exc), cursor=self.cursor)
                self._read_due = True
                delay = min(delay * 2, 5.0)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that races with the wake-up, and stop() would hang.
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                self._read_due = True  # the poll: whatever was appended elsewhere

    async def stop(self) -> None:
        # The flag and the wake end the loop even if a driver swallows the cancellation
        # (asyncio.wait_for on Python 3.11 can, when what it waits for finishes then).
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

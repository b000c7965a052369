"""The live worklist feed: the routing state at a log position, for every desk at once.

One :class:`WorkFeed` per service follows the log in global order with
``read_all`` and folds it into a :class:`RoutingState`; the live hub only
rings its bell (the bus may deliver different conversations out of global
order, and cursors are global positions). Connected desks drive it: each
holds a :class:`Subscription`, and whichever catches up first hands every
subscription the changes that concern its viewer
(:mod:`threadline.routing.worklist`). With no desk connected nothing runs.

A subscription is registered, and the feed's position and state captured, in
one step with no await in between, so every later event reaches its queue.
:meth:`WorkFeed.follow` then yields a snapshot (a fresh desk), or the changes
after the desk's cursor replayed from the store (a reconnecting desk), then
the live changes, skipping what it already yielded: nothing is lost or
repeated. A cursor too far behind gets a fresh snapshot instead of the replay.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

from threadline.core.events import EventCodec, EventRecord
from threadline.core.ports import EventStore
from threadline.routing.queues import ROUTING_TYPES, RoutingState, fold
from threadline.routing.worklist import (
    Viewer,
    WorkChange,
    changes,
    concerns,
    needs_decoding,
    rewind,
)

PAGE: Final = 1000
QUEUE_LIMIT: Final = 10_000
#: A desk whose cursor is more events behind than this gets a snapshot instead.
BACKLOG_LIMIT: Final = 50_000


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The routing state as of ``position``: what a desk shows before any change."""

    position: int
    state: RoutingState


@dataclass(frozen=True, slots=True)
class Idle:
    """Nothing for this desk up to ``position``; a desk may resume from there."""

    position: int


FeedItem = Snapshot | WorkChange | Idle


class Subscription:
    """One desk's place in the feed: the position and state it joined at, and its queue."""

    def __init__(self, viewer: Viewer, position: int, state: RoutingState) -> None:
        self.viewer = viewer
        self.position = position
        self.state = state
        self.queue: asyncio.Queue[WorkChange] = asyncio.Queue(QUEUE_LIMIT)
        self.bell = asyncio.Event()
        self.overflowed = False

    def offer(self, change: WorkChange) -> None:
        if not concerns(change, self.viewer):
            return
        try:
            self.queue.put_nowait(change)
        except asyncio.QueueFull:
            self.overflowed = True  # the desk is too slow; it resumes from its cursor
        self.bell.set()


class WorkFeed:
    """Routing state folded from the log in position order, fanned out to desks."""

    def __init__(
        self,
        store: EventStore,
        codec: EventCodec | None = None,
        *,
        backlog_limit: int = BACKLOG_LIMIT,
    ) -> None:
        self._store = store
        self._codec = codec or EventCodec()
        self._backlog_limit = backlog_limit
        self.state = RoutingState()
        self.position = 0
        self._subscribers: set[Subscription] = set()
        self._lock = asyncio.Lock()
        self._rung = 0
        self._answered = -1
        #: The position of the last event the hub rang for, once it has rung with one.
        self._heard: int | None = None

    def ring(self, record: EventRecord | None = None) -> None:
        """Something was appended (a hub listener): desks catch up from the log.

        The hub hands events over in log order, so while the feed holds every
        event the hub rang for before ``record``, and no catch-up is reading,
        ``record`` is taken as it comes, without reading the log back.
        """
        heard = self._heard
        if record is not None:
            self._heard = record.position
            if (
                heard is not None
                and self.position >= heard
                and self._subscribers
                and self._answered >= self._rung
                and not self._lock.locked()
            ):
                self._apply(record)
                return
        self._rung += 1
        for subscription in self._subscribers:
            subscription.bell.set()

    async def catch_up(self, *, force: bool = False) -> None:
        """Fold what the log holds after the feed's position, handing out the changes."""
        if not force and self._answered >= self._rung:
            return
        async with self._lock:
            if not force and self._answered >= self._rung:
                return  # another desk caught up meanwhile
            self._answered = self._rung
            while page := await self._store.read_all(self.position, PAGE):
                self._absorb(page)
                if len(page) < PAGE:
                    break

    def _absorb(self, page: list[EventRecord]) -> None:
        if not self._subscribers:
            # Nobody to tell: fold the page at once, as the router rebuilds.
            decoded = [self._codec.decode(r) for r in page if r.type in ROUTING_TYPES]
            self.state = fold(self.state, decoded)
            self.position = page[-1].position
            return
        for record in page:
            self._apply(record)

    def _apply(self, record: EventRecord) -> None:
        if record.position <= self.position:
            return
        self.position = record.position
        before = self.state
        if not needs_decoding(before, record.type, record.conversation_id):
            return
        event = self._codec.decode(record)
        self.state = fold(before, [event])
        change = changes(before, self.state, event)
        if change is not None:
            for subscription in tuple(self._subscribers):
                subscription.offer(change)

    @contextmanager
    def subscribe(self, viewer: Viewer) -> Iterator[Subscription]:
        """A subscription for ``viewer`` from the feed's current position."""
        subscription = Subscription(viewer, self.position, self.state)
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)

    async def follow(
        self, subscription: Subscription, after: int | None, *, idle: float = 10.0
    ) -> AsyncIterator[FeedItem]:
        """A snapshot or the replay after ``after``, then live changes; :class:`Idle` when quiet.

        Stops when the subscription overflowed (the desk reconnects with its cursor).
        """
        joined = subscription.position
        last = joined
        if after is None or after > joined:
            # A cursor ahead of the log is from another log: start afresh.
            yield Snapshot(joined, subscription.state)
        elif after < joined:
            replay = await self._replay(subscription.viewer, after, subscription)
            if replay is None:
                yield Snapshot(joined, subscription.state)
            else:
                for change in replay:
                    yield change
        queue = subscription.queue
        while not subscription.overflowed:
            while not queue.empty():
                change = queue.get_nowait()
                if change.position > last:
                    last = change.position
                    yield change
            try:
                async with asyncio.timeout(idle):
                    await subscription.bell.wait()
            except TimeoutError:
                # Quiet: look anyway (cheap), then tell the desk how far it is.
                await self.catch_up(force=True)
                if queue.empty() and self.position > last:
                    last = self.position
                    yield Idle(last)
                continue
            subscription.bell.clear()
            await self.catch_up()

    async def _replay(
        self, viewer: Viewer, after: int, subscription: Subscription
    ) -> list[WorkChange] | None:
        """The changes for ``viewer`` after ``after`` up to where the subscription joined."""
        backlog = await self._backlog(after, subscription.position)
        if backlog is None:
            return None
        # The routing state of a stream moves only with its own routing events: put back
        # the streams that had one since ``after`` to how they were then.
        first: dict[str, int] = {}
        for record in backlog:
            first.setdefault(record.conversation_id, record.seq)
        moved = {r.conversation_id for r in backlog if r.type in ROUTING_TYPES}
        earlier: dict[str, RoutingState] = {}
        for stream in sorted(moved):
            seq = first[stream]
            before = await self._store.read(stream, 1, seq - 1) if seq > 1 else []
            decoded = [self._codec.decode(r) for r in before if r.type in ROUTING_TYPES]
            earlier[stream] = fold(RoutingState(), decoded)
        present = subscription.state
        return await asyncio.to_thread(self._changes_in, viewer, present, earlier, backlog)

    def _changes_in(
        self,
        viewer: Viewer,
        present: RoutingState,
        earlier: dict[str, RoutingState],
        backlog: list[EventRecord],
    ) -> list[WorkChange]:
        state = rewind(present, earlier)
        found = []
        for record in backlog:
            if not needs_decoding(state, record.type, record.conversation_id):
                continue
            event = self._codec.decode(record)
            after = fold(state, [event])
            change = changes(state, after, event)
            state = after
            if change is not None and concerns(change, viewer):
                found.append(change)
        return found

    async def _backlog(self, after: int, until: int) -> list[EventRecord] | None:
        """Events with ``after < position <= until``, or None if there are too many."""
        records: list[EventRecord] = []
        cursor = after
        while cursor < until:
            page = await self._store.read_all(cursor, PAGE)
            if not page:
                break
            records.extend(r for r in page if r.position <= until)
            if len(records) > self._backlog_limit:
                return None
            cursor = page[-1].position
        return records

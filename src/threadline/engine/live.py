"""Live feeds of conversations for connected clients (desk, widget, adapters).

A watcher registers before it reads the backlog, so nothing appended in
between is missed; it skips what it already sent, so nothing is repeated.
The hub is one consumer group on the bus, fanning records out in memory.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from typing import Final

from threadline.core.events import EventRecord
from threadline.core.ports import Bus, EventStore

QUEUE_LIMIT: Final = 10_000
GROUP: Final = "live-hub"


class Watcher:
    """One client's feed: the backlog after ``after_seq``, then every new event (of
    ``types``, when it names them)."""

    def __init__(
        self, conversation_id: str, after_seq: int, types: frozenset[str] | None = None
    ) -> None:
        self.conversation_id = conversation_id
        self.types = types
        self.last_seq = after_seq
        self.queue: asyncio.Queue[EventRecord] = asyncio.Queue(QUEUE_LIMIT)
        self.backlog: list[EventRecord] = []
        self.overflowed = False

    def offer(self, record: EventRecord) -> None:
        if self.types is not None and record.type not in self.types:
            return
        try:
            self.queue.put_nowait(record)
        except asyncio.QueueFull:
            self.overflowed = True  # the client is too slow; it will resume from its seq

    def fresh(self, record: EventRecord) -> bool:
        if record.seq <= self.last_seq:
            return False
        self.last_seq = record.seq
        return True


class LiveHub:
    """Fans appended events out to the watchers of each conversation."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._watchers: dict[str, set[Watcher]] = defaultdict(set)
        self._listeners: list[Callable[[EventRecord], None]] = []

    async def attach(self, bus: Bus) -> None:
        await bus.subscribe(GROUP, self._deliver)

    def listen(self, listener: Callable[[EventRecord], None]) -> None:
        """Call ``listener`` for every event of every conversation (queue views, desks)."""
        self._listeners.append(listener)

    async def _deliver(self, record: EventRecord) -> None:
        for watcher in tuple(self._watchers.get(record.conversation_id, ())):
            watcher.offer(record)
        for listener in self._listeners:
            listener(record)

    @asynccontextmanager
    async def watch(
        self, conversation_id: str, after_seq: int = 0, types: Collection[str] | None = None
    ) -> AsyncIterator[Watcher]:
        """A feed of ``conversation_id`` after ``after_seq``; with ``types``, of those only."""
        watcher = Watcher(conversation_id, after_seq, frozenset(types) if types else None)
        self._watchers[conversation_id].add(watcher)
        try:
            # Live events that arrive while the backlog is read wait in the queue;
            # follow() sends the backlog first and skips what it already sent.
            watcher.backlog = await self._store.read(conversation_id, from_seq=after_seq + 1)
            yield watcher
        finally:
            self._watchers[conversation_id].discard(watcher)
            if not self._watchers[conversation_id]:
                del self._watchers[conversation_id]

    async def follow(self, watcher: Watcher) -> AsyncIterator[EventRecord]:
        """Every event after the watcher's seq, in order, once each."""
        backlog, watcher.backlog = watcher.backlog, []
        types = watcher.types
        for record in backlog:
            if (types is None or record.type in types) and watcher.fresh(record):
                yield record
        while not watcher.overflowed:
            record = await watcher.queue.get()
            if watcher.fresh(record):
                yield record

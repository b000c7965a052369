"""Read models folded from the log: the index of conversations.

:class:`ConversationIndex` answers "which conversations, in what state" without
rehydrating each one. It keeps one :class:`ConversationEntry` per conversation
stream, folded from that stream's events by :func:`advance`, a pure function
that reuses the conversation state machine's own fold, so a status in the list
is the status the conversation's state reports.

The index is built from ``read_all`` at start-up, folds live events as a
:class:`~threadline.engine.live.LiveHub` listener, and catches up from the
store before every read (:meth:`ConversationIndex.catch_up`), so it gives the
same answer after a restart and a read sees whatever ``read_all`` hands out by
then: on SQLite every event committed before it; on PostgreSQL the newest
events may be held back while an older transaction in the cluster is open.
Streams that do not begin with ``conversation.started`` (agents' presence,
system streams) are not conversations and are left out.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import structlog

from threadline.core.conversation import ConversationState, evolve, fold, initial
from threadline.core.errors import DomainError
from threadline.core.events import Event, EventCodec, EventRecord
from threadline.core.ports import EventStore

log = structlog.get_logger("threadline.projections")

PAGE: Final = 1000
PREVIEW_CHARS: Final = 140
STARTED: Final = "conversation.started"
MESSAGE_TYPES: Final = frozenset({"message.received", "message.sent", "utterance.transcribed"})
#: Events that change nothing an entry shows (status, queue, assignee, customer, legs, offer)
#: beyond its seq and activity time.
QUIET: Final = frozenset({
    "intent.detected", "slot.filled", "action.requested", "action.completed", "action.failed",
    "message.sent", "message.heard", "note.added", "consent.granted", "consent.revoked",
})  # fmt: skip
#: State the index never shows; emptied after each fold so entries stay small.
_UNUSED: Final[dict[str, Any]] = {
    "summary": (),
    "recent_keys": (),
    "intents": (),
    "slots": {},
    "pending_actions": {},
}


# -- the pure fold -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LastMessage:
    """The latest message or transcribed utterance of a conversation, shortened."""

    text: str
    type: str
    actor_kind: str
    channel: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ConversationEntry:
    """One conversation as the index holds it: its (trimmed) state, and where it last moved.

    ``position`` is the log position of the last event folded: the order of
    activity across conversations.
    """

    state: ConversationState
    position: int
    last_message: LastMessage | None = None

    @property
    def conversation_id(self) -> str:
        return self.state.conversation_id

    @property
    def channels(self) -> frozenset[str]:
        """Every channel the conversation has used: its origin and its legs, live or past."""
        legs = {str(leg.get("channel")) for leg in self.state.legs.values()}
        return frozenset(legs | {self.state.origin} if self.state.origin else legs)

    @property
    def live_channels(self) -> frozenset[str]:
        return frozenset(str(leg.get("channel")) for leg in self.state.live_legs.values())

    @property
    def started_at(self) -> datetime | None:
        opened = self.state.opened_at
        return datetime.fromisoformat(opened) if opened else None

    @property
    def updated_at(self) -> datetime | None:
        updated = self.state.updated_at
        return datetime.fromisoformat(updated) if updated else None


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _last_message(event: Event) -> LastMessage:
    return LastMessage(
        text=preview(str(event.payload.get("text", ""))),
        type=event.type,
        actor_kind=event.actor.kind,
        channel=event.channel,
        at=event.occurred_at,
    )


def advance(entry: ConversationEntry | None, event: Event) -> ConversationEntry | None:
    """The entry after ``event``, a stored event of the same stream; pure.

    A stream is a conversation when its seq 1 is ``conversation.started``;
    anything else before that returns None. An event that is not the next seq
    (a redelivery, or one after a gap the store will fill) changes nothing.
    """
    if entry is None:
        if event.seq != 1 or event.type != STARTED:
            return None
        state = initial(event.conversation_id)
        last = None
    elif event.seq != entry.state.seq + 1:
        return entry
    else:
        state, last = entry.state, entry.last_message
    if event.type in QUIET:
        # Nothing the index shows moves: skip the fold (the hot path of every bot turn).
        after = evolve(state, seq=event.seq, updated_at=event.occurred_at.isoformat())
        if event.type in MESSAGE_TYPES:
            last = _last_message(event)
        return ConversationEntry(after, event.position, last)
    try:
        after = fold(state, [event])
    except DomainError:
        # Not an event of a conversation (never recorded through the engine): skip it.
        after = evolve(state, seq=event.seq)
    if event.type in MESSAGE_TYPES:
        last = _last_message(event)
    return ConversationEntry(evolve(after, **_UNUSED), event.position, last)


# -- queries -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConversationFilter:
    """What a listing asks for; every criterion given must hold (empty means any)."""

    statuses: frozenset[str] = frozenset()
    queue: str | None = None
    assignee: str | None = None
    customer_id: str | None = None
    channel: str | None = None
    updated_after: datetime | None = None

    def matches(self, entry: ConversationEntry) -> bool:
        state = entry.state
        if self.statuses and state.status not in self.statuses:
            return False
        if self.queue is not None and state.queue != self.queue:
            return False
        if self.assignee is not None and state.assignee != self.assignee:
            return False
        if self.customer_id is not None and state.customer_id != self.customer_id:
            return False
        if self.channel is not None and self.channel not in entry.channels:
            return False
        if self.updated_after is not None:
            updated = entry.updated_at
            if updated is None or updated <= self.updated_after:
                return False
        return True


#: Where a page ends: the position and id of its last entry.
PageKey = tuple[int, str]


def activity_key(entry: ConversationEntry) -> tuple[int, str]:
    """Sort key for newest activity first; ties (never in one log) by id."""
    return (-entry.position, entry.conversation_id)


def select(
    entries: Iterable[ConversationEntry],
    where: ConversationFilter,
    visible: Callable[[ConversationState], bool],
    *,
    after: PageKey | None = None,
    limit: int = 50,
) -> tuple[list[ConversationEntry], PageKey | None]:
    """One page of matching, visible entries, newest activity first, after ``after``.

    Returns the page and the key to pass as ``after`` for the next one (None
    when this was the last page).
    """
    bound = (-after[0], after[1]) if after is not None else None
    chosen = heapq.nsmallest(
        limit + 1,
        (
            e
            for e in entries
            if (bound is None or activity_key(e) > bound) and where.matches(e) and visible(e.state)
        ),
        key=activity_key,
    )
    page = chosen[:limit]
    more = len(chosen) > limit
    return page, ((page[-1].position, page[-1].conversation_id) if more and page else None)


# -- the index -----------------------------------------------------------------------


class ConversationIndex:
    """Every conversation's entry, folded from the log and kept current."""

    def __init__(self, store: EventStore, codec: EventCodec | None = None) -> None:
        self._store = store
        # Its own codec: the rebuild decodes in a worker thread.
        self._codec = codec or EventCodec()
        self._entries: dict[str, ConversationEntry] = {}
        self._by_customer: dict[str, set[str]] = {}
        self._after = 0
        self._lock = asyncio.Lock()

    @classmethod
    async def build(cls, store: EventStore, codec: EventCodec | None = None) -> ConversationIndex:
        """An index of everything ``store`` holds now."""
        index = cls(store, codec)
        await index.rebuild()
        return index

    async def rebuild(self) -> None:
        """Fold the whole log into fresh entries; pages are folded in a worker thread."""
        async with self._lock:
            entries: dict[str, ConversationEntry] = {}
            by_customer: dict[str, set[str]] = {}
            after = 0
            while page := await self._store.read_all(after, PAGE):
                await asyncio.to_thread(self._fold_page, entries, by_customer, page)
                after = page[-1].position
            self._entries, self._by_customer, self._after = entries, by_customer, after

    async def catch_up(self) -> None:
        """Fold every event the store holds that the index has not seen yet."""
        async with self._lock:
            while page := await self._store.read_all(self._after, PAGE):
                self._fold_page(self._entries, self._by_customer, page)
                self._after = page[-1].position
                if len(page) < PAGE:
                    break

    async def refold(self, conversation_ids: Collection[str]) -> None:
        """Fold ``conversation_ids`` again from their streams, so their entries show what the
        log holds now (after an erasure: previews of erased messages read as erased)."""
        async with self._lock:
            for conversation_id in conversation_ids:
                fresh: dict[str, ConversationEntry] = {}
                for record in await self._store.read(conversation_id):
                    self._fold(fresh, self._by_customer, record)
                entry = fresh.get(conversation_id)
                if entry is None:
                    self._entries.pop(conversation_id, None)
                else:
                    self._entries[conversation_id] = entry

    def observe(self, record: EventRecord) -> None:
        """Fold one live event (the LiveHub listener); a repeat or a gap changes nothing.

        A failure stays here, so live feeds never suffer for the index; the next
        :meth:`catch_up` meets the event again and raises where it can be seen.
        """
        try:
            self._fold(self._entries, self._by_customer, record)
        except Exception as exc:
            log.warning("index could not fold a live event", error=repr(exc),
                        conversation_id=record.conversation_id, seq=record.seq)  # fmt: skip

    def _fold_page(
        self,
        entries: dict[str, ConversationEntry],
        by_customer: dict[str, set[str]],
        page: Iterable[EventRecord],
    ) -> None:
        for record in page:
            self._fold(entries, by_customer, record)

    def _fold(
        self,
        entries: dict[str, ConversationEntry],
        by_customer: dict[str, set[str]],
        record: EventRecord,
    ) -> None:
        entry = entries.get(record.conversation_id)
        # Cheap tests first: most repeats and every non-conversation stream decode nothing.
        if entry is None:
            if record.seq != 1 or record.type != STARTED:
                return
        elif record.seq != entry.state.seq + 1:
            return
        elif record.type in QUIET and record.type not in MESSAGE_TYPES:
            # What advance() does for it, from the envelope alone: no payload to decode.
            state = evolve(entry.state, seq=record.seq, updated_at=record.occurred_at.isoformat())
            entries[record.conversation_id] = ConversationEntry(
                state, record.position, entry.last_message
            )
            return
        after = advance(entry, self._codec.decode(record))
        if after is None:
            return
        entries[record.conversation_id] = after
        customer = after.state.customer_id
        if customer is not None and (entry is None or entry.state.customer_id != customer):
            by_customer.setdefault(customer, set()).add(record.conversation_id)

    # -- reading ---------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[ConversationEntry]:
        return iter(tuple(self._entries.values()))

    def get(self, conversation_id: str) -> ConversationEntry | None:
        return self._entries.get(conversation_id)

    def of_customer(self, customer_id: str) -> list[ConversationEntry]:
        """The customer's conversations, newest activity first."""
        ids: Collection[str] = self._by_customer.get(customer_id, ())
        found = (self._entries[i] for i in ids if i in self._entries)
        return sorted(found, key=activity_key)

    def select(
        self,
        where: ConversationFilter,
        visible: Callable[[ConversationState], bool],
        *,
        after: PageKey | None = None,
        limit: int = 50,
    ) -> tuple[list[ConversationEntry], PageKey | None]:
        """A page of :func:`select` over the index (only the customer's, when filtered so)."""
        pool: Iterable[ConversationEntry] = (
            self.of_customer(where.customer_id) if where.customer_id is not None else self
        )
        return select(pool, where, visible, after=after, limit=limit)

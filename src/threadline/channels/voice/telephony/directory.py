"""Which conversation a caller continues, and which conversation a call is on.

A small read model folded from the log: for each conversation its customer
and whether it is open, and for each voice leg (a call) its conversation.
It is built from ``read_all`` at start-up and kept current by a LiveHub
listener and by the voice adapter's own appends, so a second call placed
right after the first already finds the conversation. A conversation that an
anonymous visitor started becomes its customer's when a proof identifies her.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import orjson

from threadline.core.events import EventRecord
from threadline.core.ports import EventStore
from threadline.core.verification import anonymous

PAGE: Final = 1000
MAX_CALLS: Final = 100_000
OPENS: Final = frozenset({"conversation.started", "conversation.reopened"})
CLOSES: Final = frozenset({"conversation.resolved", "conversation.abandoned"})


@dataclass(slots=True)
class _Entry:
    customer_id: str | None
    open: bool
    position: int
    #: when it was last resolved or abandoned (None while open)
    closed_at: datetime | None = None


class CallerDirectory:
    """Customers' open conversations and calls' conversations, folded from the log."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._by_customer: dict[str, set[str]] = {}
        self._calls: OrderedDict[str, str] = OrderedDict()
        self._buffer: list[EventRecord] | None = None

    async def load(self, store: EventStore, attach: Callable[[], None] | None = None) -> None:
        """Fold the whole log. ``attach`` subscribes :meth:`note` first; what it
        delivers during the scan is applied after the scan, in order."""
        self._buffer = []
        if attach is not None:
            attach()
        after = 0
        while True:
            page = await store.read_all(after, PAGE)
            for record in page:
                self._apply(record)
            if len(page) < PAGE:
                break
            after = page[-1].position
        buffered, self._buffer = self._buffer, None
        for record in sorted(buffered, key=lambda r: r.position):
            self._apply(record)

    def note(self, record: EventRecord) -> None:
        """Fold one appended event (a LiveHub listener)."""
        if self._buffer is not None:
            self._buffer.append(record)
        else:
            self._apply(record)

    def _apply(self, record: EventRecord) -> None:
        entry = self._entries.get(record.conversation_id)
        if entry is not None and record.position <= entry.position:
            return  # seen already (a redelivery, or our own append)
        if entry is None:
            if record.type != "conversation.started":
                return  # not a conversation (agents' and system streams)
            entry = self._entries[record.conversation_id] = _Entry(None, True, 0)
        entry.position = record.position
        if entry.customer_id is None and record.customer_id:
            entry.customer_id = record.customer_id
            self._by_customer.setdefault(record.customer_id, set()).add(record.conversation_id)
        elif record.type == "identity.linked" and anonymous(entry.customer_id):
            identified = orjson.loads(record.payload).get("customer_id")
            if isinstance(identified, str) and identified != entry.customer_id:
                self._identified(record.conversation_id, entry, identified)
        if record.type in OPENS:
            entry.open, entry.closed_at = True, None
        elif record.type in CLOSES:
            entry.open, entry.closed_at = False, record.occurred_at
        elif record.type == "leg.started" and record.channel == "voice":
            leg_id = orjson.loads(record.payload).get("leg_id")
            if isinstance(leg_id, str):
                self._remember_call(leg_id, record.conversation_id)

    def _identified(self, conversation_id: str, entry: _Entry, customer_id: str) -> None:
        """A proof showed whose the conversation is: it is that customer's from now on."""
        if entry.customer_id is not None:
            self._by_customer.get(entry.customer_id, set()).discard(conversation_id)
        entry.customer_id = customer_id
        self._by_customer.setdefault(customer_id, set()).add(conversation_id)

    def _remember_call(self, call_id: str, conversation_id: str) -> None:
        self._calls[call_id] = conversation_id
        self._calls.move_to_end(call_id)
        if len(self._calls) > MAX_CALLS:
            self._calls.popitem(last=False)

    def remember(self, conversation_id: str, customer_id: str, call_id: str, position: int) -> None:
        """What the voice adapter just appended: an open conversation with this call on it."""
        entry = self._entries.setdefault(conversation_id, _Entry(customer_id, True, 0))
        entry.open, entry.closed_at = True, None
        entry.position = max(entry.position, position)
        if entry.customer_id is None:
            entry.customer_id = customer_id
        self._by_customer.setdefault(customer_id, set()).add(conversation_id)
        self._remember_call(call_id, conversation_id)

    def open_conversation(self, customer_id: str) -> str | None:
        """The customer's most recently active open conversation, if any."""
        ids = self._by_customer.get(customer_id, ())
        live = [(self._entries[c].position, c) for c in ids if self._entries[c].open]
        return max(live)[1] if live else None

    def recently_closed(self, customer_id: str, now: datetime, window: timedelta) -> str | None:
        """The customer's conversation closed most recently, if that was within ``window``."""
        ids = self._by_customer.get(customer_id, ())
        closed = [
            (entry.closed_at, c)
            for c in ids
            if (entry := self._entries[c]).closed_at is not None and now - entry.closed_at <= window
        ]
        return max(closed)[1] if closed else None

    def conversation_of(self, call_id: str) -> str | None:
        """The conversation the call ``call_id`` is a leg of."""
        return self._calls.get(call_id)

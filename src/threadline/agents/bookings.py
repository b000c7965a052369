"""The repair-counter book as a fold of the log.

A booking exists because the bot recorded ``action.completed`` for a
``book_appointment`` call; folding those events over the seeded business
gives the same book after a restart as before it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Final

from threadline.agents.tools import BOOK_APPOINTMENT
from threadline.business import Business
from threadline.business.values import Appointment
from threadline.core.events import EventCodec, EventRecord
from threadline.core.ports import EventStore

PAGE: Final = 1000
WATCHED: Final = frozenset({"action.requested", "action.completed"})


class BookLedger:
    """Pairs ``action.requested`` with ``action.completed`` and keeps the booked slots."""

    def __init__(self) -> None:
        self._booking_calls: set[tuple[str, str]] = set()
        self.appointments: dict[str, Appointment] = {}

    def apply(self, record: EventRecord, payload: dict[str, object]) -> None:
        action = (record.conversation_id, str(payload.get("action_id")))
        if record.type == "action.requested":
            if payload.get("tool") == BOOK_APPOINTMENT:
                self._booking_calls.add(action)
        elif record.type == "action.completed" and action in self._booking_calls:
            self._booking_calls.discard(action)
            result = payload.get("result")
            if isinstance(result, dict):
                appointment = Appointment(
                    id=str(result["appointment_id"]),
                    store_id=str(result["store"]),
                    customer_id=record.customer_id,
                    service=str(result["service"]),
                    start=datetime.fromisoformat(str(result["start"])),
                )
                self.appointments[appointment.id] = appointment


def with_bookings(business: Business, appointments: Iterable[Appointment]) -> Business:
    """``business`` with ``appointments`` in its book (ids already there are kept once)."""
    book = {a.id: a for a in business.appointments}
    for appointment in appointments:
        book.setdefault(appointment.id, appointment)
    ordered = tuple(sorted(book.values(), key=lambda a: a.start))
    return replace(business, appointments=ordered)


def without_bookings(business: Business, ids: Iterable[str]) -> Business:
    """``business`` with the appointments ``ids`` taken out of its book."""
    gone = set(ids)
    kept = tuple(a for a in business.appointments if a.id not in gone)
    return replace(business, appointments=kept)


async def restore_bookings(store: EventStore, codec: EventCodec, business: Business) -> Business:
    """``business`` with every booking the log records."""
    ledger = BookLedger()
    after = 0
    while page := await store.read_all(after, PAGE):
        for record in page:
            if record.type in WATCHED:
                ledger.apply(record, dict(codec.decode(record).payload))
        after = page[-1].position
    return with_bookings(business, ledger.appointments.values())

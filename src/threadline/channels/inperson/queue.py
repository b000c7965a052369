"""A store's in-person queue: ``visit.queued`` and ``visit.called`` on ``store:<id>``.

The kiosk appends a customer who checks in; an associate who takes them
appends the call. The queue is a fold of that stream: who waits, since when.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from threadline.channels.inperson.codes import LINEAGE
from threadline.core.events import Actor, Event, EventCodec, EventRecord
from threadline.core.ports import ANY, EventStore

QUEUED: Final = "visit.queued"
CALLED: Final = "visit.called"


def store_stream(store_id: str) -> str:
    """The stream that holds a store's queue."""
    return f"store:{store_id}"


@dataclass(frozen=True, slots=True)
class Waiting:
    """One customer waiting in a store."""

    entry_id: str
    customer_id: str
    conversation_id: str | None
    display_name: str
    method: str
    queued_at: datetime

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "entry_id": self.entry_id,
            "customer_id": self.customer_id,
            "conversation_id": self.conversation_id,
            "display_name": self.display_name,
            "method": self.method,
            "queued_at": self.queued_at.isoformat(),
            "waiting_seconds": max(0, int((now - self.queued_at).total_seconds())),
        }


def waiting(events: Iterable[Event]) -> list[Waiting]:
    """Who still waits after ``events`` (a store stream), longest wait first."""
    entries: dict[str, Waiting] = {}
    for event in events:
        p = event.payload
        if event.type == QUEUED:
            entries[p["entry_id"]] = Waiting(
                p["entry_id"], p["customer_id"], p.get("conversation_id"),
                p["display_name"], p["method"], event.occurred_at,
            )  # fmt: skip
        elif event.type == CALLED:
            entries.pop(p["entry_id"], None)
    return sorted(entries.values(), key=lambda w: w.queued_at)


class StoreQueue:
    """Appends to and reads a store's queue."""

    def __init__(self, store: EventStore, codec: EventCodec) -> None:
        self._store = store
        self._codec = codec

    def decode(self, records: Iterable[EventRecord]) -> list[Event]:
        return [self._codec.decode(r) for r in records]

    async def waiting(self, store_id: str) -> list[Waiting]:
        return waiting(self.decode(await self._store.read(store_stream(store_id))))

    async def _append(self, store_id: str, type_: str, payload: dict[str, Any],
                      actor: Actor, key: str) -> None:  # fmt: skip
        event = Event(
            conversation_id=store_stream(store_id),
            type=type_,
            payload=payload,
            channel="in_person",
            actor=actor,
            customer_id=payload.get("customer_id"),
            idempotency_key=key,
            lineage=LINEAGE,
        )
        await self._store.append(store_stream(store_id), [self._codec.encode(event)], ANY)

    async def join(self, entry: Waiting, store_id: str, kiosk_id: str) -> None:
        payload = {
            "entry_id": entry.entry_id, "store_id": store_id, "customer_id": entry.customer_id,
            "conversation_id": entry.conversation_id, "display_name": entry.display_name,
            "method": entry.method,
        }  # fmt: skip
        await self._append(store_id, QUEUED, payload, Actor("system", kiosk_id),
                           f"queued:{entry.entry_id}")  # fmt: skip

    async def call(self, store_id: str, entry_id: str, associate_id: str,
                   conversation_id: str) -> None:  # fmt: skip
        payload = {"entry_id": entry_id, "associate_id": associate_id,
                   "conversation_id": conversation_id}  # fmt: skip
        await self._append(store_id, CALLED, payload, Actor("human", associate_id),
                           f"called:{entry_id}")  # fmt: skip

"""Writing one bot turn as canonical events, deterministically.

Every id in a turn is derived from the turn's inputs: the idempotency key from
the message the turn answers (or the state's seq), the event id from the key,
the conversation and the clock. Taking the same turn twice therefore yields the
same events, and recording them twice returns the first result.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from threadline.core.events import Actor, Event, Lineage


def deterministic_uuid7(moment: datetime, seed: str) -> str:
    """A UUIDv7 whose time is ``moment`` and whose random bits are a hash of ``seed``."""
    millis = int(moment.timestamp() * 1000) & ((1 << 48) - 1)
    digest = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:10], "big")
    rand_a = digest >> 68  # 12 bits
    rand_b = digest & ((1 << 62) - 1)
    value = (millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    digits = f"{value:032x}"  # what str(uuid.UUID(int=value)) writes, without building one
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


@dataclass(slots=True)
class TurnWriter:
    """Builds the events of one turn with a shared envelope and derived ids."""

    conversation_id: str
    channel: str
    now: datetime
    actor: Actor
    lineage: Lineage
    anchor: str
    leg_id: str | None = None
    customer_id: str | None = None
    correlation_id: str = ""
    in_reply_to: str | None = None
    events: list[Event] = field(default_factory=list)
    actions: int = 0

    def key(self, index: int) -> str:
        return f"{self.actor.id}/{self.anchor}/{index}"

    def emit(self, type_: str, payload: dict[str, Any], *, caused_by: Event | None = None) -> Event:
        """Add an event; its cause is ``caused_by``, else the message the turn answers."""
        key = self.key(len(self.events))
        event = Event(
            conversation_id=self.conversation_id,
            type=type_,
            payload=payload,
            channel=self.channel,
            actor=self.actor,
            event_id=deterministic_uuid7(self.now, f"{self.conversation_id}\x00{key}"),
            occurred_at=self.now,
            leg_id=self.leg_id,
            customer_id=self.customer_id,
            correlation_id=self.correlation_id,
            causation_id=caused_by.event_id if caused_by is not None else self.in_reply_to,
            idempotency_key=key,
            lineage=self.lineage,
        )
        self.events.append(event)
        return event

    def next_action_id(self) -> str:
        self.actions += 1
        return f"act-{self.anchor}-{self.actions}"

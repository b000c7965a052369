"""Small builders of canonical events and stored records for tests and benchmarks."""

from __future__ import annotations

from typing import Any

from threadline.core.events import Actor, Event, EventCodec, EventRecord, Lineage, new_id

CODEC = EventCodec()
CUSTOMER = Actor("customer", "cus-ada")
BOT = Actor("bot", "shop-bot")


def message(
    conversation_id: str,
    text: str = "where is my order 5120?",
    *,
    key: str | None = None,
    channel: str = "chat",
    actor: Actor = CUSTOMER,
    **envelope: Any,
) -> Event:
    """A ``message.received`` event from a customer on chat."""
    return Event(
        conversation_id=conversation_id,
        type="message.received",
        payload={"text": text},
        channel=channel,
        actor=actor,
        idempotency_key=key or new_id(),
        customer_id=CUSTOMER.id,
        lineage=Lineage("chat-adapter", "1"),
        **envelope,
    )


def record(conversation_id: str, text: str = "where is my order 5120?", **kw: Any) -> EventRecord:
    """The stored form of :func:`message`."""
    return CODEC.encode(message(conversation_id, text, **kw))


def records(conversation_id: str, count: int, prefix: str = "k") -> list[EventRecord]:
    """``count`` message records with idempotency keys ``prefix-0``, ``prefix-1``…"""
    return [record(conversation_id, f"message {i}", key=f"{prefix}-{i}") for i in range(count)]

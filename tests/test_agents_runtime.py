"""The bot runtime over a real store and bus: concurrent turns, bookings kept in the log."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from threadline.agents import NorthwindBot
from threadline.agents.bookings import BookLedger
from threadline.agents.runtime import BotRuntime
from threadline.bus.memory import MemoryBus
from threadline.business import northwind
from threadline.core.events import Actor, Event, Lineage
from threadline.engine.conversations import Conversations
from threadline.engine.outbox import Relay

NOW = datetime(2025, 3, 4, 17, 0, tzinfo=UTC)  # Tuesday 09:00 in Los Angeles
ADAPTER = Lineage("chat-adapter", "1")
ASK = "can I book a repair in Oakland tomorrow at 11:30?"


def _said(conversation_id: str, customer: str, text: str, n: int) -> list[Event]:
    def event(type_: str, payload: dict[str, object], key: str) -> Event:
        return Event(conversation_id, type_, payload, channel="chat", leg_id=f"chat-{customer}",
                     actor=Actor("customer", customer), customer_id=customer,
                     idempotency_key=key, lineage=ADAPTER)  # fmt: skip

    events = [event("message.received", {"text": text}, f"{conversation_id}:m{n}")]
    if n == 0:
        events[:0] = [
            event("conversation.started", {"origin": "chat"}, f"{conversation_id}:start"),
            event("leg.started", {"leg_id": f"chat-{customer}", "channel": "chat"},
                  f"{conversation_id}:leg"),
        ]  # fmt: skip
    return events


class Service:
    """The store, bus, relay and bot runtime, as the app wires them."""

    def __init__(self, store) -> None:
        self.bus = MemoryBus(store)
        self.relay = Relay(store, self.bus, store, poll_interval=0.01)
        self.conversations = Conversations(store, on_append=self.relay.poke)
        self.runtime = BotRuntime(
            self.conversations, NorthwindBot(northwind(NOW)), clock=lambda: NOW
        )

    async def __aenter__(self) -> Service:
        await self.runtime.start(self.bus)
        await self.relay.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.relay.stop()
        await self.bus.close()

    async def say(self, conversation_id: str, customer: str, text: str, n: int = 0) -> None:
        await self.conversations.record(conversation_id, _said(conversation_id, customer, text, n))

    async def settle(self) -> None:
        await asyncio.sleep(0.05)
        await asyncio.wait_for(self.bus.drain(), 10)

    async def answered(self, conversation_id: str, replies: int) -> None:
        while True:
            timeline = await self.conversations.timeline(conversation_id)
            if [e.type for e in timeline].count("message.sent") >= replies:
                return
            await asyncio.sleep(0.01)

    async def outcome(self, conversation_id: str) -> list[str]:
        timeline = await self.conversations.timeline(conversation_id)
        return [e.type for e in timeline if e.type in {"action.completed", "action.failed"}]


async def test_many_conversations_are_answered_at_once_each_in_order(any_store) -> None:
    async with Service(any_store) as service:
        ids = [f"conv-{n}" for n in range(30)]

        async def chat(conversation_id: str) -> None:
            await service.say(conversation_id, f"visitor-{conversation_id}", "when are you open?")
            await service.answered(conversation_id, 1)
            await service.say(conversation_id, f"visitor-{conversation_id}", "Oakland", 1)
            await service.answered(conversation_id, 2)

        await asyncio.wait_for(asyncio.gather(*(chat(c) for c in ids)), 20)
        for conversation_id in ids:
            timeline = await service.conversations.timeline(conversation_id)
            said = [e.type for e in timeline if e.type in {"message.received", "message.sent"}]
            assert said == ["message.received", "message.sent"] * 2


async def test_two_customers_racing_for_one_slot_get_it_once(any_store) -> None:
    async with Service(any_store) as service:
        await asyncio.gather(
            service.say("conv-maya", "cus-maya", ASK), service.say("conv-lena", "cus-lena", ASK)
        )
        await service.settle()
        outcomes = [await service.outcome(c) for c in ("conv-maya", "conv-lena")]
        assert sorted(outcomes) == [["action.completed"], ["action.failed"]]
        book = service.runtime.bot.business.appointments_at(
            "oak-broadway", NOW.date().replace(day=5)
        )
        assert [a.start.strftime("%H:%M") for a in book].count("11:30") == 1


async def test_bookings_survive_a_restart(any_store) -> None:
    async with Service(any_store) as service:
        await service.say("conv-maya", "cus-maya", ASK)
        await service.settle()
        assert await service.outcome("conv-maya") == ["action.completed"]
    async with Service(any_store) as restarted:
        booked = restarted.runtime.bot.business.appointments_for("cus-maya")
        assert [a.start.strftime("%H:%M") for a in booked] == ["11:30"]
        await restarted.say("conv-lena", "cus-lena", ASK)
        await restarted.settle()
        assert await restarted.outcome("conv-lena") == ["action.failed"]


async def test_the_ledger_counts_only_completed_booking_calls(any_store) -> None:
    async with Service(any_store) as service:
        await service.say("conv-maya", "cus-maya", ASK)
        await service.say("conv-omar", "cus-omar", "when is Market Street open on Sunday?")
        await service.settle()
    ledger = BookLedger()
    codec = Conversations(any_store).codec
    for record in await any_store.read_all(0, 1000):
        ledger.apply(record, dict(codec.decode(record).payload))
    assert [(a.customer_id, a.store_id) for a in ledger.appointments.values()] == [
        ("cus-maya", "oak-broadway")
    ]

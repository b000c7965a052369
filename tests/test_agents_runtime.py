"""The agent runtime over a real store and bus: concurrent turns, bookings made once in the
business's own system (its book survives a restart; a turn taken again books nothing twice)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from threadline.agents import EmbeddedAgent
from threadline.agents.runtime import BotRuntime
from threadline.bus.memory import MemoryBus
from threadline.core.conversation import fold, initial
from threadline.core.events import Actor, Event, Lineage
from threadline.engine.conversations import Conversations
from threadline.engine.outbox import Relay
from threadline.systems import ToolCall

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

    def __init__(self, store, systems) -> None:
        self.bus = MemoryBus(store)
        self.relay = Relay(store, self.bus, store, poll_interval=0.01)
        self.conversations = Conversations(store, on_append=self.relay.poke)
        self.systems = systems
        self.runtime = BotRuntime(self.conversations, EmbeddedAgent(systems), clock=lambda: NOW)

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

    async def outcome(self, conversation_id: str) -> str | None:
        """How the conversation's booking call ended: completed, failed, or None."""
        timeline = await self.conversations.timeline(conversation_id)
        booking = {e.payload["action_id"] for e in timeline if e.type == "action.requested"
                   and e.payload["tool"] == "book_appointment"}  # fmt: skip
        ends = [e.type for e in timeline if e.type in {"action.completed", "action.failed"}
                and e.payload["action_id"] in booking]  # fmt: skip
        return ends[-1] if ends else None

    async def booked(self, customer_id: str) -> list[str]:
        """The start times of the customer's appointments, as the business's book has them."""
        call = ToolCall("customer_appointments", {"customer_id": customer_id}, "test", NOW)
        found = await self.systems.tools.call(call)
        return [a["start"][11:16] for a in found["appointments"]]


async def test_many_conversations_are_answered_at_once_each_in_order(any_store, systems) -> None:
    async with Service(any_store, systems) as service:
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


async def test_two_customers_racing_for_one_slot_get_it_once(any_store, systems) -> None:
    async with Service(any_store, systems) as service:
        await asyncio.gather(
            service.say("conv-maya", "cus-maya", ASK), service.say("conv-lena", "cus-lena", ASK)
        )
        await service.settle()
        outcomes = [await service.outcome(c) for c in ("conv-maya", "conv-lena")]
        assert sorted(outcomes) == ["action.completed", "action.failed"]  # type: ignore[type-var]
        assert (await service.booked("cus-maya") + await service.booked("cus-lena")) == ["11:30"]


async def test_bookings_survive_a_restart(any_store, northwind, tmp_path) -> None:
    from threadline.systems import Systems

    first = Systems.open(northwind, tmp_path / "book")
    async with Service(any_store, first) as service:
        await service.say("conv-maya", "cus-maya", ASK)
        await service.settle()
        assert await service.outcome("conv-maya") == "action.completed"
    await first.close()
    again = Systems.open(northwind, tmp_path / "book")  # the business's system, restarted
    async with Service(any_store, again) as restarted:
        assert await restarted.booked("cus-maya") == ["11:30"]
        await restarted.say("conv-lena", "cus-lena", ASK)
        await restarted.settle()
        assert await restarted.outcome("conv-lena") == "action.failed"
    await again.close()


async def test_a_booking_turn_taken_again_books_once(any_store, systems) -> None:
    async with Service(any_store, systems) as service:
        await service.say("conv-v", "visitor-v", ASK)
        await service.settle()
        assert await service.outcome("conv-v") == "action.completed"
    # A worker that crashed after the booking but before recording the turn takes it again
    # on the state the message left (the book tool itself answers a repeated key with its
    # first booking: tests/test_agents_tools.py).
    timeline = await Conversations(any_store).timeline("conv-v")
    message = next(e for e in timeline if e.type == "message.received")
    before = fold(initial("conv-v"), [e for e in timeline if e.seq <= message.seq])
    agent = EmbeddedAgent(systems)
    turn = await agent.take_turn(before, ASK, "chat", NOW, leg_id="chat-visitor-v",
                                 in_reply_to=message.event_id)  # fmt: skip
    assert "already booked" in str(turn.reply)  # the business's book knows it: no second
    assert not [e for e in turn.events if e.type == "action.requested"
                and e.payload["tool"] == "book_appointment"]  # fmt: skip
    assert await service.booked("visitor-v") == ["11:30"]

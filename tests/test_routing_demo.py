"""The demo business's queues and agents, and its handoff end to end on a real SQLite store.

``demo_config`` is shared by the other routing tests.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from threadline.bus.memory import MemoryBus
from threadline.core.conversation import WITH_HUMAN
from threadline.core.events import Actor, Event, Lineage, new_id
from threadline.engine.conversations import Conversations
from threadline.engine.outbox import Relay
from threadline.routing import (
    AgentPresence,
    AgentSpec,
    QueueSpec,
    Router,
    RoutingConfig,
    build_packet,
)
from threadline.store.sqlite import open_sqlite

MAYA = Actor("customer", "cus-maya")
BOT = Actor("bot", "northwind-bot")
ANA = Actor("human", "agent-ana")


def demo_config(capacity: int = 2) -> RoutingConfig:
    """Northwind's queues and agents (DEMO.md): Ana on orders and billing, Ben on repairs
    and billing, Sam supervising (never routed to)."""
    return RoutingConfig(
        queues=(
            QueueSpec("orders", {"orders", "delivery"}),
            QueueSpec("repairs", {"repairs", "appointments"}),
            QueueSpec("billing", {"payments", "refunds"}),
        ),
        agents=(
            AgentSpec(
                "agent-ana", "Ana Ruiz", {"orders", "billing"},
                {"orders", "delivery", "payments", "refunds"}, capacity, "desk:agent-ana",
            ),
            AgentSpec(
                "agent-ben", "Ben Okafor", {"repairs", "billing"},
                {"repairs", "appointments", "payments", "refunds"}, capacity, "desk:agent-ben",
            ),
            AgentSpec("sup-sam", "Sam Lee", (), (), 0, "desk:sup-sam"),
        ),
    )  # fmt: skip


async def eventually(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll ``check`` (plain or async) until it returns something truthy; that value."""
    async with asyncio.timeout(timeout):
        while True:
            value = check()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(0.005)


def chat(cid: str, type_: str, payload: dict[str, Any], actor: Actor = BOT) -> Event:
    return Event(
        cid, type_, payload, channel="chat", leg_id="chat-1", actor=actor,
        customer_id="cus-maya", lineage=Lineage("chat-adapter", "1"),
    )  # fmt: skip


async def test_a_chat_handed_to_orders_reaches_ana_with_the_order_number(tmp_path) -> None:
    store = await open_sqlite(tmp_path / "threadline.db")
    conversations = Conversations(store)
    bus = MemoryBus(store)
    router = Router(conversations, demo_config(), offer_ttl=30)
    await router.start(bus)
    relay = Relay(store, bus, store, poll_interval=0.01)
    await relay.start()
    try:
        await AgentPresence(store).set_presence("agent-ana", "available")
        cid = new_id()
        order = {"order": "1042", "status": "delayed"}
        for event in [
            chat(cid, "conversation.started", {"origin": "chat"}, MAYA),
            chat(cid, "leg.started", {"leg_id": "chat-1", "channel": "chat"}, MAYA),
            chat(cid, "message.received", {"text": "My order 1042 hasn't arrived"}, MAYA),
            chat(cid, "intent.detected", {"intent": "order_status", "confidence": 0.94}),
            chat(cid, "slot.filled", {"name": "order_number", "value": "1042"}),
            chat(cid, "action.requested", {"action_id": "a-1", "tool": "lookup_order"}),
            chat(cid, "action.completed", {"action_id": "a-1", "result": order}),
            chat(cid, "message.received", {"text": "I want to talk to a person"}, MAYA),
            chat(cid, "handoff.requested", {"queue": "orders", "reason_code": "customer_request"}),
        ]:
            await conversations.record(cid, [event])

        async def offered() -> Event | None:
            timeline = await conversations.timeline(cid)
            return next((e for e in timeline if e.type == "handoff.offered"), None)

        offer = await eventually(offered)
        assert offer.payload["agent_id"] == "agent-ana"
        assert offer.payload["queue"] == "orders"
        expires_in = datetime.fromisoformat(offer.payload["expires_at"]) - offer.occurred_at
        assert timedelta(seconds=29) < expires_in <= timedelta(seconds=30)

        accept = {"offer_id": offer.payload["offer_id"], "agent_id": "agent-ana"}
        await conversations.record(cid, [chat(cid, "handoff.accepted", accept, ANA)])
        await eventually(lambda: cid in router.state.agent("agent-ana").conversations)

        state = await conversations.rehydrate(cid)
        packet = build_packet(state, await conversations.timeline(cid))
        assert state.status == WITH_HUMAN and packet.assignee == "agent-ana"
        slot = packet.slot("order_number")
        assert slot is not None and (slot.value, slot.channel) == ("1042", "chat")
        assert packet.queue == "orders" and packet.reason_code == "customer_request"
        assert [(a.tool, a.status) for a in packet.actions] == [("lookup_order", "completed")]
        assert packet.messages[-1].text == "I want to talk to a person"
    finally:
        await relay.stop()
        await router.stop()
        await bus.close()
        await store.close()


def test_the_northwind_pack_staffs_the_queues_as_demo_md_says(northwind) -> None:
    from threadline.routing.staffing import routing_config

    assert routing_config(northwind) == demo_config()

"""The demo journey: Maya's late laptop across chat, a phone call and a store visit.

It runs through the real engine and log (whatever store the settings name),
so its timeline is what any consumer of the log would see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from threadline.core.conversation import ConversationState
from threadline.core.events import Actor, Event, Lineage, new_id, utcnow
from threadline.engine.conversations import Conversations

MAYA = Actor("customer", "cus-maya")
BOT = Actor("bot", "northwind-bot")
ANA = Actor("human", "agent-ana")
PRIYA = Actor("human", "assoc-priya")
ROUTER = Actor("system", "router")
BOT_LINEAGE = Lineage("northwind-bot", "0.1.0", model="rules", policy="escalation-v1")


@dataclass(frozen=True)
class Step:
    channel: str
    leg_id: str
    actor: Actor
    type: str
    payload: dict[str, Any]


def _journey(chat: str, call: str, visit: str, offer_expiry: datetime) -> list[Step]:
    order = {"order": "1042", "item": "Aster 14 laptop", "status": "delayed"}
    return [
        Step("chat", chat, MAYA, "conversation.started", {"origin": "chat", "topic": "order"}),
        Step("chat", chat, MAYA, "leg.started", {"leg_id": chat, "channel": "chat"}),
        Step("chat", chat, MAYA, "message.received", {"text": "My order 1042 hasn't arrived"}),
        Step("chat", chat, BOT, "intent.detected", {"intent": "order_status", "confidence": 0.94}),
        Step("chat", chat, BOT, "slot.filled", {"name": "order_number", "value": "1042"}),
        Step("chat", chat, BOT, "action.requested",
             {"action_id": "act-1", "tool": "lookup_order", "arguments": {"order": "1042"}}),
        Step("chat", chat, BOT, "action.completed", {"action_id": "act-1", "result": order}),
        Step("chat", chat, BOT, "message.sent", {"text": (
            "Order 1042 (Aster 14 laptop) is delayed: the carrier lost the parcel. A replacement"
            " can ship in 2 days, or you can pick it up at Northwind Market Street.")}),
        Step("chat", chat, MAYA, "message.received", {"text": "Let me think about it, thanks"}),
        Step("chat", chat, MAYA, "leg.ended", {"leg_id": chat, "reason": "customer_left"}),
        Step("voice", call, MAYA, "leg.started",
             {"leg_id": call, "channel": "voice", "address": "+14155550123"}),
        Step("voice", call, ROUTER, "identity.linked",
             {"kind": "phone", "value": "+14155550123", "verified": False, "method": "caller_id"}),
        Step("voice", call, BOT, "message.sent",
             {"text": "Hi, are you calling about order 1042 from your chat earlier?"}),
        Step("voice", call, MAYA, "utterance.transcribed",
             {"text": "yes and my postcode is nine four one zero three", "confidence": 0.88,
              "start_ms": 5200, "end_ms": 8100}),
        Step("voice", call, BOT, "identity.linked",
             {"kind": "phone", "value": "+14155550123", "verified": True, "method": "postcode"}),
        Step("voice", call, MAYA, "utterance.transcribed",
             {"text": "I'd like to talk to a person", "confidence": 0.91,
              "start_ms": 9800, "end_ms": 11200}),
        Step("voice", call, BOT, "intent.detected", {"intent": "human", "confidence": 0.97}),
        Step("voice", call, BOT, "handoff.requested",
             {"queue": "orders", "reason_code": "customer_request", "skills": ["orders"]}),
        Step("voice", call, ROUTER, "handoff.offered",
             {"offer_id": "offer-1", "agent_id": "agent-ana", "queue": "orders",
              "expires_at": offer_expiry.isoformat()}),
        Step("voice", call, ANA, "handoff.accepted",
             {"offer_id": "offer-1", "agent_id": "agent-ana"}),
        Step("voice", call, ANA, "message.sent", {"text": (
            "Hi Maya, this is Ana. I can hold the replacement Aster 14 for you at Market"
            " Street.")}),
        Step("voice", call, ANA, "note.added",
             {"author_id": "agent-ana", "text": "Replacement held at sf-market for pickup"}),
        Step("voice", call, MAYA, "leg.ended", {"leg_id": call, "reason": "completed"}),
        Step("in_person", visit, PRIYA, "leg.started",
             {"leg_id": visit, "channel": "in_person", "location": "sf-market"}),
        Step("in_person", visit, PRIYA, "note.added",
             {"author_id": "assoc-priya", "text": "Checked in by code; replacement handed over"}),
        Step("in_person", visit, PRIYA, "conversation.resolved",
             {"outcome": "replacement_collected"}),
        Step("in_person", visit, PRIYA, "leg.ended", {"leg_id": visit, "reason": "completed"}),
    ]  # fmt: skip


async def run_journey(conversations: Conversations) -> tuple[str, ConversationState]:
    """Record the journey as a new conversation; its id and final state."""
    conversation_id = new_id()
    correlation_id = new_id()
    start = utcnow()
    steps = _journey("chat-" + new_id()[-8:], "call-" + new_id()[-8:],
                     "visit-" + new_id()[-8:], start + timedelta(minutes=2))  # fmt: skip
    previous: str | None = None
    for step in steps:
        event = Event(
            conversation_id=conversation_id,
            type=step.type,
            payload=step.payload,
            channel=step.channel,
            leg_id=step.leg_id,
            actor=step.actor,
            customer_id="cus-maya",
            correlation_id=correlation_id,
            causation_id=previous,
            lineage=BOT_LINEAGE
            if step.actor == BOT
            else Lineage(f"{step.channel}-adapter", "0.1.0"),
        )
        await conversations.record(conversation_id, [event])
        previous = event.event_id
    return conversation_id, await conversations.rehydrate(conversation_id)


def describe(event: Event) -> str:
    """One line of what an event says."""
    p = event.payload
    text = p.get("text") or p.get("intent") or p.get("outcome") or p.get("origin")
    if event.type == "slot.filled":
        text = f"{p['name']} = {p['value']}"
    elif event.type.startswith("leg."):
        text = p["leg_id"]
    elif event.type.startswith("action."):
        text = p.get("tool") or p["action_id"]
    elif event.type == "identity.linked":
        text = f"{p['kind']} {'verified' if p['verified'] else 'unverified'} ({p['method']})"
    elif event.type.startswith("handoff."):
        text = p.get("agent_id") or p.get("queue")
    return str(text or "")


def render_timeline(events: Sequence[Event]) -> str:
    lines = [f"{'seq':>3}  {'channel':<9} {'actor':<13} {'event':<22} detail"]
    for e in events:
        lines.append(f"{e.seq:>3}  {e.channel:<9} {e.actor.id:<13} {e.type:<22} {describe(e)[:70]}")
    return "\n".join(lines)


def render_state(state: ConversationState) -> str:
    channels = ", ".join(sorted({leg["channel"] for leg in state.legs.values()}))
    slots = ", ".join(f"{k}={v['value']}" for k, v in state.slots.items())
    return "\n".join([
        f"status      {state.status} ({state.outcome})",
        f"legs        {len(state.legs)} across {channels}; live now: {len(state.live_legs)}",
        f"slots       {slots}",
        f"assignee    {state.assignee or '-'}; identities {dict(state.identities)}",
        "summary     " + "\n            ".join(state.summary),
    ])  # fmt: skip

"""The handoff packet: built purely from a conversation's state and timeline."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from threadline.core.conversation import ConversationState, decide, initial
from threadline.core.events import Actor, Event, EventCodec
from threadline.routing import HandoffPacket, build_packet

CID = "conv-maya"
CODEC = EventCodec()
T0 = datetime(2025, 3, 4, 17, 0, tzinfo=UTC)
MAYA = Actor("customer", "cus-maya")
BOT = Actor("bot", "northwind-bot")
ROUTER = Actor("system", "router")


def journey() -> list[tuple[str, Actor, str, dict[str, Any]]]:
    """Maya's late laptop: chat, then a call that asks for a person (DEMO.md)."""
    order = {"order": "1042", "status": "delayed"}
    return [
        ("chat", MAYA, "conversation.started", {"origin": "chat"}),
        ("chat", MAYA, "leg.started", {"leg_id": "chat-1", "channel": "chat"}),
        ("chat", MAYA, "message.received", {"text": "My order 1042 hasn't arrived"}),
        ("chat", BOT, "intent.detected", {"intent": "order_status", "confidence": 0.94}),
        ("chat", BOT, "slot.filled", {"name": "order_number", "value": "1042"}),
        ("chat", BOT, "action.requested", {"action_id": "a-1", "tool": "lookup_order"}),
        ("chat", BOT, "action.completed", {"action_id": "a-1", "result": order}),
        ("chat", BOT, "action.requested", {"action_id": "a-2", "tool": "reserve_replacement"}),
        ("chat", BOT, "action.failed", {"action_id": "a-2", "error": "timeout", "retryable": True}),
        ("chat", BOT, "action.requested", {"action_id": "a-3", "tool": "send_sms"}),
        ("chat", BOT, "message.sent", {"text": "Order 1042 is delayed."}),
        ("chat", MAYA, "leg.ended", {"leg_id": "chat-1", "reason": "customer_left"}),
        ("voice", MAYA, "leg.started", {"leg_id": "call-1", "channel": "voice"}),
        ("voice", ROUTER, "identity.linked",
         {"kind": "phone", "value": "+14155550123", "method": "caller_id"}),
        ("voice", BOT, "message.sent",
         {"text": "Hi, are you calling about order 1042?", "heard_text": "Hi, are you"}),
        ("voice", MAYA, "utterance.transcribed",
         {"text": "yes, postcode 94103", "confidence": 0.9, "start_ms": 0, "end_ms": 900}),
        ("voice", BOT, "slot.filled", {"name": "postcode", "value": "94103"}),
        ("voice", BOT, "identity.linked",
         {"kind": "phone", "value": "+14155550123", "verified": True, "method": "postcode"}),
        ("voice", MAYA, "consent.granted", {"purpose": "recording"}),
        ("voice", MAYA, "utterance.transcribed",
         {"text": "I'd like to talk to a person", "confidence": 0.91, "start_ms": 0,
          "end_ms": 800}),
        ("voice", BOT, "intent.detected", {"intent": "human", "confidence": 0.97}),
        ("voice", BOT, "note.added", {"author_id": "northwind-bot", "text": "Prefers pickup"}),
        ("voice", BOT, "handoff.requested",
         {"queue": "orders", "reason_code": "customer_request",
          "reason_detail": "asked for a person after the delay", "skills": ["orders"]}),
    ]  # fmt: skip


def timeline(steps: list[tuple[str, Actor, str, dict[str, Any]]]) -> list[Event]:
    events = []
    for n, (channel, actor, type_, payload) in enumerate(steps, start=1):
        when = T0 + timedelta(minutes=n)
        event = Event(
            CID, type_, payload, channel=channel, actor=actor, customer_id="cus-maya",
            leg_id=f"{channel}-1", occurred_at=when, seq=n,
        )  # fmt: skip
        # As read back from the log: validated, defaults filled, times in UTC.
        events.append(replace(CODEC.decode(CODEC.encode(event)), seq=n))
    return events


def packet_of(steps: list[tuple[str, Actor, str, dict[str, Any]]], **kw: Any) -> HandoffPacket:
    events = timeline(steps)
    state: ConversationState = decide(initial(CID), events)
    return build_packet(state, events, **kw)


@pytest.fixture(scope="module")
def packet() -> HandoffPacket:
    return packet_of(journey())


def test_each_slot_shows_its_value_and_the_channel_it_came_from(packet: HandoffPacket) -> None:
    assert [(s.name, s.value, s.channel) for s in packet.slots] == [
        ("order_number", "1042", "chat"),
        ("postcode", "94103", "voice"),
    ]


def test_a_slot_filled_again_shows_its_latest_value() -> None:
    steps = journey()
    steps.insert(5, ("chat", BOT, "slot.filled", {"name": "order_number", "value": "1043"}))
    steps.insert(6, ("chat", MAYA, "slot.filled", {"name": "order_number", "value": "1042"}))
    slot = packet_of(steps).slot("order_number")
    assert slot is not None and (slot.value, slot.source, slot.seq) == ("1042", "customer", 7)


def test_intents_are_listed_in_order_with_their_channels(packet: HandoffPacket) -> None:
    assert [(i.intent, i.channel) for i in packet.intents] == [
        ("order_status", "chat"),
        ("human", "voice"),
    ]


def test_actions_show_what_completed_what_failed_and_what_is_pending(
    packet: HandoffPacket,
) -> None:
    assert [(a.tool, a.status) for a in packet.actions] == [
        ("lookup_order", "completed"),
        ("reserve_replacement", "failed"),
        ("send_sms", "pending"),
    ]
    completed, failed, pending = packet.actions
    assert completed.result == {"order": "1042", "status": "delayed"}
    assert (failed.error, failed.retryable) == ("timeout", True)
    assert packet.pending_actions == (pending,)


def test_the_reason_queue_and_skills_of_the_request_are_shown(packet: HandoffPacket) -> None:
    assert (packet.queue, packet.reason_code) == ("orders", "customer_request")
    assert packet.reason_detail == "asked for a person after the delay"
    assert packet.skills == ("orders",)
    assert packet.status == "awaiting_human"


def test_the_customer_and_how_they_were_verified_are_shown(packet: HandoffPacket) -> None:
    assert packet.customer_id == "cus-maya"
    assert (packet.verification, packet.verified_by) == ("verified", "postcode")
    assert packet.identities == {"phone": True}


@pytest.mark.parametrize(
    ("cut", "level"),
    [(lambda s: s[:13], "anonymous"), (lambda s: s[:17], "unverified")],
)
def test_an_unverified_or_unknown_caller_is_shown_as_such(cut: Any, level: str) -> None:
    packet = packet_of(cut(journey()))
    assert (packet.verification, packet.verified_by) == (level, None)


def test_consent_flags_are_shown(packet: HandoffPacket) -> None:
    assert packet.consent == {"recording": True}


def test_the_channel_history_lists_each_leg_with_its_start_and_end(packet: HandoffPacket) -> None:
    chat, call = packet.legs
    assert (chat.channel, chat.started_at) == ("chat", (T0 + timedelta(minutes=2)).isoformat())
    assert chat.ended_at == (T0 + timedelta(minutes=12)).isoformat()
    assert (call.channel, call.ended_at) == ("voice", None)


def test_an_in_person_leg_shows_its_store() -> None:
    steps = journey()
    steps.append(
        ("in_person", Actor("human", "assoc-priya"), "leg.started",
         {"leg_id": "visit-1", "channel": "in_person", "location": "sf-market"})
    )  # fmt: skip
    assert packet_of(steps).legs[-1].location == "sf-market"


def test_the_last_messages_in_and_out_are_shown_oldest_first() -> None:
    packet = packet_of(journey(), last_messages=3)
    assert [(m.direction, m.actor_id, m.channel) for m in packet.messages] == [
        ("out", "northwind-bot", "voice"),
        ("in", "cus-maya", "voice"),
        ("in", "cus-maya", "voice"),
    ]
    assert packet.messages[-1].text == "I'd like to talk to a person"


def test_what_a_caller_heard_is_shown_only_when_barge_in_cut_it_short(
    packet: HandoffPacket,
) -> None:
    sent = [m for m in packet.messages if m.direction == "out"]
    assert [m.heard_text for m in sent] == [None, "Hi, are you"]


def test_the_summary_and_notes_come_with_the_packet(packet: HandoffPacket) -> None:
    assert "order_number = 1042 (chat)" in packet.summary
    assert packet.summary[-1] == "handoff to orders: customer_request"
    assert [n["text"] for n in packet.notes] == ["Prefers pickup"]


def _plain(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, str | int | float | bool)


def test_the_packet_serialises_to_plain_json_ready_data(packet: HandoffPacket) -> None:
    data = packet.to_dict()
    assert _plain(data)
    assert orjson.loads(orjson.dumps(data)) == data
    assert data["slots"][0] == {
        "name": "order_number",
        "value": "1042",
        "source": "customer",
        "channel": "chat",
        "seq": 5,
        "at": (T0 + timedelta(minutes=5)).isoformat(),
    }
    assert data["conversation_id"] == CID and data["as_of_seq"] == len(journey())

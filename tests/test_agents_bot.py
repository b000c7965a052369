"""The embedded agent on the Northwind pack: the DEMO.md journey, escalations, bookings, replay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from threadline.agents import AGENT_VERSION, MODEL_ID, EmbeddedAgent, Turn
from threadline.business import Business
from threadline.core.conversation import (
    AWAITING_HUMAN,
    BOT_ACTIVE,
    WITH_HUMAN,
    ConversationState,
    decide,
    initial,
)
from threadline.core.events import Actor, Event, EventCodec, Lineage
from threadline.engine.conversations import Conversations
from threadline.store.sqlite import SQLiteStore, open_sqlite
from threadline.systems import Systems

NOW = datetime(2025, 3, 4, 17, 0, tzinfo=UTC)  # Tuesday 09:00 in Los Angeles
CODEC = EventCodec()
BOT_ACTOR = Actor("bot", "northwind-bot")
MAYA = Actor("customer", "cus-maya")
ROUTER = Actor("system", "router")
ADAPTER = Lineage("chat-adapter", "1")


@dataclass
class Conversation:
    """A conversation driven in memory: each event is checked and folded as the engine would."""

    bot: EmbeddedAgent
    state: ConversationState = field(default_factory=lambda: initial("conv-1"))
    clock: datetime = NOW
    leg: str = "chat-1"
    channel: str = "chat"

    def apply(self, *events: Event) -> None:
        for event in events:
            CODEC.encode(event)
        self.state = decide(self.state, [CODEC.decode(CODEC.encode(e)) for e in events])

    def system(self, type_: str, payload: dict[str, Any], actor: Actor = ROUTER) -> None:
        self.apply(self.event(type_, payload, actor))

    def event(self, type_: str, payload: dict[str, Any], actor: Actor = MAYA) -> Event:
        self.clock += timedelta(seconds=5)
        return Event("conv-1", type_, payload, channel=self.channel, actor=actor, leg_id=self.leg,
                     customer_id="cus-maya", occurred_at=self.clock, lineage=ADAPTER)  # fmt: skip

    async def says(self, text: str) -> Turn:
        message = self.event("message.received", {"text": text})
        self.apply(message)
        turn = await self.bot.take_turn(
            self.state,
            text,
            self.channel,
            self.clock,
            leg_id=self.leg,
            in_reply_to=message.event_id,
        )
        if turn.events:
            self.apply(*turn.events)
        return turn

    def call(self, leg: str = "call-1") -> None:
        self.system("leg.ended", {"leg_id": self.leg, "reason": "customer_left"}, MAYA)
        self.leg, self.channel = leg, "voice"
        self.system("leg.started", {"leg_id": leg, "channel": "voice", "address": "+14155550123"})
        self.system("identity.linked", {"kind": "phone", "value": "+14155550123",
                                        "verified": False, "method": "caller_id"})  # fmt: skip


@pytest.fixture
def agent(systems) -> EmbeddedAgent:
    return EmbeddedAgent(systems)


@pytest.fixture
def conversation(agent):
    return lambda signed_in=False: opened(agent, signed_in=signed_in)


def opened(agent: EmbeddedAgent, *, signed_in: bool = False) -> Conversation:
    chat = Conversation(agent)
    chat.system("conversation.started", {"origin": "chat"}, MAYA)
    chat.system("leg.started", {"leg_id": "chat-1", "channel": "chat"}, MAYA)
    if signed_in:
        chat.system("identity.linked", {"kind": "email", "value": "maya.chen@example.com",
                                        "verified": True, "method": "login"})  # fmt: skip
    return chat


def types(turn: Turn) -> list[str]:
    return [e.type for e in turn.events]


def payload(turn: Turn, type_: str) -> dict[str, Any]:
    (found,) = [e.payload for e in turn.events if e.type == type_]
    return dict(found)


# -- the reference journey --------------------------------------------------------------------


async def test_a_late_order_is_looked_up_and_the_delay_and_both_options_offered(
    conversation,
) -> None:
    chat = conversation(signed_in=True)
    turn = await chat.says("my order 1042 is late")
    assert types(turn) == ["intent.detected", "slot.filled", "action.requested",
                           "action.completed", "message.sent"]  # fmt: skip
    intent = payload(turn, "intent.detected")
    assert intent["intent"] == "order_status" and intent["confidence"] >= 0.9
    assert payload(turn, "slot.filled") == {"name": "order_number", "value": "1042",
                                            "source": "customer"}  # fmt: skip
    assert payload(turn, "action.requested")["tool"] == "lookup_order"
    assert payload(turn, "action.completed")["result"]["item"] == "Aster 14 laptop"
    reply = payload(turn, "message.sent")["text"]
    assert "delayed" in reply and "replacement in 2 days" in reply
    assert "pick it up at Northwind Market Street" in reply


async def test_an_unverified_customer_hears_only_the_status_and_is_asked_for_the_postcode(
    conversation,
) -> None:
    chat = conversation()
    turn = await chat.says("where is order 1042?")
    assert payload(turn, "action.completed")["result"] == {
        "order": "1042", "status": "delayed", "verified": False}  # fmt: skip
    reply = payload(turn, "message.sent")["text"]
    assert "delayed" in reply and "postcode" in reply
    assert "Aster" not in reply and "carrier" not in reply


async def test_the_postcode_on_the_account_unlocks_the_details(conversation) -> None:
    chat = conversation()
    await chat.says("where is order 1042?")
    turn = await chat.says("94103")
    assert payload(turn, "intent.detected")["intent"] == "order_status"
    assert payload(turn, "action.requested")["arguments"] == {"order_number": "1042"}
    assert payload(turn, "action.completed")["result"]["verified"] is True
    assert "carrier lost the parcel" in payload(turn, "message.sent")["text"]


async def test_a_wrong_postcode_is_said_to_not_match(conversation) -> None:
    chat = conversation()
    await chat.says("where is order 1042?")
    turn = await chat.says("it's 94612")
    reply = payload(turn, "message.sent")["text"]
    assert "doesn't match" in reply and "carrier" not in reply


async def test_the_order_number_from_chat_is_not_asked_for_again_on_the_phone(conversation) -> None:
    chat = conversation()
    await chat.says("my order 1042 is late")
    chat.call()
    turn = await chat.says("yes and my postcode is nine four one zero three")
    filled = [e.payload["name"] for e in turn.events if e.type == "slot.filled"]
    assert filled == ["postcode"]
    assert payload(turn, "identity.linked") == {"kind": "phone", "value": "+14155550123",
                                                "verified": True, "method": "postcode",
                                                "level": "knowledge"}  # fmt: skip
    assert payload(turn, "action.requested")["arguments"]["order_number"] == "1042"
    assert "order number" not in payload(turn, "message.sent")["text"]
    assert chat.state.identities == {"phone": True}


async def test_asking_for_a_person_hands_off_to_orders_on_the_call(conversation) -> None:
    chat = conversation()
    await chat.says("my order 1042 is late")
    chat.call()
    await chat.says("my postcode is 94103")
    turn = await chat.says("I want to talk to a person")
    assert types(turn) == ["intent.detected", "handoff.requested", "message.sent"]
    assert payload(turn, "intent.detected")["intent"] == "human"
    assert payload(turn, "handoff.requested") == {
        "queue": "orders", "reason_code": "customer_request",
        "reason_detail": "customer asked for a person", "skills": ["orders"]}  # fmt: skip
    assert chat.state.status == AWAITING_HUMAN and chat.state.queue == "orders"


async def test_cancelling_an_order_hands_off_to_billing_as_sensitive(conversation) -> None:
    chat = conversation(signed_in=True)
    await chat.says("my order 1042 is late")
    turn = await chat.says("then please cancel my order")
    assert payload(turn, "intent.detected")["intent"] == "cancel_order"
    handoff = payload(turn, "handoff.requested")
    assert (handoff["queue"], handoff["reason_code"]) == ("billing", "sensitive_intent")
    assert "action.requested" not in types(turn)


async def test_two_unintelligible_turns_in_a_row_hand_off_for_low_confidence(conversation) -> None:
    chat = conversation()
    first = await chat.says("asdkj qwpeoi")
    second = await chat.says("zmxnc blorp")
    assert types(first) == ["intent.detected", "message.sent"]
    assert payload(first, "intent.detected")["confidence"] < 0.5
    assert payload(second, "handoff.requested")["reason_code"] == "low_confidence"
    assert payload(second, "handoff.requested")["queue"] == "orders"


async def test_an_understood_turn_breaks_a_low_confidence_streak(conversation) -> None:
    chat = conversation()
    await chat.says("asdkj qwpeoi")
    await chat.says("hello")
    turn = await chat.says("zmxnc blorp")
    assert "handoff.requested" not in types(turn)


async def test_a_second_failed_lookup_in_a_row_hands_off_for_tool_failure(conversation) -> None:
    chat = conversation()
    first = await chat.says("where is order 9999")
    second = await chat.says("can you check my order status again")
    assert payload(first, "action.failed")["retryable"] is False
    assert "handoff.requested" not in types(first)
    assert payload(second, "action.requested")["arguments"]["order_number"] == "9999"
    assert payload(second, "handoff.requested")["reason_code"] == "tool_failure"


async def test_strong_negative_sentiment_hands_off(conversation) -> None:
    chat = conversation()
    turn = await chat.says("where is my order 1042, this is absolutely terrible!!")
    handoff = payload(turn, "handoff.requested")
    assert (handoff["queue"], handoff["reason_code"]) == ("orders", "negative_sentiment")


# -- other intents ------------------------------------------------------------------------------


async def test_asking_about_an_order_without_a_number_asks_for_it_once(conversation) -> None:
    chat = conversation()
    asked = await chat.says("where is my order?")
    assert types(asked) == ["intent.detected", "message.sent"]
    assert "order number" in payload(asked, "message.sent")["text"]
    answered = await chat.says("1057")
    assert payload(answered, "intent.detected")["intent"] == "order_status"
    assert payload(answered, "action.requested")["arguments"]["order_number"] == "1057"


async def test_a_slot_repeated_with_the_same_value_is_not_filled_again(conversation) -> None:
    chat = conversation()
    await chat.says("where is order 1042?")
    repeated = await chat.says("order 1042, please check it")
    changed = await chat.says("sorry, I meant order 1057")
    assert "slot.filled" not in types(repeated)
    assert payload(changed, "slot.filled")["value"] == "1057"


async def test_a_repair_is_booked_over_several_turns_around_omars_slot(conversation) -> None:
    chat = conversation()
    assert "Which store" in payload(await chat.says("can I book a repair?"), "message.sent")["text"]
    assert "Which day" in payload(await chat.says("Oakland"), "message.sent")["text"]
    offered = payload(await chat.says("tomorrow"), "message.sent")["text"]
    assert "10:30 AM, 11:30 AM" in offered  # 11:00 is Omar's
    assert offered.endswith("PM PT. Which suits you?")  # the zone once, after the list
    refused = await chat.says("11")
    assert payload(refused, "action.failed")["error"].startswith("slot_taken")
    assert "Free tomorrow: 10:00 AM, 10:30 AM or 11:30 AM PT." in payload(
        refused, "message.sent")["text"]  # fmt: skip
    booked = await chat.says("11:30 then")
    done = [e.payload["result"] for e in booked.events if e.type == "action.completed"]
    assert done[-1]["start"] == "2025-03-05T11:30:00-08:00"
    # The system's "-08:00" start is said on the store's clock, with the zone's name.
    assert "tomorrow at 11:30 AM PT." in payload(booked, "message.sent")["text"]
    again = await chat.says("can I book a repair in Oakland tomorrow at 11:30?")
    assert "already booked" in payload(again, "message.sent")["text"]


async def test_a_store_with_a_locale_of_its_own_offers_times_on_its_clock(
    northwind: Business, tmp_path: Path
) -> None:
    stores = tuple(s.model_copy(update={"locale": "en-GB"}) if s.id == "oak-broadway" else s
                   for s in northwind.pack.locations)  # fmt: skip
    pack = northwind.pack.model_copy(update={"locations": stores})
    systems = Systems.open(Business(pack, northwind.root, northwind.files), tmp_path / "systems")
    try:
        turn = await opened(EmbeddedAgent(systems)).says("can I book a repair in Oakland tomorrow?")
    finally:
        await systems.close()
    assert payload(turn, "message.sent")["text"] == (
        "Free times at Northwind Broadway tomorrow: 10:00, 10:30, 11:30, 12:00, 12:30 or 13:00"
        " Pacific Time. Which suits you?")  # fmt: skip


async def test_store_hours_are_answered_for_the_store_and_day_asked(conversation) -> None:
    chat = conversation()
    turn = await chat.says("Sunday hours in Oakland")
    filled = {e.payload["name"]: e.payload["value"] for e in turn.events if e.type == "slot.filled"}
    assert filled == {"store": "oak-broadway", "date": "2025-03-09"}
    assert "Northwind Broadway is closed on Sunday 9 March" in payload(turn, "message.sent")["text"]


async def test_store_hours_without_a_store_cover_both_stores_today(conversation) -> None:
    turn = await conversation().says("when are you open?")
    assert "action.requested" not in types(turn)  # the pack has the hours: no system asked
    reply = payload(turn, "message.sent")["text"]
    assert "open today, 09:00–19:00" in reply and "open today, 10:00–18:00" in reply


async def test_voice_replies_are_shorter_than_chat_replies(conversation) -> None:
    chat = conversation(signed_in=True)
    on_chat = payload(await chat.says("my order 1042 is late"), "message.sent")["text"]
    chat.call()
    on_voice = payload(await chat.says("what's the status of order 1042"), "message.sent")["text"]
    assert len(on_voice) < len(on_chat) and len(on_voice) <= 200
    assert "901 Market St" not in on_voice


# -- state the bot respects ------------------------------------------------------------------------


async def test_while_waiting_for_a_person_the_bot_only_acknowledges(conversation) -> None:
    chat = conversation()
    await chat.says("agent please")
    turn = await chat.says("hello? my order is 1042")
    assert types(turn) == ["slot.filled", "message.sent"]
    assert "in line for our orders team" in payload(turn, "message.sent")["text"]


async def test_the_bot_stays_silent_with_a_human(conversation) -> None:
    chat = conversation()
    await chat.says("agent please")
    expires = (NOW + timedelta(minutes=5)).isoformat()
    chat.system("handoff.offered", {"offer_id": "o1", "agent_id": "agent-ana", "queue": "orders",
                                    "expires_at": expires})  # fmt: skip
    chat.system("handoff.accepted", {"offer_id": "o1", "agent_id": "agent-ana"})
    assert chat.state.status == WITH_HUMAN
    assert (await chat.says("are you there?")).events == ()


async def test_every_bot_event_names_the_bot_its_model_and_policy(conversation) -> None:
    turn = await conversation(signed_in=True).says("my order 1042 is late")
    for event in turn.events:
        assert event.actor == BOT_ACTOR
        assert event.lineage == Lineage("northwind-bot", AGENT_VERSION, MODEL_ID, "escalation-v1")
        assert event.customer_id == "cus-maya" and event.leg_id == "chat-1"
        assert event.occurred_at == turn.events[0].occurred_at


async def test_a_turn_is_a_pure_function_of_its_inputs(conversation) -> None:
    chat = conversation(signed_in=True)
    message = chat.event("message.received", {"text": "track order 1042"})
    chat.apply(message)
    again = [await chat.bot.take_turn(chat.state, "track order 1042", "chat", chat.clock,
                                      leg_id="chat-1", in_reply_to=message.event_id)
             for _ in range(2)]  # fmt: skip
    assert again[0] == again[1]
    keys = [e.idempotency_key for e in again[0].events]
    assert len(set(keys)) == len(keys) and all(message.event_id in k for k in keys)


async def test_every_turn_is_a_legal_transition_with_valid_payloads(conversation) -> None:
    texts = ["hi", "where is my order", "1043", "94612", "can I book a repair", "SF",
             "saturday", "at 2pm", "when are you open on sunday", "thanks", "qwzx", "refund please",
             "hello?", "I'm furious"]  # fmt: skip
    chat = conversation()
    codec = EventCodec()
    for text in texts:
        before = chat.state
        message = chat.event("message.received", {"text": text})
        chat.apply(message)
        turn = await chat.bot.take_turn(
            chat.state, text, "chat", chat.clock, in_reply_to=message.event_id
        )
        records = [codec.encode(e) for e in turn.events]
        decide(chat.state, [codec.decode(r) for r in records])
        chat.apply(*turn.events)
        assert chat.state.seq > before.seq
    assert chat.state.status == AWAITING_HUMAN


# -- recording through the engine ------------------------------------------------------------------


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[SQLiteStore]:
    store = await open_sqlite(tmp_path / "threadline.db")
    yield store
    await store.close()


async def test_a_bot_turn_records_through_the_engine_and_a_replay_is_a_duplicate(
    store: SQLiteStore, conversation, agent
) -> None:
    conversations = Conversations(store)
    chat = conversation()
    opening = [chat.event("conversation.started", {"origin": "chat"}),
               chat.event("leg.started", {"leg_id": "chat-1", "channel": "chat"}),
               chat.event("message.received", {"text": "my order 1042 is late"})]  # fmt: skip
    await conversations.record("conv-1", opening)
    state = await conversations.rehydrate("conv-1")
    bot = agent
    turn = await bot.take_turn(state, "my order 1042 is late", "chat", chat.clock, leg_id="chat-1",
                         in_reply_to=opening[-1].event_id)  # fmt: skip
    first = await conversations.record("conv-1", list(turn.events))
    again = await bot.take_turn(state, "my order 1042 is late", "chat", chat.clock, leg_id="chat-1",
                          in_reply_to=opening[-1].event_id)  # fmt: skip
    repeat = await conversations.record("conv-1", list(again.events))
    after = await conversations.rehydrate("conv-1")
    assert (first.duplicate, repeat.duplicate, repeat.seqs) == (False, True, first.seqs)
    assert after.status == BOT_ACTIVE
    assert after.slots["order_number"]["value"] == "1042"
    assert after.intents[-1]["intent"] == "order_status"
    assert after.messages_out == 1 and not after.pending_actions
    timeline = await conversations.timeline("conv-1")
    assert [e.event_id for e in timeline[3:]] == [e.event_id for e in turn.events]


def phone_call(agent: EmbeddedAgent) -> Conversation:
    call = Conversation(agent, leg="CA-1", channel="voice")
    call.system("conversation.started", {"origin": "voice"}, MAYA)
    call.system("leg.started", {"leg_id": "CA-1", "channel": "voice"}, MAYA)
    return call


async def test_keys_pressed_on_the_phone_menu_pick_the_topic(agent) -> None:
    assert payload(await phone_call(agent).says("3"), "intent.detected")["intent"] == "store_hours"
    assert (
        "order number" in payload(await phone_call(agent).says("1"), "message.sent")["text"].lower()
    )
    zero = await phone_call(agent).says("0")
    assert payload(zero, "handoff.requested")["reason_code"] == "customer_request"


async def test_a_key_pressed_to_answer_a_question_is_an_answer_not_a_menu_choice(agent) -> None:
    call = phone_call(agent)
    await call.says("can I book a repair in Oakland tomorrow?")
    answered = await call.says("2")  # "what time?" -> 2 o'clock, not the repairs menu
    assert payload(answered, "intent.detected")["intent"] == "book_appointment"
    assert "slot.filled" in types(answered)


async def test_a_knowledge_question_is_answered_from_the_pack_with_its_source(
    conversation,
) -> None:
    turn = await conversation().says("how long is the warranty on a laptop?")
    assert payload(turn, "intent.detected")["intent"] == "kb:warranty"
    assert payload(turn, "action.requested")["tool"] == "knowledge"
    assert payload(turn, "action.completed")["result"] == {
        "entry": "warranty", "source": "https://northwind.example/help/warranty"}  # fmt: skip
    assert "one-year warranty" in payload(turn, "message.sent")["text"]


async def test_a_turn_the_agent_cannot_finish_goes_to_a_person_once(tmp_path) -> None:
    import shutil

    from tests.conftest import NORTHWIND
    from threadline.business import load
    from threadline.systems import Systems

    pack = tmp_path / "pack"
    shutil.copytree(NORTHWIND, pack)
    template = pack / "replies" / "order_found.j2"
    broken = template.read_text().replace("set n = record.order", "set n = record.order()")
    template.write_text(broken)  # compiles, and fails as it renders
    systems = Systems.open(load(pack), tmp_path / "data")
    try:
        chat = opened(EmbeddedAgent(systems), signed_in=True)
        turn = await chat.says("my order 1042 is late")
    finally:
        await systems.close()
    handoff = payload(turn, "handoff.requested")
    assert (handoff["queue"], handoff["reason_code"]) == ("orders", "other")
    assert types(turn)[-2:] == ["handoff.requested", "message.sent"]
    assert chat.state.status == AWAITING_HUMAN

"""Continuity without sign-in, on both stores: a customer who proves who she is is that
customer on every channel.

An anonymous chat visitor who proves an order hers (its postcode) becomes its owner:
the conversation is hers, so her call from her number continues it; the call still
proves itself again. A chat signed in with an ID token is not asked for the postcode.
A postcode keyed in while waiting for a person verifies the caller. A chat identified
after an earlier call goes on in that call's conversation.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from tests.test_agents_verification import BOT_ID, PHONE, SENSITIVE, Journey
from threadline.business.current import CurrentBusiness
from threadline.channels.chat.adapter import ChatAdapter
from threadline.channels.chat.joins import ChatJoins
from threadline.core.events import Event
from threadline.engine.commands import Commands
from threadline.engine.projections import ConversationIndex
from threadline.routing.packet import build_packet
from threadline.systems import Systems

VISITOR = "visitor-0b7e2d1c"


def _reveals(text: str) -> list[str]:
    return [word for word in SENSITIVE if word in text]


async def _timeline(journey: Journey, conversation_id: str | None = None) -> list[Event]:
    return await journey.conversations.timeline(conversation_id or journey.conversation_id)


@pytest.fixture
async def visitor(any_store: Any, systems: Systems) -> Any:
    """An anonymous visitor of the chat widget: nobody yet."""
    async with Journey(any_store, systems, chat_customer=VISITOR) as journey:
        yield journey


async def proves_order_1042(visitor: Journey) -> None:
    asked = await visitor.chats("where is my order 1042?")
    assert "postcode" in asked and _reveals(asked) == []
    details = await visitor.chats("my postcode is 94103")
    assert "carrier lost the parcel" in details


async def test_a_visitor_who_proves_an_order_hers_becomes_its_owner(visitor: Journey) -> None:
    await proves_order_1042(visitor)
    state = await visitor.conversations.rehydrate(visitor.conversation_id)
    assert state.customer_id == "cus-maya" and VISITOR in state.aliases
    assert state.level == "knowledge"
    (linked,) = [e for e in await _timeline(visitor) if e.type == "identity.linked"]
    assert dict(linked.payload) == {
        "kind": "device", "value": VISITOR, "verified": True, "method": "postcode",
        "level": "knowledge", "customer_id": "cus-maya",
    }  # fmt: skip
    assert linked.channel == "chat" and linked.actor.id == BOT_ID
    index = await ConversationIndex.build(visitor.store)
    assert [e.conversation_id for e in index.of_customer("cus-maya")] == [visitor.conversation_id]


async def test_a_wrong_postcode_leaves_the_visitor_nobody(visitor: Journey) -> None:
    await visitor.chats("where is my order 1042?")
    reply = await visitor.chats("my postcode is 94612")
    assert _reveals(reply) == []
    state = await visitor.conversations.rehydrate(visitor.conversation_id)
    assert state.customer_id == VISITOR and state.level is None
    rejected = [e.payload for e in await _timeline(visitor) if e.type == "verification.rejected"]
    assert [(r["method"], r["reason"], r["customer_id"]) for r in rejected] == [
        ("postcode", "wrong", "cus-maya")
    ]


async def test_her_call_continues_the_chat_and_proves_itself_again(visitor: Journey) -> None:
    await proves_order_1042(visitor)
    welcome = await visitor.calls_in("CA-1")  # the same conversation, by her number
    assert "order 1042" in welcome and "postcode" in welcome
    assert "check it's you" in welcome and "To pick it up" not in welcome  # asks for proof
    assert _reveals(welcome) == []
    state = await visitor.conversations.rehydrate(visitor.conversation_id)
    assert state.level is None  # caller id inherits nothing from the chat
    reply = await visitor.says("CA-1", "94103")
    assert "carrier lost the parcel" in reply
    state = await visitor.conversations.rehydrate(visitor.conversation_id)
    packet = build_packet(state, await _timeline(visitor))
    assert [(p["channel"], p["method"], p["level"]) for p in packet.proofs] == [
        ("chat", "postcode", "knowledge"), ("voice", "postcode", "knowledge"),
    ]  # fmt: skip
    assert (packet.verification, packet.verified_by, packet.level) == (
        "verified", "postcode", "knowledge",
    )  # fmt: skip


async def test_the_packet_of_a_call_that_proved_nothing_yet_is_unverified(
    visitor: Journey,
) -> None:
    await proves_order_1042(visitor)
    await visitor.calls_in("CA-1")
    state = await visitor.conversations.rehydrate(visitor.conversation_id)
    packet = build_packet(state, await _timeline(visitor))
    assert packet.verification == "unverified" and packet.level is None
    assert [p["channel"] for p in packet.proofs] == ["chat"]  # the chat's, for the record


async def test_a_chat_signed_in_with_an_id_token_is_not_asked_for_the_postcode(
    visitor: Journey,
) -> None:
    await visitor.chats("hello")
    chat = ChatAdapter(Commands(visitor.conversations))
    await chat.sign_in(visitor.conversation_id, VISITOR, "cus-maya", "oidc", "idp")
    await chat.sign_in(visitor.conversation_id, VISITOR, "cus-maya", "oidc", "idp")  # again
    reply = await visitor.chats("where is my order 1042?")
    assert "carrier lost the parcel" in reply and "postcode" not in reply
    timeline = await _timeline(visitor)
    linked = [e.payload for e in timeline if e.type == "identity.linked"]
    assert [(p["method"], p["level"], p["customer_id"]) for p in linked] == [
        ("oidc", "idp", "cus-maya")
    ]
    state = await visitor.conversations.rehydrate(visitor.conversation_id)
    assert state.customer_id == "cus-maya" and state.level == "idp"


async def test_a_postcode_keyed_in_while_waiting_for_a_person_verifies_the_caller(
    any_store: Any, systems: Systems
) -> None:
    async with Journey(any_store, systems) as maya:
        await maya.chats("where is my order 1042?")
        await maya.calls_in("CA-1")
        await maya.says("CA-1", "I want to talk to a person please")
        state = await maya.conversations.rehydrate(maya.conversation_id)
        assert state.status == "awaiting_human" and state.level is None
        before = await maya._replies()
        await maya.calls.keyed_in("CA-1", maya.conversation_id, "cus-maya", "94103", "key-1")
        reply = await maya._next_reply(before)
        assert "confirmed" in str(reply.payload["text"]).lower()
        assert _reveals(str(reply.payload["text"])) == []  # it waits for the person
        state = await maya.conversations.rehydrate(maya.conversation_id)
        assert state.status == "awaiting_human" and state.level == "knowledge"
        assert await maya.verified_on("CA-1") == [{
            "kind": "phone", "value": PHONE, "verified": True, "method": "postcode",
            "level": "knowledge", "customer_id": None,
        }]  # fmt: skip


# -- a chat identified after an earlier call ------------------------------------------------


async def _joins(journey: Journey, systems: Systems) -> ChatJoins:
    index = await ConversationIndex.build(journey.store)
    joins = ChatJoins(Commands(journey.conversations), index, CurrentBusiness(systems.business),
                      timedelta(hours=72))  # fmt: skip
    await joins.start(journey.bus)
    return joins


async def _until(check: Any, timeout: float = 10.0) -> Any:
    async with asyncio.timeout(timeout):
        while not (found := await check()):
            await asyncio.sleep(0.02)
    return found


async def test_a_chat_identified_after_an_earlier_call_continues_that_call(
    any_store: Any, systems: Systems
) -> None:
    async with Journey(any_store, systems, chat_customer=VISITOR) as visitor:
        joins = await _joins(visitor, systems)
        call = await visitor.calls.answer("CA-0", PHONE)  # Maya called earlier
        await visitor.calls.end("CA-0", "completed")
        await proves_order_1042(visitor)  # then chats, anonymously, and proves it

        async def moved() -> list[Event]:
            return [e for e in await _timeline(visitor) if e.type == "conversation.resolved"]

        (resolved,) = await _until(moved)
        assert dict(resolved.payload) == {"outcome": "continued", "note": None,
                                          "continued_in": call.conversation_id}  # fmt: skip
        earlier = await visitor.conversations.rehydrate(call.conversation_id)
        assert VISITOR in earlier.aliases and earlier.customer_id == "cus-maya"
        assert earlier.slots["order_number"]["value"] == "1042"
        assert "postcode" not in earlier.slots  # the proof travels, not the answer
        assert [(p["channel"], p["level"]) for p in earlier.proofs] == [("chat", "knowledge")]
        # Her chat session may open that conversation now (the widget follows it there), and
        # a widget that comes back to the chat it left lands there too, reopening nothing.
        chat = ChatAdapter(Commands(visitor.conversations))
        leg = await chat.open(VISITOR, call.conversation_id)
        assert leg.conversation_id == call.conversation_id
        back = await chat.open(VISITOR, visitor.conversation_id)
        assert back.conversation_id == call.conversation_id
        left = await visitor.conversations.rehydrate(visitor.conversation_id)
        assert (left.status, left.continued_in) == ("resolved", call.conversation_id)
        taken = [e for e in await _timeline(visitor, call.conversation_id)
                 if e.type == "identity.linked" and e.channel == "chat"]  # fmt: skip
        assert len(taken) == 1  # once, however often it is delivered
        await joins.handle(
            next(r for r in await any_store.read(visitor.conversation_id)
                 if r.type == "identity.linked")
        )  # a redelivery  # fmt: skip
        assert len([e for e in await _timeline(visitor, call.conversation_id)
                    if e.type == "identity.linked" and e.channel == "chat"]) == 1  # fmt: skip


async def test_a_visitor_with_no_other_conversation_stays_where_she_is(
    any_store: Any, systems: Systems
) -> None:
    async with Journey(any_store, systems, chat_customer=VISITOR) as visitor:
        await _joins(visitor, systems)
        await proves_order_1042(visitor)
        await asyncio.sleep(0.3)  # the join consumer has heard the proof by now
        state = await visitor.conversations.rehydrate(visitor.conversation_id)
        assert state.status == "bot_active" and state.customer_id == "cus-maya"


async def test_a_caller_nobody_knew_who_proves_an_order_hers_in_the_queue_is_its_owner(
    any_store: Any, systems: Systems
) -> None:
    async with Journey(any_store, systems) as journey:
        leg = await journey.calls.answer("CA-9", "+12025550199")  # a number on no record
        journey.conversation_id = leg.conversation_id
        stranger = (await journey.conversations.rehydrate(leg.conversation_id)).customer_id
        assert stranger is not None and stranger.startswith("caller-")
        await journey.says("CA-9", "where is my order 1042?")
        await journey.says("CA-9", "I want to talk to a person please")
        before = await journey._replies()
        await journey.calls.keyed_in("CA-9", leg.conversation_id, stranger, "94103", "key-9")
        reply = await journey._next_reply(before)
        assert str(reply.payload["text"]).startswith("Thanks, that's you confirmed.")
        state = await journey.conversations.rehydrate(leg.conversation_id)
        assert (state.customer_id, state.level, state.status) == (
            "cus-maya", "knowledge", "awaiting_human",
        )  # fmt: skip
        assert stranger in state.aliases
        assert await journey.verified_on("CA-9") == [{
            "kind": "phone", "value": "+12025550199", "verified": True, "method": "postcode",
            "level": "knowledge", "customer_id": "cus-maya",
        }]  # fmt: skip

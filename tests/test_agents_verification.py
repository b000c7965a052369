"""Step-up verification across legs, on a real store, bus and bot runtime.

Caller id is a claim, not a proof: a call from Maya's number starts unverified
however much her chat proved earlier. The postcode is a knowledge answer of the
contact that gave it; the caller answers it again on the call before hearing
anything sensitive, and a correct answer verifies the call every time.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from threadline.agents import EmbeddedAgent
from threadline.agents.codes import CodeSending
from threadline.agents.runtime import BotRuntime
from threadline.bus.memory import MemoryBus
from threadline.channels.voice.telephony.calls import VoiceCalls
from threadline.channels.voice.telephony.directory import CallerDirectory
from threadline.core.conversation import decide, initial
from threadline.core.events import Actor, Event, EventCodec, Lineage
from threadline.engine.commands import Commands
from threadline.engine.conversations import Conversations
from threadline.engine.outbox import Relay
from threadline.systems import Systems

NOW = datetime(2025, 3, 4, 17, 0, tzinfo=UTC)  # Tuesday 09:00 in Los Angeles
MAYA = Actor("customer", "cus-maya")
CHAT = Lineage("chat-adapter", "1")
STT = Lineage("voice-stt", "1")
#: What the voice adapter records when it answers a call (channels.voice.telephony.calls).
BOT_ID = "northwind-bot"
PHONE = "+14155550123"
#: What only a verified owner of order 1042 may hear: item, reason, options, store address.
SENSITIVE = ("Aster", "carrier", "replacement", "Market Street", "901 Market")


class Journey:
    """Maya on chat, then calling from her number, through the app's real pieces."""

    def __init__(
        self,
        store: Any,
        systems: Systems,
        chat_customer: str = "cus-maya",
        codes: CodeSending | None = None,
    ) -> None:
        self.store = store
        self.bus = MemoryBus(store)
        self.relay = Relay(store, self.bus, store, poll_interval=0.01)
        self.conversations = Conversations(store, on_append=self.relay.poke)
        self.agent = EmbeddedAgent(systems, codes=codes)
        #: Who the chat is from: Maya signed in, or an anonymous visitor.
        self.chat_customer = chat_customer
        self.runtime = BotRuntime(self.conversations, self.agent, clock=lambda: NOW)
        self.directory = CallerDirectory()

        async def recognise(phone: str) -> str | None:
            record = await systems.customers.find("phone", phone)
            return record.id if record else None

        self.calls = VoiceCalls(Commands(self.conversations), self.directory, recognise, "Hello.")
        self.conversation_id = "conv-maya"
        self.said = 0

    async def __aenter__(self) -> Journey:
        await self.runtime.start(self.bus)
        await self.relay.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.relay.stop()
        await self.bus.close()

    async def _record_and_wait(self, events: list[Event]) -> Event:
        before = await self._replies()
        await self.conversations.record(self.conversation_id, events)
        return await self._next_reply(before)

    async def _replies(self) -> int:
        timeline = await self.conversations.timeline(self.conversation_id)
        return sum(1 for e in timeline if e.type == "message.sent" and e.actor.id == BOT_ID)

    async def _next_reply(self, before: int) -> Event:
        async def wait() -> Event:
            while True:
                timeline = await self.conversations.timeline(self.conversation_id)
                bot = [e for e in timeline if e.type == "message.sent" and e.actor.id == BOT_ID]
                if len(bot) > before:
                    return bot[-1]
                await asyncio.sleep(0.01)

        return await asyncio.wait_for(wait(), 10)

    async def chats(self, text: str) -> str:
        def event(type_: str, payload: dict[str, object]) -> Event:
            self.said += 1
            who = self.chat_customer
            return Event(self.conversation_id, type_, payload, channel="chat", leg_id="chat-1",
                         actor=Actor("customer", who), customer_id=who, lineage=CHAT,
                         idempotency_key=f"chat:{self.said}")  # fmt: skip

        events = []
        if self.said == 0:
            events += [
                event("conversation.started", {"origin": "chat"}),
                event("leg.started", {"leg_id": "chat-1", "channel": "chat"}),
            ]
        events.append(event("message.received", {"text": text}))
        reply = await self._record_and_wait(events)
        return str(reply.payload["text"])

    async def calls_in(self, call_id: str) -> str:
        """Maya's number rings; the welcome back the bot says on the new leg."""
        await self.directory.load(self.store)
        before = await self._replies()
        leg = await self.calls.answer(call_id, PHONE)
        assert leg.conversation_id == self.conversation_id and leg.continued
        reply = await self._next_reply(before)
        assert reply.leg_id == call_id
        return str(reply.payload["text"])

    async def says(self, call_id: str, text: str) -> str:
        self.said += 1
        payload = {"text": text, "confidence": 0.9, "start_ms": 0, "end_ms": 1000}
        event = Event(self.conversation_id, "utterance.transcribed", payload, channel="voice",
                      leg_id=call_id, actor=MAYA, customer_id="cus-maya", lineage=STT,
                      idempotency_key=f"{call_id}:u{self.said}")  # fmt: skip
        reply = await self._record_and_wait([event])
        return str(reply.payload["text"])

    async def on_leg(self, leg_id: str, type_: str) -> list[Event]:
        timeline = await self.conversations.timeline(self.conversation_id)
        return [e for e in timeline if e.leg_id == leg_id and e.type == type_]

    async def verified_on(self, leg_id: str) -> list[dict[str, Any]]:
        """The verifications recorded on ``leg_id`` (the bot's, by postcode)."""
        return [dict(e.payload) for e in await self.on_leg(leg_id, "identity.linked")
                if e.payload["verified"]]  # fmt: skip

    async def lookups_on(self, leg_id: str) -> list[bool]:
        """Whether each order look-up on ``leg_id`` was made for a verified owner."""
        requested = await self.on_leg(leg_id, "action.requested")
        lookups = [e.payload["action_id"] for e in requested if e.payload["tool"] == "lookup_order"]
        done = {e.payload["action_id"]: e.payload["result"]
                for e in await self.on_leg(leg_id, "action.completed")}  # fmt: skip
        return [bool(done[action_id]["verified"]) for action_id in lookups]


@pytest.fixture
async def maya(any_store: Any, systems: Systems) -> Any:
    """Maya has chatted about order 1042 and proven it hers with postcode 94103."""
    async with Journey(any_store, systems) as journey:
        await journey.chats("where is my order 1042?")
        details = await journey.chats("my postcode is 94103")
        assert "carrier lost the parcel" in details
        yield journey


def _reveals(text: str) -> list[str]:
    return [word for word in SENSITIVE if word in text]


async def test_a_postcode_from_chat_does_not_unlock_the_order_on_a_call(maya: Journey) -> None:
    await maya.calls_in("CA-1")
    reply = await maya.says("CA-1", "yes, where is it?")
    assert _reveals(reply) == []
    assert "postcode" in reply
    assert await maya.lookups_on("CA-1") == [False]
    state = await maya.conversations.rehydrate(maya.conversation_id)
    assert state.slots["postcode"]["value"] == "94103"  # still known, as data
    assert not any(state.identities.values())


async def test_the_same_postcode_said_again_on_the_call_verifies_the_caller(
    maya: Journey,
) -> None:
    await maya.calls_in("CA-1")
    await maya.says("CA-1", "yes, where is it?")
    reply = await maya.says("CA-1", "94103")
    assert await maya.verified_on("CA-1") == [
        {
            "kind": "phone",
            "value": PHONE,
            "verified": True,
            "method": "postcode",
            "level": "knowledge",
            "customer_id": None,
        }
    ]
    linked = (await maya.on_leg("CA-1", "identity.linked"))[-1]
    assert linked.actor.id == BOT_ID and linked.lineage.producer == BOT_ID
    assert linked.lineage.model and linked.lineage.policy
    filled = await maya.on_leg("CA-1", "slot.filled")
    assert [(e.payload["name"], e.payload["value"]) for e in filled] == [("postcode", "94103")]
    assert await maya.lookups_on("CA-1") == [False, True]
    assert "carrier lost the parcel" in reply
    state = await maya.conversations.rehydrate(maya.conversation_id)
    assert state.identities == {"device": False, "phone": True}


async def test_every_new_call_asks_again_and_a_correct_postcode_verifies_it_again(
    maya: Journey,
) -> None:
    await maya.calls_in("CA-1")
    assert "carrier" in await maya.says("CA-1", "where is my order? postcode 94103")
    await maya.calls_in("CA-2")
    again = await maya.says("CA-2", "where is my order?")
    assert _reveals(again) == [] and "postcode" in again
    assert "carrier" in await maya.says("CA-2", "it's 94103")
    assert [len(await maya.verified_on(leg)) for leg in ("CA-1", "CA-2")] == [1, 1]
    assert await maya.lookups_on("CA-2") == [False, True]


async def test_a_wrong_postcode_on_the_call_never_verifies(maya: Journey) -> None:
    await maya.calls_in("CA-1")
    await maya.says("CA-1", "where is my order?")
    reply = await maya.says("CA-1", "94612")
    assert "doesn't match" in reply and _reveals(reply) == []
    again = await maya.says("CA-1", "what's the status of order 1042?")
    assert _reveals(again) == []
    assert await maya.verified_on("CA-1") == []
    assert await maya.lookups_on("CA-1") == [False, False, False]
    state = await maya.conversations.rehydrate(maya.conversation_id)
    assert state.identities == {"device": False, "phone": False}


async def test_the_welcome_back_on_a_call_names_the_order_and_nothing_sensitive(
    maya: Journey,
) -> None:
    welcome = await maya.calls_in("CA-1")
    assert "order 1042" in welcome and "chat" in welcome
    assert _reveals(welcome) == [] and "delayed" not in welcome
    assert "postcode" in welcome  # the caller is asked to verify, not told


# -- whose proof counts ---------------------------------------------------------------------------


async def _signed_in_asks(agent: EmbeddedAgent, customer_id: str, email: str, text: str) -> str:
    """A customer signed in on chat as ``customer_id`` asks ``text``; the bot's reply."""
    codec = EventCodec()
    customer = Actor("customer", customer_id)

    def event(type_: str, payload: dict[str, Any]) -> Event:
        return codec.decode(codec.encode(Event(
            "conv-1", type_, payload, channel="chat", leg_id="chat-1", actor=customer,
            customer_id=customer_id, occurred_at=NOW, lineage=CHAT)))  # fmt: skip

    message = event("message.received", {"text": text})
    state = decide(initial("conv-1"), [
        event("conversation.started", {"origin": "chat"}),
        event("leg.started", {"leg_id": "chat-1", "channel": "chat"}),
        event("identity.linked", {"kind": "email", "value": email, "verified": True,
                                  "method": "login"}),
        message,
    ])  # fmt: skip
    turn = await agent.take_turn(state, text, "chat", NOW, leg_id="chat-1",
                                 in_reply_to=message.event_id)  # fmt: skip
    return str(turn.reply)


async def test_a_verified_identity_unlocks_the_owners_own_order(systems: Systems) -> None:
    reply = await _signed_in_asks(EmbeddedAgent(systems), "cus-maya", "maya.chen@example.com",
                                  "where is order 1042?")  # fmt: skip
    assert "carrier lost the parcel" in reply


async def test_a_verified_identity_of_another_customer_does_not_unlock_the_order(
    systems: Systems,
) -> None:
    reply = await _signed_in_asks(EmbeddedAgent(systems), "cus-lena", "lena.park@example.org",
                                  "where is order 1042?")  # fmt: skip
    assert _reveals(reply) == [] and "postcode" in reply

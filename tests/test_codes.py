"""One-time codes, on both stores, sent by e-mail through a real SMTP server (aiosmtpd).

A caller who does not know her postcode asks for a code: the service emails one to the
address on her record, the conversation keeps only a keyed digest of it, and the code
read back verifies the call at possession level. Wrong codes are counted and spend the
code; an expired code is refused; the service limits codes per conversation and per
customer, and a redelivered request sends nothing twice.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

import pytest

from tests.test_agents_verification import NOW, PHONE, SENSITIVE, Journey
from tests.test_notify import Mailbox, smtp_server  # noqa: F401 (a fixture)
from threadline.agents.codes import CodeSending
from threadline.business.current import CurrentBusiness
from threadline.core.events import Actor, Event, utcnow
from threadline.engine.commands import Commands
from threadline.identity.code_courier import CodeCourier
from threadline.identity.codes import SEND_CODE, CodeKey
from threadline.identity.service import Identity
from threadline.notify import Notifiers, SmtpNotifier
from threadline.store import open_directory
from threadline.systems import Systems

KEY = CodeKey(b"a test secret of enough bytes!!")
MAYA_EMAIL = "maya.chen@example.com"


class CodeJourney(Journey):
    """Maya's conversation with the service's code courier sending by e-mail."""

    def __init__(self, store: Any, systems: Systems, port: int) -> None:
        super().__init__(store, systems, codes=CodeSending(KEY, frozenset({"email"})))
        self.mailbox_port = port
        self.systems = systems
        self.clock = NOW
        self.runtime.clock = lambda: self.clock

    async def __aenter__(self) -> CodeJourney:
        self.identity = Identity(self.store, await open_directory(self.store))
        notifier = SmtpNotifier("127.0.0.1", port=self.mailbox_port, security="none",
                                sender="codes@northwind.example")  # fmt: skip
        self.courier = CodeCourier(
            Commands(self.conversations), KEY, Notifiers(email=notifier),
            CurrentBusiness(self.systems.business), self.systems.customers, self.identity,
        )  # fmt: skip
        await self.courier.start(self.bus)
        await super().__aenter__()
        return self

    async def events(self, type_: str) -> list[Event]:
        return [e for e in await self.conversations.timeline(self.conversation_id)
                if e.type == type_]  # fmt: skip


@pytest.fixture
async def maya(any_store: Any, systems: Systems, smtp_server: Any) -> Any:  # noqa: F811
    """Maya calls from her number about order 1042 and does not know her postcode."""
    mailbox = Mailbox()
    port = smtp_server(mailbox)
    async with CodeJourney(any_store, systems, port) as journey:
        journey.mailbox = mailbox
        await journey.chats("where is my order 1042?")
        await journey.calls_in("CA-1")
        yield journey


async def _code_mailed(maya: CodeJourney, count: int = 1) -> str:
    async with asyncio.timeout(10):
        while len(maya.mailbox.received) < count or len(await maya.events(
                "verification.challenged")) < count:  # fmt: skip
            await asyncio.sleep(0.02)
    body = maya.mailbox.received[count - 1].message.get_content()
    found = re.search(r"\b(\d{6})\b", body)
    assert found, body
    return found.group(1)


def _other(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


async def test_a_code_by_email_verifies_the_caller_at_possession(maya: CodeJourney) -> None:
    offer = await maya.says("CA-1", "I don't know my postcode")
    assert "m***@example.com" in offer and MAYA_EMAIL not in offer
    code = await _code_mailed(maya)
    (mail,) = maya.mailbox.received
    assert mail.recipients == [MAYA_EMAIL] and mail.message["Subject"] == "Northwind Devices"
    (challenge,) = await maya.events("verification.challenged")
    assert code not in str(dict(challenge.payload))  # only a keyed digest is kept
    assert challenge.payload["via"] == "email" and challenge.payload["to"] == "m***@example.com"
    spoken = " ".join(code)  # read out digit by digit
    reply = await maya.says("CA-1", f"the code is {spoken}")
    assert "carrier lost the parcel" in reply
    assert await maya.verified_on("CA-1") == [{
        "kind": "phone", "value": PHONE, "verified": True, "method": "otp",
        "level": "possession", "customer_id": None,
    }]  # fmt: skip
    state = await maya.conversations.rehydrate(maya.conversation_id)
    assert state.level == "possession" and state.challenge is None and state.codes_sent == 1
    sent = [e for e in await maya.identity.history("cus-maya")
            if e.type == "verification.code_sent"]  # fmt: skip
    assert [(e.payload["via"], e.payload["conversation_id"]) for e in sent] == [
        ("email", maya.conversation_id)
    ]


async def test_wrong_codes_are_counted_and_spend_the_code(maya: CodeJourney) -> None:
    await maya.says("CA-1", "can you text me a code instead")
    code = await _code_mailed(maya)
    first = await maya.says("CA-1", _other(code))
    assert "doesn't match" in first and "2 more times" in first
    await maya.says("CA-1", _other(_other(code)))
    last = await maya.says("CA-1", _other(_other(_other(code))))
    assert "can't be used any more" in last
    refused = await maya.says("CA-1", code)  # right, but too late
    assert not any(word in refused for word in SENSITIVE)
    assert await maya.verified_on("CA-1") == []
    rejected = [e.payload["reason"] for e in await maya.events("verification.rejected")]
    assert rejected == ["wrong", "wrong", "wrong"]
    state = await maya.conversations.rehydrate(maya.conversation_id)
    assert state.challenge is None and state.level is None


async def test_an_expired_code_is_refused(maya: CodeJourney) -> None:
    await maya.says("CA-1", "I forgot my postcode")
    code = await _code_mailed(maya)
    maya.clock = NOW + timedelta(minutes=11)
    reply = await maya.says("CA-1", code)
    assert "expired" in reply and not any(word in reply for word in SENSITIVE)
    assert [e.payload["reason"] for e in await maya.events("verification.rejected")] == ["expired"]
    assert await maya.verified_on("CA-1") == []


# -- the courier's limits, one request at a time ---------------------------------------------


async def _request(maya: CodeJourney, conversation_id: str, n: int) -> Any:
    """A bot's request for a code for Maya on ``conversation_id``; its stored record."""
    bot = Actor("bot", "northwind-bot")
    events = []
    state = await maya.conversations.rehydrate(conversation_id)
    if state.seq == 0:
        events.append(Event(conversation_id, "conversation.started", {"origin": "chat"},
                            channel="chat", actor=Actor("customer", "cus-maya"),
                            customer_id="cus-maya",
                            idempotency_key=f"{conversation_id}-start"))  # fmt: skip
    events.append(Event(conversation_id, "action.requested",
                        {"action_id": f"{conversation_id}-a{n}", "tool": SEND_CODE,
                         "arguments": {"customer_id": "cus-maya", "via": "email"}},
                        channel="chat", actor=bot, customer_id="cus-maya", occurred_at=utcnow(),
                        idempotency_key=f"{conversation_id}-r{n}"))  # fmt: skip
    await maya.conversations.record(conversation_id, events)
    records = await maya.store.read(conversation_id)
    return next(r for r in records if r.idempotency_key == f"{conversation_id}-r{n}")


async def _outcome(maya: CodeJourney, conversation_id: str, action_id: str) -> str:
    for event in await maya.conversations.timeline(conversation_id):
        if event.type == "action.completed" and event.payload["action_id"] == action_id:
            return "sent"
        if event.type == "action.failed" and event.payload["action_id"] == action_id:
            return str(event.payload["error"])
    return "pending"


@pytest.fixture
async def courier(any_store: Any, systems: Systems, smtp_server: Any) -> Any:  # noqa: F811
    """The courier alone, handed each request by the test (no bus)."""
    mailbox = Mailbox()
    journey = CodeJourney(any_store, systems, smtp_server(mailbox))
    journey.mailbox = mailbox
    journey.identity = Identity(any_store, await open_directory(any_store))
    notifier = SmtpNotifier("127.0.0.1", port=journey.mailbox_port, security="none",
                            sender="codes@northwind.example")  # fmt: skip
    journey.courier = CodeCourier(
        Commands(journey.conversations), KEY, Notifiers(email=notifier),
        CurrentBusiness(systems.business), systems.customers, journey.identity,
    )  # fmt: skip
    return journey


async def test_a_redelivered_request_sends_one_code_and_records_it_once(courier: Any) -> None:
    record = await _request(courier, "conv-a", 1)
    await courier.courier.handle(record)
    await courier.courier.handle(record)
    assert len(courier.mailbox.received) == 1
    assert await _outcome(courier, "conv-a", "conv-a-a1") == "sent"
    timeline = await courier.conversations.timeline("conv-a")
    assert sum(e.type == "verification.challenged" for e in timeline) == 1


async def test_codes_are_limited_per_conversation_and_per_customer(courier: Any) -> None:
    outcomes = []
    for conversation_id in ("conv-a", "conv-b"):
        for n in range(1, 5):
            record = await _request(courier, conversation_id, n)
            await courier.courier.handle(record)
            outcomes.append(await _outcome(courier, conversation_id, f"{conversation_id}-a{n}"))
    # Three a conversation; five an hour for the customer, on any channel.
    assert outcomes == ["sent", "sent", "sent", "limit_conversation",
                        "sent", "sent", "limit_customer", "limit_customer"]  # fmt: skip
    assert len(courier.mailbox.received) == 5
    said = [e.payload["text"] for e in await courier.conversations.timeline("conv-a")
            if e.type == "message.sent"]  # fmt: skip
    assert said == ["I can't send another code just now. A colleague can confirm who you are: "
                    "just ask for a person."]  # fmt: skip


async def test_a_customer_with_many_wrong_codes_gets_no_more(courier: Any) -> None:
    for n in range(10):
        await courier.identity.record("cus-maya", "verification.failed",
                                      {"method": "otp", "reason": "wrong",
                                       "challenge_id": f"otp-{n}"},
                                      Actor("system", "test"))  # fmt: skip
    record = await _request(courier, "conv-a", 1)
    await courier.courier.handle(record)
    assert await _outcome(courier, "conv-a", "conv-a-a1") == "locked_customer"
    assert courier.mailbox.received == []


async def test_wrong_postcodes_stop_codes_too_until_a_person_lifts_the_lockout(
    courier: Any,
) -> None:
    for n in range(5):
        await courier.identity.record("cus-maya", "verification.failed",
                                      {"method": "knowledge", "conversation_id": f"conv-{n}"},
                                      Actor("bot", "northwind-bot"))  # fmt: skip
    await courier.courier.handle(await _request(courier, "conv-a", 1))
    assert await _outcome(courier, "conv-a", "conv-a-a1") == "locked_customer"
    await courier.identity.record("cus-maya", "verification.unlocked",
                                  {"unlocked_by": "sup-sam", "reason": "checked her ID"},
                                  Actor("human", "sup-sam"))  # fmt: skip
    await courier.courier.handle(await _request(courier, "conv-a", 2))
    assert await _outcome(courier, "conv-a", "conv-a-a2") == "sent"
    assert len(courier.mailbox.received) == 1


async def test_a_code_that_cannot_be_sent_says_so(courier: Any) -> None:
    courier.mailbox.refused.add(MAYA_EMAIL)
    record = await _request(courier, "conv-a", 1)
    await courier.courier.handle(record)
    assert await _outcome(courier, "conv-a", "conv-a-a1") == "not_sent"
    said = [e.payload["text"] for e in await courier.conversations.timeline("conv-a")
            if e.type == "message.sent"]  # fmt: skip
    assert said and said[0].startswith("I couldn't send the code just now.")


# -- the service, wired from its settings -------------------------------------------------


@pytest.mark.parametrize("bot_process", [False, True], ids=["in-process", "worker"])
async def test_the_service_sends_codes_its_settings_name(
    tmp_path: Any,
    smtp_server: Any,  # noqa: F811
    bot_process: bool,
) -> None:
    """An anonymous visitor who does not know the postcode proves order 1042 hers by the
    code the service emails Maya, in the service as its settings wire it."""
    import httpx

    from tests.conftest import TOKEN_SECRET, LiveServer
    from threadline.api.app import create_app
    from threadline.api.deps import service_of
    from threadline.channels.chat.client import ChatClient
    from threadline.settings import Settings

    mailbox = Mailbox()
    settings = Settings(store=f"sqlite:///{tmp_path / 'codes.db'}", token_secret=TOKEN_SECRET,
                        bot_process=bot_process, notify_email="smtp", smtp_host="127.0.0.1",
                        smtp_port=smtp_server(mailbox), smtp_security="none",
                        email_from="codes@northwind.example")  # fmt: skip
    app = create_app(settings)
    async with LiveServer(app) as server:
        async with httpx.AsyncClient() as http:
            token = (await http.post(f"{server.http}/chat/session")).json()["token"]
        async with ChatClient.connect(f"{server.ws}/chat/ws", token=token) as chat:

            async def answer(text: str) -> str:
                await chat.say(text)
                reply = await chat.wait_for(lambda e: e["event"] == "message.sent", timeout=20)
                return str(reply["text"])

            assert "postcode" in await answer("where is my order 1042?")
            assert "m***@example.com" in await answer("I don't know my postcode")
            async with asyncio.timeout(10):
                while not mailbox.received:
                    await asyncio.sleep(0.02)
            found = re.search(r"\b(\d{6})\b", mailbox.received[0].message.get_content())
            assert found is not None
            assert "carrier lost the parcel" in await answer(found.group(1))
        state = await service_of(app).conversations.rehydrate(chat.conversation_id)
        assert state.customer_id == "cus-maya" and state.level == "possession"

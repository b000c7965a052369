"""A check-in code in chat: the bot sends one when the customer wants to come in, sealed in
the message so the log never holds a usable code, shown to the customer, used once."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import bearer
from tests.test_agents_bot import opened, payload, types
from tests.test_business_pack import STRAND, pack
from threadline.agents import EmbeddedAgent
from threadline.agents.flows import SEND_CHECKIN_CODE
from threadline.api.deps import service_of
from threadline.business import Business, load
from threadline.channels.chat.client import ChatClient
from threadline.channels.inperson.cards import CheckinCards
from threadline.channels.inperson.codes import IssuedCode
from threadline.channels.inperson.courier import CheckinCourier
from threadline.security import TokenKey

COME_IN = "Can I come to the Market Street store to pick it up?"


@pytest.fixture
def conversation(systems):
    """A chat with the embedded agent on the Northwind pack (see tests/test_agents_bot.py)."""
    agent = EmbeddedAgent(systems)
    return lambda signed_in=False: opened(agent, signed_in=signed_in)


# -- the bot's turn ------------------------------------------------------------------------


def requests_of(turn, tool: str) -> list[dict[str, Any]]:
    return [dict(e.payload) for e in turn.events
            if e.type == "action.requested" and e.payload["tool"] == tool]  # fmt: skip


async def test_asking_to_come_in_on_chat_requests_a_code_for_the_store_named(
    conversation,
) -> None:
    chat = conversation()
    await chat.says("my order 1042 is late")
    turn = await chat.says(COME_IN)
    assert payload(turn, "intent.detected")["intent"] == "store_visit"
    request = payload(turn, "action.requested")
    assert (request["tool"], request["arguments"]) == (SEND_CHECKIN_CODE, {"store": "sf-market"})
    assert "action.completed" not in types(turn)  # the service sends it, after the turn
    reply = payload(turn, "message.sent")["text"]
    assert "Northwind Market Street" in reply and "check-in code" in reply
    assert "order number" not in reply


async def test_a_verified_owner_gets_the_code_for_the_orders_pickup_store(conversation) -> None:
    chat = conversation(signed_in=True)
    await chat.says("my order 1042 is late")
    turn = await chat.says("I'll pick it up at the store")
    (request,) = requests_of(turn, SEND_CHECKIN_CODE)
    assert request["arguments"] == {"store": "sf-market"}


async def test_without_a_store_the_customer_is_asked_which(conversation) -> None:
    chat = conversation()
    turn = await chat.says("can I come to the store")
    assert "action.requested" not in types(turn)
    assert "Which store" in payload(turn, "message.sent")["text"]


async def test_on_the_phone_the_caller_is_pointed_to_the_kiosk_instead(conversation) -> None:
    call = conversation()
    call.channel = "voice"
    turn = await call.says(COME_IN)
    assert "action.requested" not in types(turn)
    assert "kiosk" in payload(turn, "message.sent")["text"]


# -- the code's message ---------------------------------------------------------------------


def message(business: Business, store_id: str, expires_at: datetime) -> str:
    """The text of the message that hands the customer a code for ``store_id``."""
    cards = CheckinCards(TokenKey.hs256("Qz7Lm2Wx9Tb4Nc6Vr1Hd8Ks3Jf5Gp0Ya"))
    issued = IssuedCode(
        token="token", digits="123456", token_id="tok-1", conversation_id="c-1",
        customer_id="cus-maya", store_id=store_id, expires_at=expires_at,
    )  # fmt: skip
    return str(cards.message(issued, business)["text"])


def test_the_code_works_until_a_time_on_the_stores_clock(northwind) -> None:
    expires_at = datetime(2025, 3, 5, 0, 56, tzinfo=UTC)  # 16:56 on the 4th in San Francisco
    assert message(northwind, "sf-market", expires_at).endswith("It works once, until 4:56 PM PT.")


def test_the_code_works_until_a_time_in_the_stores_own_locale(tmp_path: Path) -> None:
    business = load(pack(tmp_path, STRAND.replace("LOCALE", "locale: en-GB")))  # pack: en-US
    expires_at = datetime(2026, 7, 15, 15, 56, tzinfo=UTC)  # 16:56 in London's summer time
    assert message(business, "strand", expires_at).endswith("until 16:56 BST.")


# -- the service ---------------------------------------------------------------------------


async def customer_session(server: Any) -> str:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{server.http}/chat/session")
    assert response.status_code == 201
    token: str = response.json()["token"]
    return token


def with_card(event: dict[str, Any]) -> bool:
    return event["event"] == "message.sent" and "checkin" in event


async def test_the_code_reaches_the_chat_sealed_and_is_used_once(live_server) -> None:
    token = await customer_session(live_server)
    url = f"{live_server.ws}/chat/ws"
    async with ChatClient.connect(url, token=token) as chat:
        await chat.say("My order 1042 hasn't arrived")
        await chat.say(COME_IN)
        shown = await chat.wait_for(with_card)
    card = shown["checkin"]
    assert card["status"] == "valid" and card["store"]["id"] == "sf-market"
    code = card["code"]
    assert len(code) == 6 and code.isdigit()
    assert card["qr"].startswith("data:image/png;base64,")
    assert card["alt"] == f"QR code of check-in code {code[:3]} {code[3:]}"
    assert "show this at the counter" in shown["text"]
    assert re.search(r"until 1?\d:\d\d [AP]M PT\.$", shown["text"]), shown["text"]

    records = await service_of(live_server.app).store.read(chat.conversation_id)
    sent = next(r for r in records if r.type == "message.sent" and b"sealed" in r.payload)
    assert code.encode() not in sent.payload  # neither the digits …
    issued = await service_of(live_server.app).store.read("system:checkin")
    assert all(code.encode() not in r.payload for r in issued)
    done = [r for r in records if r.type == "action.completed" and r.actor_id == "checkin"]
    assert len(done) == 1

    priya = bearer(live_server.app, "assoc-priya", "associate", store="sf-market")
    async with httpx.AsyncClient(base_url=live_server.http, headers=priya) as http:
        first = await http.post("/visits/checkin", json={"code": code})
        again = await http.post("/visits/checkin", json={"code": code})
    assert first.status_code == 201 and first.json()["conversation_id"] == chat.conversation_id
    assert again.status_code == 409
    async with ChatClient.connect(url, chat.conversation_id, token=token) as resumed:
        replayed = await resumed.wait_for(with_card)
    assert replayed["checkin"]["status"] == "used" and "code" not in replayed["checkin"]


async def test_a_redelivered_request_sends_no_second_code(live_server) -> None:
    token = await customer_session(live_server)
    async with ChatClient.connect(f"{live_server.ws}/chat/ws", token=token) as chat:
        await chat.say(COME_IN)
        await chat.wait_for(with_card)
    service = service_of(live_server.app)
    records = await service.store.read(chat.conversation_id)
    request = next(r for r in records if r.type == "action.requested")
    courier = CheckinCourier(service.commands, service.inperson.codes,
                             service.inperson.cards, service.business)  # fmt: skip
    await asyncio.gather(courier.handle(request), courier.handle(request))
    records = await service.store.read(chat.conversation_id)
    assert sum(r.type == "message.sent" and b"sealed" in r.payload for r in records) == 1


async def test_a_supervisor_can_send_a_code_and_a_copied_card_does_not_open(live_server) -> None:
    token = await customer_session(live_server)
    async with ChatClient.connect(f"{live_server.ws}/chat/ws", token=token) as chat:
        await chat.say("hello")
        sam = bearer(live_server.app, "sup-sam", "supervisor")
        request = {"type": "action.requested", "channel": "chat",
                   "actor": {"kind": "human", "id": "sup-sam"},
                   "payload": {"action_id": "act-sam-1", "tool": SEND_CHECKIN_CODE,
                               "arguments": {"store": "oak-broadway"}}}  # fmt: skip
        async with httpx.AsyncClient(base_url=live_server.http, headers=sam) as http:
            response = await http.post(f"/conversations/{chat.conversation_id}/events",
                                       json={"events": [request]},
                                       headers={"Idempotency-Key": "sam-code-1"})  # fmt: skip
        assert response.status_code == 201, response.text
        shown = await chat.wait_for(with_card)
    assert shown["checkin"]["store"]["name"] == "Northwind Broadway"
    timeline = await service_of(live_server.app).conversations.timeline(chat.conversation_id)
    card = next(e.payload["checkin"] for e in timeline
                if e.type == "message.sent" and e.payload["checkin"])  # fmt: skip
    cards = service_of(live_server.app).inperson.cards
    assert cards.open(card, chat.conversation_id) is not None
    assert cards.open(card, "another-conversation") is None
    tampered = {**card, "sealed": card["sealed"][:-4] + "AAAA"}
    assert cards.open(tampered, chat.conversation_id) is None

"""The consent ledger (issue 14): a channel's notice gives consent by notice, the customer
withdraws it (chat, or a person records what they said), withdrawal takes effect at once
(no AI processing: a person handles the conversation), and each decision lands on the
customer's own stream with its conversation and channel, on both stores."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, bearer
from tests.twilio_fakes import place_call, voice_settings
from threadline.api.app import create_app
from threadline.api.deps import service_of
from threadline.channels.chat.client import ChatClient
from threadline.privacy.consent import allows, notice_id, notices

BOT = "northwind-bot"


@pytest.fixture
async def server(any_store: Any) -> Any:
    async with LiveServer(create_app(voice_settings(), store=any_store)) as live:
        yield live


async def _token(server: Any, customer_id: str | None = None) -> str:
    if customer_id is None:
        async with httpx.AsyncClient() as http:
            return str((await http.post(f"{server.http}/chat/session")).json()["token"])
    issued = service_of(server.app).tokens.issue(
        customer_id, ["customer"], __import__("datetime").timedelta(hours=1),
        {"customer": customer_id},
    )  # fmt: skip
    return issued.token


async def _timeline(server: Any, cid: str) -> list[Any]:
    return await service_of(server.app).conversations.timeline(cid)


async def _ledger(server: Any, customer_id: str, count: int) -> list[dict[str, Any]]:
    identity = service_of(server.app).identity
    for _ in range(200):
        events = [e for e in await identity.history(customer_id) if e.type.startswith("consent.")]
        if len(events) >= count:
            return [{"type": e.type, **e.payload} for e in events]
        await asyncio.sleep(0.02)
    raise AssertionError(f"{customer_id}'s ledger holds {len(events)} decisions, not {count}")


def test_a_notice_gives_the_purposes_the_pack_gives_by_notice_there(northwind: Any) -> None:
    business = northwind
    chat = notices(business, "chat", {})
    voice = notices(business, "voice", {})
    disclosure = business.text("disclosures", "voice")
    assert [n["purpose"] for n in chat] == ["ai_processing"]
    assert [n["purpose"] for n in voice] == ["recording", "ai_processing"]
    assert {n["notice"] for n in voice} == {notice_id("voice", str(disclosure))}
    assert notices(business, "voice", {"ai_processing": False}) == voice[:1]  # a "no" stands


def test_opt_in_purposes_need_a_yes_and_a_withdrawal_always_wins(northwind: Any) -> None:
    business = northwind
    assert not allows(business, {}, "marketing")
    assert allows(business, {"marketing": True}, "marketing")
    assert allows(business, {}, "ai_processing")
    assert not allows(business, {"ai_processing": False}, "ai_processing")
    assert not allows(business, {}, "no_such_purpose")


async def test_the_chat_banner_and_the_call_greeting_record_consent_by_notice(
    server: Any,
) -> None:
    async with ChatClient.connect(f"{server.ws}/chat/ws", token=await _token(server)) as chat:
        await chat.say("hello")
        cid = chat.conversation_id
    given = [e for e in await _timeline(server, cid) if e.type == "consent.granted"]
    assert [(e.payload["purpose"], e.payload["basis"], e.channel) for e in given] == [
        ("ai_processing", "notice", "chat")
    ]
    answer = await place_call(server)
    call = answer.parameters["conversationId"]
    given = [e for e in await _timeline(server, call) if e.type == "consent.granted"]
    assert [(e.payload["purpose"], e.channel) for e in given] == [
        ("recording", "voice"), ("ai_processing", "voice")
    ]  # fmt: skip
    assert all(e.payload["notice"].startswith("voice:") for e in given)


async def test_withdrawing_ai_processing_on_chat_hands_over_at_once_and_the_bot_stops(
    server: Any,
) -> None:
    token = await _token(server, "cus-maya")
    async with ChatClient.connect(f"{server.ws}/chat/ws", token=token) as chat:
        seq = await chat.say("where is my order 1042?")
        await chat.wait_for(lambda e: e["event"] == "message.sent" and e["seq"] > seq)
        withdrawn = await chat.consent("ai_processing", granted=False)
        handoff = await chat.wait_for(lambda e: e["event"] == "handoff.requested")
        assert handoff["seq"] > withdrawn
        said = await chat.say("and when will it come?")
        cid = chat.conversation_id
    await asyncio.sleep(0.3)  # the bot would have answered by now
    timeline = await _timeline(server, cid)
    after = [e for e in timeline if e.seq > said and e.actor.id == BOT]
    assert after == []  # no AI reads or answers the customer any more
    (requested,) = [e for e in timeline if e.type == "handoff.requested"]
    assert requested.payload["reason_detail"] == "no consent to AI processing"
    state = await service_of(server.app).conversations.rehydrate(cid)
    assert state.consent["ai_processing"] is False and state.status == "awaiting_human"
    ledger = await _ledger(server, "cus-maya", 2)
    assert [(d["type"], d["purpose"], d["basis"], d["channel"], d["conversation_id"])
            for d in ledger] == [
        ("consent.granted", "ai_processing", "notice", "chat", cid),
        ("consent.revoked", "ai_processing", "express", "chat", cid),
    ]  # fmt: skip


async def test_a_person_records_what_the_customer_said_and_others_may_not(server: Any) -> None:
    token = await _token(server, "cus-maya")
    async with ChatClient.connect(f"{server.ws}/chat/ws", token=token) as chat:
        seq = await chat.say("where is my order 1042?")
        await chat.wait_for(lambda e: e["event"] == "message.sent" and e["seq"] > seq)
        cid = chat.conversation_id
    sam = bearer(server.app, "sup-sam", "supervisor")
    other = await _token(server, "cus-omar")
    async with httpx.AsyncClient(base_url=server.http) as http:
        yes = await http.post(
            f"/conversations/{cid}/consent",
            headers=sam,
            json={"purpose": "marketing", "granted": True},
        )
        mine = await http.post(
            f"/conversations/{cid}/consent",
            headers={"Authorization": f"Bearer {token}"},
            json={"purpose": "analytics", "granted": False},
        )
        theirs = await http.post(
            f"/conversations/{cid}/consent",
            headers={"Authorization": f"Bearer {other}"},
            json={"purpose": "marketing", "granted": False},
        )
        unknown = await http.post(
            f"/conversations/{cid}/consent",
            headers=sam,
            json={"purpose": "selling", "granted": True},
        )
    assert yes.status_code == 200 and yes.json()["basis"] == "verbal"
    assert yes.json()["consent"]["marketing"] is True
    assert mine.status_code == 200 and mine.json()["basis"] == "express"
    assert theirs.status_code in (403, 404)
    assert unknown.status_code == 422
    assert unknown.headers["content-type"] == "application/problem+json"
    ledger = await _ledger(server, "cus-maya", 3)
    assert ("consent.granted", "marketing", "verbal") in [
        (d["type"], d["purpose"], d["basis"]) for d in ledger
    ]

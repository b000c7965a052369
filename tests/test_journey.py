"""The reference journey end to end, on both stores: one customer across chat, a phone call
and a store visit, with a real browser for the chat widget and the associate app and a real
phone caller (espeak-ng speech in, the embedded STT, spoken replies out).

Maya chats about her late order 1042 and asks to come to the store: the chat shows her a
check-in code. She then calls from her number: she is welcomed back with the open order,
verifies by postcode, and asks for a person; Ana takes the call. At Market Street Priya
checks her in by the code, sees the chat and the call, and resolves. The log must hold one
conversation with three legs in that order, and no question the customer answered asked again.

The anonymous path: Maya chats without signing in and proves order 1042 hers with its
postcode; her call from her number continues that conversation and proves itself again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from tests.conftest import LiveServer, bearer
from tests.journey import (
    anonymous_chat,
    asked_after_answer,
    chat_as,
    chat_says,
    conversation_on,
    milestones,
    wait_for_event,
)
from tests.test_web_associate import checked_in, signed_in
from tests.twilio_fakes import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FakeTwilio,
    post_webhook,
    voice_settings,
)
from threadline.api.app import create_app
from threadline.api.deps import service_of
from threadline.core.events import Event
from threadline.testing.caller import PhoneCaller

MAYA_PHONE = "+14155550123"
COME_IN = "Can I come to the Market Street store to pick it up?"


@pytest.fixture
async def twilio_rest():
    fake = FakeTwilio()
    async with LiveServer(fake.app()) as live:
        fake.base = live.http
        yield fake


@pytest.fixture
async def northwind(any_store, twilio_rest):
    app = create_app(voice_settings(twilio_api_base=twilio_rest.base), store=any_store)
    async with LiveServer(app) as server:
        yield server


async def chats_and_gets_a_code(server: Any, browser: Any) -> tuple[str, str]:
    """Maya's chat, signed in on the shop's site; the conversation and the code shown."""
    context, chat = await chat_as(browser, server, "cus-maya")
    await chat.get_by_label("Message").fill("My order 1042 hasn't arrived.")
    await chat.get_by_label("Message").press("Enter")
    await expect(chat.locator(".tl-chat__msg--bot").first).to_contain_text("Order 1042")
    await chat.get_by_label("Message").fill(COME_IN)
    await chat.get_by_label("Message").press("Enter")
    await expect(chat.get_by_role("img", name="QR code of check-in code", exact=False)
                 ).to_be_visible()  # fmt: skip
    digits = (await chat.locator(".tl-chat__code").inner_text()).replace(" ", "")
    cid = await conversation_on(chat.page)
    await context.close()  # Maya leaves the site: the chat leg ends
    await wait_for_event(server, cid, lambda e: e.type == "leg.ended" and e.channel == "chat")
    return cid, digits


async def calls_verifies_and_reaches_ana(server: Any, twilio: FakeTwilio, cid: str) -> None:
    ana = bearer(server.app, "agent-ana", "agent", queues=["orders", "billing"])
    async with httpx.AsyncClient(base_url=server.http, headers=ana) as desk:
        presence = await desk.put("/agents/me/presence", json={"presence": "available"})
        assert presence.status_code == 200, presence.text
        call = PhoneCaller(server.http, AUTH_TOKEN, ACCOUNT_SID)
        await call.dial(MAYA_PHONE)
        assert call.conversation_id == cid  # recognised by her number: the same conversation
        await call.next_reply(0)  # welcomed back with the open order
        await call.until_quiet()
        await call.say("My postcode is 94103.")
        await wait_for_event(server, cid, lambda e: e.type == "identity.linked"
                             and e.payload["verified"], timeout=30)  # fmt: skip
        await call.next_reply(1)
        await call.say("I want to talk to a person please.")
        offer = await wait_for_event(server, cid, lambda e: e.type == "handoff.offered",
                                     timeout=30)  # fmt: skip
        assert offer.payload["agent_id"] == "agent-ana"
        accepted = await desk.post(f"/conversations/{cid}/accept",
                                   json={"offer_id": offer.payload["offer_id"]})  # fmt: skip
        assert accepted.status_code == 200, accepted.text
        await wait_for_event(server, cid, lambda e: e.type == "note.added")  # warm transfer
        assert any("<Dial" in r.form.get("Twiml", "") for r in twilio.requests)
        await call.hang_up()
    # Maya and Ana finish talking; Twilio reports the call completed.
    ended = await post_webhook(server, "/voice/twilio/status",
                               {"CallSid": call.sid, "CallStatus": "completed"})  # fmt: skip
    assert ended.status_code == 204, ended.text
    await wait_for_event(server, cid, lambda e: e.type == "leg.ended" and e.channel == "voice")


async def visits_and_is_resolved(server: Any, browser: Any, digits: str) -> None:
    context, page = await signed_in(browser, server)
    await checked_in(page, digits)
    journey = page.get_by_role("list", name="Journey")
    await expect(journey).to_contain_text("My order 1042 hasn't arrived.")  # the chat …
    await expect(journey).to_contain_text("Welcome back")  # … and the call
    for channel in ("chat", "voice", "in_person"):
        await expect(journey.locator(f".badge.{channel}").first).to_be_visible()
    await expect(page.get_by_role("complementary", name="Handoff packet")
                 ).to_contain_text("1042 (from chat)")  # fmt: skip
    await page.get_by_label("Outcome").select_option("replacement_collected")
    await page.get_by_role("button", name="Resolve").click()
    await expect(page.locator("#visit-status")).to_contain_text("resolved")
    await context.close()


@pytest.mark.slow
@pytest.mark.usefixtures("espeak")
async def test_one_customer_across_chat_a_call_and_a_store_visit(
    northwind, twilio_rest, browser
) -> None:
    cid, digits = await chats_and_gets_a_code(northwind, browser)
    await calls_verifies_and_reaches_ana(northwind, twilio_rest, cid)
    await visits_and_is_resolved(northwind, browser, digits)

    timeline: list[Event] = await service_of(northwind.app).conversations.timeline(cid)
    async with asyncio.timeout(10):  # the index (PostgreSQL's read_all may lag a commit)
        while not (entries := service_of(northwind.app).index.of_customer("cus-maya")) or any(
            e.state.status != "resolved" for e in entries
        ):
            await asyncio.sleep(0.05)
    assert [e.conversation_id for e in entries] == [cid]  # one conversation
    legs = [e.payload["channel"] for e in timeline if e.type == "leg.started"]
    assert legs == ["chat", "voice", "in_person"]  # three legs, in this order
    assert {e.customer_id for e in timeline} == {"cus-maya"}

    assert milestones(timeline) == [
        "chat: order problem", "chat: order number filled", "chat: check-in code sent",
        "voice: call answered", "voice: postcode filled", "voice: verified by postcode",
        "voice: handed to a person", "voice: Ana accepted", "in_person: checked in",
        "in_person: resolved",
    ]  # fmt: skip
    slots = [(e.payload["name"], e.channel) for e in timeline if e.type == "slot.filled"]
    assert slots.count(("order_number", "chat")) == 1
    assert [s for s in slots if s[0] == "order_number"] == [("order_number", "chat")]
    assert asked_after_answer(timeline) == []  # no question asked again once answered
    lookups = [e.payload["arguments"] for e in timeline if e.type == "action.requested"
               and e.payload["tool"] == "lookup_order" and e.channel == "voice"]  # fmt: skip
    assert lookups and all(a["order_number"] == "1042" for a in lookups)
    resolved = next(e for e in timeline if e.type == "conversation.resolved")
    assert resolved.payload["outcome"] == "replacement_collected"
    assert resolved.actor.id == "assoc-priya"


def test_the_journey_check_catches_a_question_asked_again_after_its_answer() -> None:
    def event(type_: str, payload: dict[str, Any], channel: str = "chat") -> Event:
        return Event("c", type_, payload, channel=channel)

    asked = event("message.sent", {"text": "What's the order number?"})
    answered = event("slot.filled", {"name": "order_number", "value": "1042", "source": "customer"})
    again = event("message.sent", {"text": "Sure — what's the order number?"}, "voice")
    assert asked_after_answer([asked, answered]) == []
    assert asked_after_answer([asked, answered, again]) == [
        ("order_number", "Sure — what's the order number?")
    ]


@pytest.mark.slow
@pytest.mark.usefixtures("espeak")
async def test_an_anonymous_visitor_who_proves_who_she_is_is_known_on_her_call(
    northwind, twilio_rest, browser
) -> None:
    """No sign-in anywhere: Maya chats anonymously and proves order 1042 hers; her call
    from her number continues the chat, asks for proof at the phone's level, and the
    agent's packet shows both proofs with their channels."""
    server = northwind
    context, chat = await anonymous_chat(browser, server)
    await chat_says(chat, "My order 1042 hasn't arrived.", "postcode")
    await chat_says(chat, "It's 94103", "carrier")
    cid = await conversation_on(chat.page)
    await context.close()
    await wait_for_event(server, cid, lambda e: e.type == "leg.ended" and e.channel == "chat")

    call = PhoneCaller(server.http, AUTH_TOKEN, ACCOUNT_SID)
    await call.dial(MAYA_PHONE)
    assert call.conversation_id == cid  # her number finds the chat she proved hers
    welcome = await wait_for_event(
        server, cid, lambda e: e.type == "message.sent" and e.channel == "voice"
        and "Welcome back" in e.payload["text"],
    )  # fmt: skip
    assert "order 1042" in welcome.payload["text"] and "postcode" in welcome.payload["text"]
    assert "carrier" not in welcome.payload["text"]
    await call.next_reply(0)
    await call.until_quiet()
    await call.say("My postcode is 94103.")
    await wait_for_event(
        server, cid, lambda e: e.type == "identity.linked" and e.channel == "voice"
        and e.payload["verified"], timeout=30,
    )  # fmt: skip
    await call.hang_up()

    sam = bearer(server.app, "sup-sam", "supervisor")
    async with httpx.AsyncClient(base_url=server.http, headers=sam) as desk:
        response = await desk.get(f"/conversations/{cid}/packet")
    assert response.status_code == 200, response.text
    packet = response.json()
    assert packet["customer_id"] == "cus-maya"
    assert [(p["channel"], p["method"], p["level"]) for p in packet["proofs"]] == [
        ("chat", "postcode", "knowledge"), ("voice", "postcode", "knowledge"),
    ]  # fmt: skip
    assert packet["verification"] == "verified" and packet["verified_by"] == "postcode"
    async with asyncio.timeout(10):  # the index (PostgreSQL's read_all may lag a commit)
        while not service_of(server.app).index.of_customer("cus-maya"):
            await asyncio.sleep(0.05)
    assert [e.conversation_id for e in service_of(server.app).index.of_customer("cus-maya")] == [
        cid
    ]
    timeline = await service_of(server.app).conversations.timeline(cid)
    legs = [e.payload["channel"] for e in timeline if e.type == "leg.started"]
    assert legs == ["chat", "voice"]
    # Only the postcode is asked again: the call proves itself, as caller id proves nothing.
    assert {slot for slot, _ in asked_after_answer(timeline)} <= {"postcode"}

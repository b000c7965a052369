"""The desk says how sure we are who a caller is, in real headless Chromium: a caller known
only by caller id is unverified; one who gave the account's postcode is verified by it."""

from __future__ import annotations

import asyncio
from typing import Any

from playwright.async_api import expect

from tests.conftest import bearer
from threadline.api.deps import service_of
from threadline.core.events import Actor, Event

MAYA = Actor("customer", "cus-maya")
GATEWAY = Actor("system", "voice-gateway")


async def a_caller_says(server: Any, cid: str, *texts: str) -> None:
    """A call from Maya's number (caller id only) on which she says ``texts``, in turn."""

    def event(type_: str, payload: dict[str, Any], actor: Actor, key: str) -> Event:
        return Event(cid, type_, payload, channel="voice", leg_id="call-1", actor=actor,
                     customer_id="cus-maya", idempotency_key=f"{cid}-{key}")  # fmt: skip

    conversations = service_of(server.app).conversations
    await conversations.record(cid, [
        event("conversation.started", {"origin": "voice"}, MAYA, "start"),
        event("leg.started", {"leg_id": "call-1", "channel": "voice",
                              "address": "+14155550123"}, GATEWAY, "leg"),
        event("identity.linked", {"kind": "phone", "value": "+14155550123",
                                  "verified": False, "method": "caller_id"}, GATEWAY, "claim"),
    ])  # fmt: skip
    for n, text in enumerate(texts):
        said = {"text": text, "confidence": 0.9, "start_ms": 0, "end_ms": 1500}
        await conversations.record(cid, [event("utterance.transcribed", said, MAYA, f"say-{n}")])
        async with asyncio.timeout(10):  # the bot answers each turn before the next
            while sum(e.type == "message.sent" for e in await conversations.timeline(cid)) <= n:
                await asyncio.sleep(0.05)


async def ana_sees(server: Any, browser: Any, level: str) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    desk = await context.new_page()
    token = bearer(server.app, "agent-ana", "agent", queues=["orders", "billing"])
    await desk.goto(f"{server.http}/desk#token={token['Authorization'].split()[1]}")
    await expect(desk.locator("#me-name")).to_contain_text("Ana Ruiz")
    await desk.get_by_label("Presence").select_option("available")
    accept = desk.get_by_role("button", name="Accept offer from queue orders")
    await expect(accept).to_be_visible(timeout=10_000)
    await expect(desk.locator(".offer-detail").first).to_contain_text(f"cus-maya ({level})")
    await accept.click()
    context_panel = desk.get_by_role("complementary", name="Context")
    await expect(context_panel).to_contain_text(f"cus-maya ({level})")
    await context.close()


async def test_a_caller_known_only_by_caller_id_shows_as_unverified(live_server, browser) -> None:
    await a_caller_says(live_server, "conv-unverified", "I want to talk to a person please")
    await ana_sees(live_server, browser, "unverified")


async def test_a_caller_who_gave_the_postcode_shows_how_they_were_verified(
    live_server, browser
) -> None:
    await a_caller_says(live_server, "conv-verified", "Where is my order 1042?",
                        "My postcode is 94103", "I want to talk to a person please")  # fmt: skip
    await ana_sees(live_server, browser, "verified by postcode")


async def test_a_postcode_keyed_in_while_waiting_shows_on_the_offer_without_a_reload(
    live_server, browser
) -> None:
    cid = "conv-keyed"
    await a_caller_says(live_server, cid, "Where is my order 1042?",
                        "I want to talk to a person please")  # fmt: skip
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    desk = await context.new_page()
    token = bearer(live_server.app, "agent-ana", "agent", queues=["orders", "billing"])
    await desk.goto(f"{live_server.http}/desk#token={token['Authorization'].split()[1]}")
    await desk.get_by_label("Presence").select_option("available")
    offer = desk.locator(".offer-detail").first
    await expect(offer).to_contain_text("cus-maya (unverified)", timeout=10_000)
    loads = []
    desk.on("framenavigated", lambda frame: loads.append(frame.url))
    keyed = Event(cid, "message.received", {"text": "94103"}, channel="voice", leg_id="call-1",
                  actor=MAYA, customer_id="cus-maya", idempotency_key=f"{cid}-keyed")  # fmt: skip
    await service_of(live_server.app).conversations.record(cid, [keyed])
    await expect(offer).to_contain_text("cus-maya (verified by postcode)", timeout=10_000)
    assert loads == []  # the same page, told by its work stream
    await desk.get_by_role("button", name="Accept offer from queue orders").click()
    context_panel = desk.get_by_role("complementary", name="Context")
    await expect(context_panel).to_contain_text("Proofs")
    await expect(context_panel).to_contain_text("postcode on voice (knowledge)")
    await context.close()

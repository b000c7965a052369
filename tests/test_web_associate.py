"""The associate app and the kiosk in real headless Chromium."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import httpx
from playwright.async_api import expect

from threadline.api.deps import service_of
from threadline.core.events import Actor, Event

DOCS = Path(__file__).resolve().parent.parent / "docs"
MAYA = Actor("customer", "cus-maya")
TABLET = {"width": 1180, "height": 820}


def token(server, subject: str, scope: str, **claims: object) -> str:
    issued = service_of(server.app).tokens.issue(subject, [scope], timedelta(hours=1), claims)
    return str(issued.token)


async def maya_chatted(server, cid: str = "conv-maya") -> str:
    events = [
        Event(cid, "conversation.started", {"origin": "chat"}, channel="chat", actor=MAYA,
              customer_id="cus-maya", idempotency_key=f"{cid}-start"),
        Event(cid, "leg.started", {"leg_id": "chat-1", "channel": "chat"}, channel="chat",
              leg_id="chat-1", actor=MAYA, customer_id="cus-maya", idempotency_key=f"{cid}-leg"),
        Event(cid, "message.received", {"text": "My order 1042 hasn't arrived"}, channel="chat",
              leg_id="chat-1", actor=MAYA, customer_id="cus-maya", idempotency_key=f"{cid}-ask"),
    ]  # fmt: skip
    service = service_of(server.app)
    await service.conversations.record(cid, events)
    async with asyncio.timeout(10):  # the bot fills the order number; the index catches up
        while "order_number" not in (await service.conversations.rehydrate(cid)).slots:
            await asyncio.sleep(0.05)
        while not service.index.of_customer("cus-maya"):
            await asyncio.sleep(0.02)
    return cid


async def checkin_code(server, cid: str) -> dict[str, str]:
    maya = token(server, "cus-maya", "customer", customer="cus-maya", conversation=cid)
    async with httpx.AsyncClient(base_url=server.http) as client:
        response = await client.post("/chat/checkin-code", json={"store_id": "sf-market"},
                                     headers={"Authorization": f"Bearer {maya}"})  # fmt: skip
    assert response.status_code == 201, response.text
    body: dict[str, str] = response.json()
    return body


async def signed_in(browser, server, viewport=TABLET):
    context = await browser.new_context(viewport=viewport)
    page = await context.new_page()
    priya = token(server, "assoc-priya", "associate", store="sf-market")
    await page.goto(f"{server.http}/associate#token={priya}")
    await expect(page.locator("#me-name")).to_contain_text("Priya Nair")
    assert page.url == f"{server.http}/associate"  # the token left the address bar
    return context, page


async def checked_in(page, digits: str) -> None:
    await page.get_by_label("Code (6 digits) or scanned QR text").fill(digits)
    await page.get_by_role("button", name="Check in").click()
    await expect(page.locator("#visit-title")).to_contain_text("Visit")


async def of_priya(server, cid: str, type_: str) -> list[Event]:
    timeline = await service_of(server.app).conversations.timeline(cid)
    return [e for e in timeline if e.type == type_ and e.actor.id == "assoc-priya"]


async def test_priya_checks_maya_in_by_code_sees_the_chat_and_resolves(
    live_server, browser
) -> None:
    cid = await maya_chatted(live_server)
    code = await checkin_code(live_server, cid)
    context, page = await signed_in(browser, live_server)
    await checked_in(page, code["code"])
    journey = page.get_by_role("list", name="Journey")
    await expect(journey).to_contain_text("My order 1042 hasn't arrived")
    await expect(journey.locator(".badge.chat").first).to_be_visible()
    await expect(journey.locator(".badge.in_person").first).to_be_visible()
    packet = page.get_by_role("complementary", name="Handoff packet")
    await expect(packet).to_contain_text("1042 (from chat)")
    await page.get_by_label("Note (internal)").fill("Replacement Aster 14 handed over")
    await page.get_by_role("button", name="Add note").click()
    await expect(journey).to_contain_text("Replacement Aster 14 handed over")
    DOCS.mkdir(exist_ok=True)
    await page.screenshot(path=str(DOCS / "associate.png"))
    await page.get_by_label("Outcome").select_option("replacement_collected")
    await page.get_by_role("button", name="Resolve").click()
    await expect(page.locator("#visit-status")).to_contain_text("resolved")
    state = await service_of(live_server.app).conversations.rehydrate(cid)
    assert state.status == "resolved" and state.outcome == "replacement_collected"
    legs = [leg for leg in state.legs.values() if leg["channel"] == "in_person"]
    assert len(legs) == 1 and legs[0]["ended_at"] is not None
    await context.close()


async def test_the_portrait_tablet_layout_fits(live_server, browser) -> None:
    context, page = await signed_in(browser, live_server, {"width": 820, "height": 1180})
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 820
    await expect(page.get_by_label("Reason for the look-up (recorded)")).to_be_visible()
    await context.close()


async def test_writes_made_offline_are_replayed_once_when_back(live_server, browser) -> None:
    cid = await maya_chatted(live_server)
    code = await checkin_code(live_server, cid)
    context, page = await signed_in(browser, live_server)
    await checked_in(page, code["code"])
    await expect(page.get_by_role("list", name="Journey")).to_contain_text("1042")

    # The first note reaches the service but its answer is lost: the app must resend it
    # with the same Idempotency-Key, and the service must record it once.
    lost = []

    async def lose_answer(route) -> None:
        if not lost:
            lost.append(route.request.headers.get("idempotency-key"))
            await route.fetch()
            await route.abort("internetdisconnected")
        else:
            await route.continue_()

    await page.route("**/visit/note", lose_answer)
    await context.set_offline(True)
    await page.get_by_label("Note (internal)").fill("Offline note one")
    await page.get_by_role("button", name="Add note").click()
    await page.get_by_label("Action", exact=True).select_option("booked_follow_up")
    await page.get_by_role("button", name="Record action").click()
    await expect(page.locator("#pending")).to_have_text("2 changes waiting to be sent")
    assert await of_priya(live_server, cid, "note.added") == []
    stored = await page.evaluate("JSON.parse(localStorage.getItem('threadline.associate.outbox'))")
    assert [item["path"].rsplit("/", 1)[-1] for item in stored] == ["note", "action"]

    await context.set_offline(False)
    await expect(page.locator("#pending")).to_have_text("", timeout=15_000)
    assert lost and lost[0] == stored[0]["key"]
    notes = await of_priya(live_server, cid, "note.added")
    actions = await of_priya(live_server, cid, "action.completed")
    assert [n.payload["text"] for n in notes] == ["Offline note one"]
    assert len(actions) == 1
    assert [n.idempotency_key for n in notes] == [stored[0]["key"]]
    await context.close()


async def test_a_kiosk_check_in_shows_in_the_store_queue_with_its_wait(
    live_server, browser
) -> None:
    cid = await maya_chatted(live_server)
    kiosk_context = await browser.new_context(viewport={"width": 1024, "height": 768})
    kiosk = await kiosk_context.new_page()
    kiosk_token = token(live_server, "kiosk-sf-market", "kiosk", store="sf-market")
    await kiosk.goto(f"{live_server.http}/kiosk#token={kiosk_token}")
    assert kiosk.url == f"{live_server.http}/kiosk"  # the token left the address bar
    await kiosk.get_by_role("textbox", name="Phone number").fill("(415) 555-0123")
    await kiosk.get_by_role("button", name="Check in").click()
    await expect(kiosk.get_by_role("status")).to_contain_text("You are number 1 in line")
    DOCS.mkdir(exist_ok=True)
    await kiosk.screenshot(path=str(DOCS / "kiosk.png"))

    context, page = await signed_in(browser, live_server)
    waiting = page.locator("#queue li")
    await expect(waiting).to_have_count(1)
    await expect(waiting).to_contain_text("Maya C.")
    await expect(waiting.locator(".time")).to_contain_text("waiting")
    await expect(waiting.locator(".time")).not_to_have_text("waiting 0 s", timeout=5_000)
    # A second check-in arrives live, without a reload.
    await kiosk.get_by_role("textbox", name="Phone number").fill("+1 510 555 0188")
    await kiosk.get_by_role("button", name="Check in").click()
    await expect(waiting).to_have_count(2)
    await page.get_by_role("button", name="Serve Maya C.").click()
    await expect(page.get_by_role("list", name="Journey")).to_contain_text("1042")
    await expect(waiting).to_have_count(1)
    assert [e.payload["location"] for e in await of_priya(live_server, cid, "leg.started")] == [
        "sf-market"
    ]
    await kiosk_context.close()
    await context.close()

"""Approving and denying a refund on the desk, in real headless Chromium: the approval
arrives live while the customer chats, and leaves every desk once someone decides it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, Route, expect

from tests.approvals import ASK, PROOF, refund_script
from tests.test_web_desk_access import CONTRAST_JS
from threadline.api.app import create_app
from threadline.api.deps import service_of
from threadline.core.events import Actor, Event, Lineage
from threadline.settings import Settings
from threadline.testing.live import LiveServer
from threadline.testing.model_server import ScriptedModel

APPROVALS = re.compile(r".*/conversations/[^/]+/approvals/[^/]+$")


class Served:
    """The service with its model-backed agent behind a scripted model, served for real."""

    def __init__(self, server: LiveServer, model: ScriptedModel) -> None:
        self.server = server
        self.model = model

    @property
    def app(self) -> Any:
        return self.server.app

    def token(self, subject: str, scope: str = "agent", **claims: Any) -> str:
        tokens = service_of(self.app).tokens
        return str(tokens.issue(subject, [scope], timedelta(hours=1), claims).token)

    def script_a_refund(self) -> None:
        self.model.then(*refund_script(service_of(self.app).current.business))

    async def events(self, cid: str, type_: str) -> list[Event]:
        timeline = await service_of(self.app).conversations.timeline(cid)
        return [e for e in timeline if e.type == type_]

    async def customer_says(self, cid: str, n: int, text: str) -> None:
        """A chat customer's ``n``-th message (the first opens the conversation); the bot
        answers before this returns."""
        actor = Actor("customer", f"visitor-{cid}")

        def event(type_: str, payload: dict[str, Any], key: str) -> Event:
            return Event(cid, type_, payload, channel="chat", leg_id=f"chat-{cid}", actor=actor,
                         customer_id=actor.id, idempotency_key=f"{cid}:{key}",
                         lineage=Lineage("chat-adapter", "1"))  # fmt: skip

        events = [event("message.received", {"text": text}, f"m{n}")]
        if n == 0:
            events[:0] = [event("conversation.started", {"origin": "chat"}, "start"),
                          event("leg.started", {"leg_id": f"chat-{cid}", "channel": "chat"},
                                "leg")]  # fmt: skip
        await service_of(self.app).conversations.record(cid, events)
        async with asyncio.timeout(10):
            while len(await self.events(cid, "message.sent")) <= n:
                await asyncio.sleep(0.05)

    async def refund_requested(self, cid: str) -> str:
        self.script_a_refund()
        await self.customer_says(cid, 0, PROOF)
        await self.customer_says(cid, 1, ASK)
        (requested,) = await self.events(cid, "approval.requested")
        return str(requested.payload["approval_id"])


@pytest.fixture
async def served(tmp_path) -> AsyncIterator[Served]:
    model = ScriptedModel()
    async with LiveServer(model.app) as provider:
        settings = Settings(store=f"sqlite:///{tmp_path / 'live.db'}",
                            model_url=f"{provider.http}/v1", model="scripted-1")  # fmt: skip
        async with LiveServer(create_app(settings)) as server:
            yield Served(server, model)


async def open_desk(browser: Any, served: Served, token: str, name: str) -> tuple[Any, Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    await page.goto(f"{served.server.http}/desk#token={token}")
    await expect(page.locator("#me-name")).to_contain_text(name)
    await expect(page.locator("#connection")).to_have_text("Live")
    return context, page


async def test_a_billing_agent_approves_a_refund_that_arrives_live_while_the_customer_chats(
    served: Served, browser
) -> None:
    token = served.token("agent-ana", queues=["orders", "billing"])
    desk_context, desk = await open_desk(browser, served, token, "Ana Ruiz")
    await expect(desk.locator("#no-approvals")).to_be_visible()
    loads: list[str] = []
    desk.on("framenavigated", lambda frame: loads.append(frame.url))

    customer = await browser.new_context(viewport={"width": 1280, "height": 800})
    chat_page = await customer.new_page()
    await chat_page.goto(f"{served.server.http}/chat")
    chat = chat_page.get_by_role("region", name="Chat with Northwind Devices")
    await expect(chat.get_by_role("status")).to_have_text("Online")
    served.script_a_refund()
    message = chat.get_by_label("Message")
    await message.fill(PROOF)
    await message.press("Enter")
    await expect(chat.locator(".tl-chat__msg--bot").last).to_contain_text("that's you")
    await message.fill(ASK)
    await message.press("Enter")
    await expect(chat.locator(".tl-chat__msg--bot").last).to_contain_text("approve")

    item = desk.locator("#approvals li")
    await expect(item).to_have_count(1, timeout=10_000)  # live, no reload
    await expect(item).to_contain_text("refund order · queue billing")
    await expect(item).to_contain_text("order number")
    await expect(item).to_contain_text("1042")
    await expect(item).to_contain_text("Why: lost parcel")
    await expect(desk.locator("#no-approvals")).to_be_hidden()
    assert await desk.evaluate(CONTRAST_JS) == []

    await item.get_by_role("button", name=re.compile("^Open conversation")).click()
    await expect(desk.locator("#conv-title")).to_be_focused()
    timeline = desk.locator("#timeline")
    await expect(timeline).to_contain_text("refund order waits for approval in billing")
    await expect(desk.locator("#conv-status")).to_contain_text("waits for approval")
    await expect(desk.locator("#reply")).to_be_hidden()

    await item.get_by_role("button", name=re.compile("^Approve refund order")).click()
    await expect(item).to_have_count(0, timeout=10_000)
    await expect(desk.locator("#no-approvals")).to_be_visible()
    await expect(desk.locator("#approval-error")).to_be_hidden()
    await expect(desk.locator("#conv-status")).to_have_text("Approved by agent-ana.")
    await expect(timeline).to_contain_text("approved by agent-ana", timeout=10_000)
    await expect(timeline).to_contain_text("refund id rf-1042", timeout=10_000)
    reply = timeline.locator("li.bot").last
    await expect(reply).to_contain_text("rf-1042", timeout=10_000)
    await expect(reply).to_contain_text("message.sent")
    await expect(chat.locator(".tl-chat__msg--bot").last).to_contain_text("rf-1042")
    assert loads == []  # the same page throughout, told by its streams
    await customer.close()
    await desk_context.close()


async def test_a_denial_takes_a_typed_reason_and_the_customer_hears_it(served, browser) -> None:
    token = served.token("agent-ben", queues=["repairs", "billing"])
    context, desk = await open_desk(browser, served, token, "Ben Okafor")
    await served.refund_requested("c-deny")
    item = desk.locator("#approvals li")
    await expect(item).to_have_count(1, timeout=10_000)

    await item.get_by_role("button", name=re.compile("^Deny refund order")).click()
    reason = item.get_by_label("Why deny it? The customer is told.")
    await expect(reason).to_be_focused()
    await reason.press("Enter")  # no reason: nothing is sent
    await expect(reason).to_be_focused()
    assert await served.events("c-deny", "approval.denied") == []
    await desk.keyboard.type("the replacement already shipped")
    await desk.keyboard.press("Enter")
    await expect(item).to_have_count(0, timeout=10_000)
    await expect(desk.locator("#approvals-title")).to_be_focused()

    (denied,) = await served.events("c-deny", "approval.denied")
    assert denied.payload["reason"] == "the replacement already shipped"
    assert (denied.actor.id, denied.payload["agent_id"]) == ("agent-ben", "agent-ben")
    async with asyncio.timeout(10):
        while len(sent := await served.events("c-deny", "message.sent")) < 3:
            await asyncio.sleep(0.05)
    assert "the replacement already shipped" in sent[-1].payload["text"]
    await context.close()


async def test_a_call_decided_on_another_desk_meanwhile_is_refused_and_the_desk_says_so(
    served, browser
) -> None:
    token = served.token("agent-ana", queues=["orders", "billing"])
    context, desk = await open_desk(browser, served, token, "Ana Ruiz")
    approval_id = await served.refund_requested("c-race")
    item = desk.locator("#approvals li")
    await expect(item).to_have_count(1, timeout=10_000)

    async def ben_first(route: Route) -> None:
        """Ben approves from his desk just before Ana's click reaches the service."""
        async with httpx.AsyncClient(base_url=served.server.http) as http:
            ben = served.token("agent-ben", queues=["repairs", "billing"])
            response = await http.post(f"/conversations/c-race/approvals/{approval_id}",
                                       json={"decision": "approve"},
                                       headers={"Authorization": f"Bearer {ben}"})  # fmt: skip
        assert response.status_code == 200, response.text
        await route.continue_()

    await desk.route(APPROVALS, ben_first)
    await item.get_by_role("button", name=re.compile("^Approve refund order")).click()
    alert = desk.locator("#approval-error")
    await expect(alert).to_be_visible(timeout=10_000)
    await expect(alert).to_contain_text("The approval no longer waits")
    await expect(item).to_have_count(0, timeout=10_000)  # Ben's decision, live
    (granted,) = await served.events("c-race", "approval.granted")
    assert granted.payload["agent_id"] == "agent-ben"
    await context.close()

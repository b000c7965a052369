"""Chat to desk and back, in two real browsers: the customer and Ana."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from playwright.async_api import expect

from threadline.api.deps import service_of

DOCS = Path(__file__).resolve().parent.parent / "docs"


async def test_an_agent_takes_over_a_chat_with_the_bots_context(live_server, browser) -> None:
    customer = await browser.new_context(viewport={"width": 1280, "height": 800})
    agent = await browser.new_context(viewport={"width": 1280, "height": 800})
    chat_page = await customer.new_page()
    await chat_page.goto(f"{live_server.http}/chat")
    chat = chat_page.get_by_role("region", name="Chat with Northwind Devices")
    await expect(chat.get_by_role("status")).to_have_text("Online")
    await chat.get_by_label("Message").fill("Where is my order 1042?")
    await chat.get_by_label("Message").press("Enter")
    await expect(chat.locator(".tl-chat__msg--bot").first).to_contain_text("1042")
    await chat.get_by_label("Message").fill("I want to talk to a person")
    await chat.get_by_label("Message").press("Enter")
    await expect(chat.get_by_text("Connecting you with a person…")).to_be_visible()

    token = (
        service_of(live_server.app)
        .tokens.issue("agent-ana", ["agent"], timedelta(hours=1), {"queues": ["orders", "billing"]})
        .token
    )
    desk = await agent.new_page()
    await desk.goto(f"{live_server.http}/desk#token={token}")
    await expect(desk.locator("#me-name")).to_contain_text("Ana Ruiz")
    assert desk.url == f"{live_server.http}/desk"  # the token left the address bar
    await desk.get_by_label("Presence").select_option("available")
    accept = desk.get_by_role("button", name="Accept offer from queue orders")
    await expect(accept).to_be_visible(timeout=10_000)
    await accept.click()

    context = desk.get_by_role("complementary", name="Context")
    await expect(context).to_contain_text("order number")
    await expect(context).to_contain_text("1042 (from chat)")
    await expect(context).to_contain_text("customer_request")
    await expect(desk.locator("#timeline")).to_contain_text("Where is my order 1042?")

    await desk.get_by_label("Reply to the customer").fill("Hi, this is Ana. I can help.")
    await desk.get_by_role("button", name="Send reply").click()
    await expect(chat.locator(".tl-chat__msg--human")).to_contain_text("this is Ana")
    await expect(chat.get_by_text("An agent has joined the conversation.")).to_be_visible()
    DOCS.mkdir(exist_ok=True)
    await desk.screenshot(path=str(DOCS / "desk.png"))

    await desk.get_by_label("Outcome").select_option("replacement_arranged")
    await desk.get_by_role("button", name="Resolve").click()
    await expect(chat.get_by_text("This conversation is resolved.", exact=False)).to_be_visible()
    await customer.close()
    await agent.close()

"""The chat widget in real headless Chromium against the running service."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import expect

DOCS = Path(__file__).resolve().parent.parent / "docs"


async def test_a_customer_chats_with_the_bot_and_a_refresh_resumes(live_server, browser) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    await page.goto(f"{live_server.http}/chat")
    chat = page.get_by_role("region", name="Chat with Northwind Devices")
    await expect(chat.get_by_role("status")).to_have_text("Online")

    await chat.get_by_label("Message").fill("Where is my order 1042?")
    await chat.get_by_label("Message").press("Enter")
    bot = chat.locator(".tl-chat__msg--bot")
    await expect(bot.first).to_contain_text("1042")
    await expect(chat.locator(".tl-chat__msg--customer")).to_have_count(1)
    await expect(chat.locator(".tl-chat__msg--customer small")).to_have_text("Delivered")
    DOCS.mkdir(exist_ok=True)
    await page.screenshot(path=str(DOCS / "chat-widget.png"))
    replies = await bot.count()

    await page.reload()
    await expect(chat.get_by_role("status")).to_have_text("Online")
    await expect(chat.locator(".tl-chat__msg--customer")).to_have_count(1)
    await expect(chat.locator(".tl-chat__msg--bot")).to_have_count(replies)

    await chat.get_by_label("Message").fill("I'd like to talk to a person please")
    await chat.get_by_role("button", name="Send").click()
    await expect(chat.get_by_text("Connecting you with a person…")).to_be_visible()
    await expect(chat.locator(".tl-chat__msg--customer")).to_have_count(2)
    await context.close()


async def test_a_check_in_code_shows_as_a_qr_image_and_six_digits(live_server, browser) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    await page.goto(f"{live_server.http}/chat")
    chat = page.get_by_role("region", name="Chat with Northwind Devices")
    await expect(chat.get_by_role("status")).to_have_text("Online")
    await chat.get_by_label("Message").fill("Can I come to the Market Street store?")
    await chat.get_by_label("Message").press("Enter")
    qr = chat.get_by_role("img", name=re.compile(r"^QR code of check-in code \d{3} \d{3}$"))
    await expect(qr).to_be_visible()
    digits = (await qr.get_attribute("alt") or "").rsplit(" ", 2)[-2:]
    card = chat.locator(".tl-chat__checkin")
    await expect(card.locator(".tl-chat__code")).to_have_text(" ".join(digits))
    await expect(card).to_contain_text("Show this at the counter of Northwind Market Street")
    assert await qr.evaluate("img => img.complete && img.naturalWidth > 100")
    await context.close()


async def test_no_assistant_withdraws_ai_processing_and_a_person_takes_over(
    live_server, browser
) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    await page.goto(f"{live_server.http}/chat")
    chat = page.get_by_role("region", name="Chat with Northwind Devices")
    await expect(chat.get_by_role("status")).to_have_text("Online")
    await chat.get_by_label("Message").fill("Where is my order 1042?")
    await chat.get_by_label("Message").press("Enter")
    await expect(chat.locator(".tl-chat__msg--bot").first).to_contain_text("1042")
    await chat.get_by_role("button", name="No assistant, a person please").click()
    await expect(chat.get_by_text("Connecting you with a person…")).to_be_visible()
    await expect(chat.get_by_role("button", name="A person will take over")).to_be_disabled()
    await chat.get_by_label("Message").fill("When will it arrive?")
    await chat.get_by_label("Message").press("Enter")
    await expect(chat.locator(".tl-chat__msg--customer small").last).to_have_text("Delivered")
    await page.wait_for_timeout(500)  # the assistant would have answered by now
    await expect(chat.locator(".tl-chat__msg--bot")).to_have_count(2)  # no reply since
    await context.close()

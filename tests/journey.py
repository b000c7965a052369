"""What the journey test reads and does: the widget signed in, waiting on the log, and the
journey's milestones and questions read back from the conversation's events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

import httpx
import orjson
from playwright.async_api import expect

from tests.conftest import bearer
from threadline.api.deps import service_of
from threadline.channels.chat.client import ChatClient
from threadline.core.events import Event

#: What a message that asks the customer for each slot says.
ASKS: Final = {
    "order_number": ("order number",),
    "postcode": ("postcode",),
    "store": ("which store",),
}

#: The journey's milestones: a label and the events that mark it.
MILESTONES: Final[tuple[tuple[str, Callable[[Event], bool]], ...]] = (
    ("chat: order problem",
     lambda e: e.type == "message.received" and e.channel == "chat"
     and "1042" in e.payload["text"]),
    ("chat: order number filled",
     lambda e: e.type == "slot.filled" and e.payload["name"] == "order_number"
     and e.channel == "chat"),
    ("chat: check-in code sent",
     lambda e: e.type == "message.sent" and e.channel == "chat" and bool(e.payload["checkin"])),
    ("voice: call answered", lambda e: e.type == "leg.started" and e.channel == "voice"),
    ("voice: postcode filled",
     lambda e: e.type == "slot.filled" and e.payload["name"] == "postcode"
     and e.channel == "voice"),
    ("voice: verified by postcode",
     lambda e: e.type == "identity.linked" and e.payload["verified"]
     and e.payload["method"] == "postcode" and e.channel == "voice"),
    ("voice: handed to a person", lambda e: e.type == "handoff.requested" and e.channel == "voice"),
    ("voice: Ana accepted",
     lambda e: e.type == "handoff.accepted" and e.payload["agent_id"] == "agent-ana"),
    ("in_person: checked in", lambda e: e.type == "leg.started" and e.channel == "in_person"),
    ("in_person: resolved", lambda e: e.type == "conversation.resolved"),
)  # fmt: skip


async def chat_as(browser: Any, server: Any, customer_id: str) -> tuple[Any, Any]:
    """The chat widget with the session the shop's site hands a signed-in customer."""
    token = bearer(server.app, customer_id, "customer", customer=customer_id)
    session = orjson.dumps({"token": token["Authorization"].removeprefix("Bearer ")}).decode()
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    stored = orjson.dumps(session).decode()  # a JS string literal of the JSON
    await context.add_init_script(
        "const key = 'threadline.chat.' + location.origin;"
        f"if (!localStorage.getItem(key)) localStorage.setItem(key, {stored});"
    )
    page = await context.new_page()
    await page.goto(f"{server.http}/chat")
    chat = page.get_by_role("region", name="Chat with Northwind Devices")
    await expect(chat.get_by_role("status")).to_have_text("Online")
    return context, chat


async def anonymous_chat(browser: Any, server: Any) -> tuple[Any, Any]:
    """The chat widget as a new visitor opens it: no session, nobody known yet."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    await page.goto(f"{server.http}/chat")
    chat = page.get_by_role("region", name="Chat with Northwind Devices")
    await expect(chat.get_by_role("status")).to_have_text("Online")
    return context, chat


async def chat_says(chat: Any, text: str, reply_has: str) -> None:
    """Type ``text`` in the widget and wait for the bot's reply saying ``reply_has``."""
    await chat.get_by_label("Message").fill(text)
    await chat.get_by_label("Message").press("Enter")
    await expect(chat.locator(".tl-chat__msg--bot").last).to_contain_text(reply_has)


async def conversation_on(page: Any) -> str:
    """The conversation the widget on ``page`` is on."""
    found = await page.evaluate(
        "JSON.parse(localStorage.getItem('threadline.chat.' + location.origin)).conversationId"
    )
    assert isinstance(found, str), found
    return found


async def wait_for_event(
    server: Any, cid: str, matches: Callable[[Event], bool], timeout: float = 10.0
) -> Event:
    """The first event of the conversation that ``matches``, once it is recorded."""
    conversations = service_of(server.app).conversations
    async with asyncio.timeout(timeout):
        while True:
            for event in await conversations.timeline(cid):
                if matches(event):
                    return event
            await asyncio.sleep(0.05)


def milestones(timeline: list[Event]) -> list[str]:
    """The milestones the timeline reached, in the order it first reached each."""
    reached = []
    for label, marks in MILESTONES:
        seq = next((e.seq for e in timeline if marks(e)), None)
        if seq is not None:
            reached.append((seq, label))
    return [label for _, label in sorted(reached)]


def asked_after_answer(timeline: list[Event]) -> list[tuple[str, str]]:
    """Each message to the customer that asks for a slot they had already given."""
    answered: set[str] = set()
    repeats = []
    for event in timeline:
        if event.type == "slot.filled":
            answered.add(str(event.payload["name"]))
        elif event.type == "message.sent":
            text = str(event.payload["text"]).lower()
            for slot in answered:
                if any(phrase in text for phrase in ASKS.get(slot, ())):
                    repeats.append((slot, str(event.payload["text"])))
    return repeats


async def visitor_says(server: Any, *texts: str) -> tuple[str, list[str]]:
    """A new anonymous chat visitor says ``texts`` over the chat protocol; the conversation
    and the bot's reply to each."""
    async with httpx.AsyncClient() as http:
        token = (await http.post(f"{server.http}/chat/session")).json()["token"]
    replies = []
    async with ChatClient.connect(f"{server.ws}/chat/ws", token=token) as chat:
        for text in texts:
            seq = await chat.say(text)
            reply = await chat.wait_for(lambda e, s=seq: e["event"] == "message.sent"
                                        and e["seq"] > s)  # fmt: skip
            replies.append(str(reply["text"]))
        return chat.conversation_id, replies

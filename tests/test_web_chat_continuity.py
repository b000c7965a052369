"""The chat widget continues the customer's conversation, in real headless Chromium.

An anonymous visitor who proves who she is joins her open conversation from an earlier
call: the widget switches to it and shows the call's turns above what she typed. A host
page that signs its visitor in (``Threadline.identify``) spares her the postcode.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.async_api import expect

from tests.conftest import LiveServer
from tests.journey import anonymous_chat, chat_says, conversation_on, wait_for_event
from tests.test_identity_oidc import AUDIENCE, ISSUER, IdentityProvider
from threadline.api.app import create_app
from threadline.api.deps import service_of
from threadline.core.events import Actor, Event
from threadline.settings import Settings

MAYA = Actor("customer", "cus-maya")
BOT = Actor("bot", "northwind-bot")
GATEWAY = Actor("system", "voice-gateway")


@pytest.fixture(scope="module")
def provider() -> Iterator[IdentityProvider]:
    idp = IdentityProvider()
    yield idp
    idp.close()


@pytest.fixture
async def server(tmp_path: Any, provider: IdentityProvider) -> Any:
    settings = Settings(store=f"sqlite:///{tmp_path / 'live.db'}", oidc_issuer=ISSUER,
                        oidc_audience=AUDIENCE, oidc_jwks_url=provider.url)  # fmt: skip
    async with LiveServer(create_app(settings)) as live:
        yield live


async def maya_called_earlier(server: Any, cid: str) -> None:
    """Maya's call about order 1042, an hour's worth of turns, then she hung up."""

    def event(type_: str, payload: dict[str, Any], actor: Actor, key: str) -> Event:
        return Event(cid, type_, payload, channel="voice", leg_id="call-1", actor=actor,
                     customer_id="cus-maya", idempotency_key=f"{cid}-{key}")  # fmt: skip

    await service_of(server.app).conversations.record(cid, [
        event("conversation.started", {"origin": "voice"}, MAYA, "start"),
        event("leg.started", {"leg_id": "call-1", "channel": "voice",
                              "address": "+14155550123"}, GATEWAY, "leg"),
        event("utterance.transcribed", {"text": "My order 1042 hasn't arrived.",
                                        "confidence": 0.9, "start_ms": 0, "end_ms": 1500},
              MAYA, "said"),
        event("message.sent", {"text": "I'm sorry to hear that. I'll look into order 1042."},
              BOT, "answer"),
        event("leg.ended", {"leg_id": "call-1", "reason": "completed"}, GATEWAY, "end"),
    ])  # fmt: skip


async def test_a_visitor_who_proves_who_she_is_continues_her_earlier_call(
    server: Any, browser: Any
) -> None:
    await maya_called_earlier(server, "conv-call")
    context, chat = await anonymous_chat(browser, server)
    page = chat.page
    first = await conversation_on(page)
    assert first != "conv-call"
    await chat_says(chat, "Where is my order 1042?", "postcode")
    await chat_says(chat, "94103", "carrier")

    # The chat goes on in the call's conversation, the call's turns shown first.
    await expect(chat.locator(".tl-chat__msg").first).to_contain_text(
        "My order 1042 hasn't arrived.", timeout=10_000
    )
    assert await conversation_on(page) == "conv-call"
    await expect(chat.locator(".tl-chat__msg").first).to_contain_text("On the phone")
    await expect(chat.get_by_text("Where is my order 1042?")).to_have_count(1)
    await expect(chat.get_by_role("status")).to_have_text("Online")
    await chat.get_by_label("Message").fill("Thanks, and when will the replacement come?")
    await chat.get_by_label("Message").press("Enter")
    said = await wait_for_event(server, "conv-call", lambda e: e.type == "message.received"
                                and e.channel == "chat")  # fmt: skip
    assert said.payload["text"] == "Thanks, and when will the replacement come?"

    await page.reload()  # a refresh stays on the conversation it continued
    await expect(chat.get_by_role("status")).to_have_text("Online")
    assert await conversation_on(page) == "conv-call"
    await expect(chat.get_by_text("My order 1042 hasn't arrived.")).to_be_visible()
    resolved = await wait_for_event(server, first, lambda e: e.type == "conversation.resolved")
    assert resolved.payload["continued_in"] == "conv-call"
    await context.close()


async def test_a_visitor_signed_in_by_the_host_page_is_not_asked_for_the_postcode(
    server: Any, browser: Any, provider: IdentityProvider
) -> None:
    context, chat = await anonymous_chat(browser, server)
    page = chat.page
    nonce = await page.evaluate("Threadline.nonce()")
    token = provider.token(nonce=nonce, sub="maya-at-idp")
    signed = await page.evaluate("token => Threadline.identify(token)", token)
    assert (signed["customer_id"], signed["level"]) == ("cus-maya", "idp")
    await expect(chat.get_by_role("status")).to_have_text("Online")
    await chat_says(chat, "Where is my order 1042?", "carrier")
    assert "postcode" not in (await chat.locator(".tl-chat__msg--bot").last.inner_text())
    cid = await conversation_on(page)
    linked = await wait_for_event(server, cid, lambda e: e.type == "identity.linked")
    assert (linked.payload["method"], linked.payload["level"]) == ("oidc", "idp")
    refused = await page.evaluate(
        "Threadline.identify('not.a.token').then(() => 'accepted', e => e.message)"
    )
    assert refused != "accepted"
    await context.close()


async def test_a_chat_client_back_on_the_chat_it_left_is_taken_where_it_went_on(
    server: Any,
) -> None:
    import httpx

    from threadline.channels.chat.client import ChatClient

    await maya_called_earlier(server, "conv-call")
    async with httpx.AsyncClient() as http:
        token = (await http.post(f"{server.http}/chat/session")).json()["token"]
    async with ChatClient.connect(f"{server.ws}/chat/ws", token=token) as chat:
        first = chat.conversation_id
        for text in ("Where is my order 1042?", "94103"):
            await chat.say(text)
            await chat.wait_for(lambda e: e["event"] == "message.sent", timeout=20)
        moved = await chat.wait_for(lambda e: e["event"] == "conversation.resolved", timeout=10)
        assert moved["continued_in"] == "conv-call" and moved["outcome"] == "continued"
    # Back with the chat it left and how far it had read there: the conversation it went on
    # in, from its start (that seq meant nothing there).
    async with ChatClient.connect(f"{server.ws}/chat/ws", conversation_id=first,
                                  after_seq=moved["seq"], token=token) as back:  # fmt: skip
        assert back.conversation_id == "conv-call"
        said = await back.wait_for(lambda e: e.get("text") == "My order 1042 hasn't arrived.")
        assert said["seq"] < moved["seq"] and said["channel"] == "voice"
    state = await service_of(server.app).conversations.rehydrate(first)
    assert state.status == "resolved"  # not reopened by the return

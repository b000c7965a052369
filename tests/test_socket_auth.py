"""Sockets take their bearer token as a subprotocol, never in the URL (security hole 8).

A browser cannot set headers on a WebSocket; it offers ``threadline`` and
``threadline.bearer.<token>``, and the server accepts ``threadline``. A token in
the query string (``?token=``), where proxies and access logs keep it, is
refused on every socket: one error frame saying to use the subprotocol, then
1008, and nothing streamed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
import websockets
from playwright.async_api import expect

from tests.conftest import TOKEN_SECRET, LiveServer
from threadline.api.access_log import LOGGERS
from threadline.api.app import create_app
from threadline.api.auth import SUBPROTOCOL, bearer_subprotocols
from threadline.api.deps import service_of
from threadline.core.events import Actor, Event
from threadline.settings import Settings

HOUR = timedelta(hours=1)
MAYA = Actor("customer", "cus-maya")
#: RFC 7230 ``token``: what a subprotocol (and so a bearer token offered as one) may hold.
TCHAR = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def token(server: LiveServer, subject: str, scope: str, **claims: object) -> str:
    return str(service_of(server.app).tokens.issue(subject, [scope], HOUR, claims).token)


async def conversation(server: LiveServer, cid: str = "conv-1") -> str:
    """Maya's chat, with events a stream would send."""
    await service_of(server.app).conversations.record(cid, [
        Event(cid, "conversation.started", {"origin": "chat"}, channel="chat", actor=MAYA,
              customer_id="cus-maya", idempotency_key=f"{cid}-start"),
        Event(cid, "message.received", {"text": "hello"}, channel="chat", actor=MAYA,
              customer_id="cus-maya", idempotency_key=f"{cid}-said"),
    ])  # fmt: skip
    return cid


# Each socket: its path, a token it admits, and whether the client speaks first (chat's hello).
Endpoint = tuple[str, Callable[[LiveServer], str], bool]
ENDPOINTS: dict[str, Endpoint] = {
    "conversation": ("/conversations/conv-1/stream?after_seq=0",
                     lambda s: token(s, "sup-sam", "supervisor"), False),
    "agent": ("/agents/me/stream",
              lambda s: token(s, "agent-ana", "agent", queues=["orders", "billing"]), False),
    "store-queue": ("/stores/sf-market/queue/stream",
                    lambda s: token(s, "assoc-priya", "associate", store="sf-market"), False),
    "chat": ("/chat/ws", lambda s: token(s, "cus-maya", "customer", customer="cus-maya"), True),
}  # fmt: skip


def with_query_token(path: str, value: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}token={value}"


async def frames_until_closed(ws: Any, speaks_first: bool) -> list[dict[str, Any]]:
    """Every frame the server sends before it closes the socket."""
    if speaks_first:
        with contextlib.suppress(websockets.ConnectionClosed):  # a refused socket may be closed
            await ws.send(json.dumps({"type": "hello"}))
    frames = []
    async with asyncio.timeout(10):
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                frames.append(json.loads(await ws.recv()))
    return frames


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_a_token_in_the_query_string_is_refused_and_nothing_is_streamed(
    live_server, endpoint: str
) -> None:
    path, admitted, speaks_first = ENDPOINTS[endpoint]
    await conversation(live_server)
    valid = admitted(live_server)
    async with websockets.connect(live_server.ws + with_query_token(path, valid)) as ws:
        frames = await frames_until_closed(ws, speaks_first)
    assert ws.close_code == 1008
    [frame] = frames  # the refusal, and nothing else: no event, snapshot, queue or welcome
    assert frame["type"] == "error" and frame["code"] == "unauthenticated"
    assert "threadline.bearer." in frame["detail"] and valid not in frame["detail"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_a_query_token_is_refused_even_beside_a_subprotocol_token(
    live_server, endpoint: str
) -> None:
    path, admitted, speaks_first = ENDPOINTS[endpoint]
    valid = admitted(live_server)
    url = live_server.ws + with_query_token(path, valid)
    async with websockets.connect(url, subprotocols=bearer_subprotocols(valid)) as ws:
        frames = await frames_until_closed(ws, speaks_first)
    assert ws.close_code == 1008 and [f["type"] for f in frames] == ["error"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_a_subprotocol_token_is_accepted_as_threadline(live_server, endpoint: str) -> None:
    path, admitted, speaks_first = ENDPOINTS[endpoint]
    await conversation(live_server)
    valid = admitted(live_server)
    async with websockets.connect(live_server.ws + path,
                                  subprotocols=bearer_subprotocols(valid)) as ws:  # fmt: skip
        if speaks_first:
            await ws.send(json.dumps({"type": "hello"}))
        async with asyncio.timeout(10):
            first = json.loads(await ws.recv())
    assert ws.subprotocol == SUBPROTOCOL
    assert ws.response.headers["Sec-WebSocket-Protocol"] == SUBPROTOCOL  # the token not echoed
    assert first["type"] in {"message.received", "conversation.started", "snapshot", "queue",
                             "welcome"}  # fmt: skip


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_an_authorization_header_is_still_accepted_from_other_clients(
    live_server, endpoint: str
) -> None:
    path, admitted, speaks_first = ENDPOINTS[endpoint]
    await conversation(live_server)
    auth = {"Authorization": f"Bearer {admitted(live_server)}"}
    async with websockets.connect(live_server.ws + path, additional_headers=auth) as ws:
        if speaks_first:
            await ws.send(json.dumps({"type": "hello"}))
        async with asyncio.timeout(10):
            first = json.loads(await ws.recv())
    assert ws.subprotocol is None and first["type"] != "error"


async def test_a_token_offered_twice_is_refused(live_server) -> None:
    await conversation(live_server)
    valid = token(live_server, "sup-sam", "supervisor")
    url = f"{live_server.ws}/conversations/conv-1/stream"
    both = {"subprotocols": bearer_subprotocols(valid),
            "additional_headers": {"Authorization": f"Bearer {valid}"}}  # fmt: skip
    async with websockets.connect(url, **both) as ws:
        frames = await frames_until_closed(ws, speaks_first=False)
    assert ws.close_code == 1008 and frames[0]["code"] == "unauthenticated"
    assert "one token" in frames[0]["detail"]


async def test_every_kind_of_token_is_a_valid_subprotocol(live_server) -> None:
    """JWTs are base64url and dots: RFC 7230 token characters, offered as they are."""
    tokens = [admitted(live_server) for _, admitted, _ in ENDPOINTS.values()]
    async with httpx.AsyncClient() as http:
        tokens.append((await http.post(f"{live_server.http}/chat/session")).json()["token"])
    tokens.append(token(live_server, "kiosk-sf", "kiosk", store="sf-market"))
    assert all(TCHAR.fullmatch(t) for t in tokens)


# -- the access log of a real browser session ------------------------------------------------


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_a_desk_session_in_chromium_leaves_no_token_in_the_access_log(
    tmp_path, browser
) -> None:
    settings = Settings(store=f"sqlite:///{tmp_path / 'log.db'}", token_secret=TOKEN_SECRET)
    server = LiveServer(create_app(settings), log_level="info")
    kept = Kept()
    for name in LOGGERS:
        logging.getLogger(name).addHandler(kept)
    sockets: list[str] = []
    try:
        async with server:
            context = await browser.new_context(viewport={"width": 1280, "height": 800})
            chat_page = await context.new_page()
            chat_page.on("websocket", lambda ws: sockets.append(ws.url))
            await chat_page.goto(f"{server.http}/chat")
            chat = chat_page.get_by_role("region", name="Chat with Northwind Devices")
            await expect(chat.get_by_role("status")).to_have_text("Online")
            await chat.get_by_label("Message").fill("I want to talk to a person")
            await chat.get_by_label("Message").press("Enter")
            await expect(chat.get_by_text("Connecting you with a person…")).to_be_visible()

            ana = token(server, "agent-ana", "agent", queues=["orders", "billing"])
            desk = await context.new_page()
            desk.on("websocket", lambda ws: sockets.append(ws.url))
            await desk.goto(f"{server.http}/desk#token={ana}")
            await expect(desk.locator("#connection")).to_have_text("Live")
            await desk.get_by_label("Presence").select_option("available")
            accept = desk.get_by_role("button", name="Accept offer from queue orders")
            await expect(accept).to_be_visible(timeout=10_000)
            await accept.click()
            await expect(desk.locator("#timeline")).to_contain_text("talk to a person")
            await context.close()
    finally:
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(kept)
    logged = "\n".join(kept.lines)
    paths = ("/chat/ws", "/agents/me/stream", "/conversations/")
    assert all(p in logged for p in paths)  # the sockets were logged
    assert all(any(p in url for url in sockets) for p in paths)  # and opened by the pages
    assert "token=" not in logged and ana not in logged and "eyJ" not in logged
    assert not any("token" in url or "eyJ" in url for url in sockets)

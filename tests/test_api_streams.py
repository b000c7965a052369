"""Live conversation streams resume from a seq with nothing lost or repeated."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import httpx
import websockets

from threadline.api.auth import bearer_subprotocols
from threadline.api.deps import service_of

MAYA = {"kind": "customer", "id": "cus-maya"}
HOUR = timedelta(hours=1)


def token(server, subject: str, scope: str, **claims: object) -> str:
    issued = service_of(server.app).tokens.issue(subject, [scope], HOUR, claims)
    return str(issued.token)


def maya(server) -> str:
    return token(server, "maya", "customer", customer="cus-maya")


def sam(server) -> str:
    """A supervisor: every event of the conversation, internal ones included."""
    return token(server, "sup-sam", "supervisor")


async def append(server, key: str, event: dict) -> None:
    """Appended by the chat adapter, as the web chat would."""
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.post(
            "/conversations/conv-1/events",
            json={"events": [event]},
            headers={
                "Idempotency-Key": key,
                "Authorization": f"Bearer {token(server, 'web-chat', 'adapter:chat')}",
            },
        )
    assert response.status_code == 201, response.text


def started() -> dict:
    return {"type": "conversation.started", "payload": {"origin": "chat"}, "channel": "chat",
            "actor": MAYA, "customer_id": "cus-maya"}  # fmt: skip


def said(text: str) -> dict:
    return {"type": "message.received", "payload": {"text": text}, "channel": "chat",
            "actor": MAYA, "customer_id": "cus-maya"}  # fmt: skip


async def until_text(ws, text: str) -> list[dict]:
    """Frames up to and including the event whose payload says ``text`` (the bot answers too)."""
    frames = []
    async with asyncio.timeout(10):
        while True:
            frames.append(json.loads(await ws.recv()))
            if frames[-1]["payload"].get("text") == text:
                return frames


async def test_a_stream_sends_the_backlog_then_live_events(live_server) -> None:
    await append(live_server, "a", started())
    await append(live_server, "b", said("hello"))
    url = f"{live_server.ws}/conversations/conv-1/stream?after_seq=0"
    async with websockets.connect(url, subprotocols=bearer_subprotocols(sam(live_server))) as ws:
        backlog = await until_text(ws, "hello")
        assert [e["seq"] for e in backlog] == [1, 2]
        await append(live_server, "c", said("anyone there?"))
        live = await until_text(ws, "anyone there?")
    assert [e["seq"] for e in backlog + live] == list(range(1, len(live) + 3))


async def test_a_customer_streams_what_was_said_and_nothing_inside(live_server) -> None:
    await append(live_server, "a", started())
    await append(live_server, "b", said("where is my order 1042?"))
    url = f"{live_server.ws}/conversations/conv-1/stream?after_seq=0"
    async with websockets.connect(url, subprotocols=bearer_subprotocols(maya(live_server))) as ws:
        frames = await until_text(ws, "where is my order 1042?")
        async with asyncio.timeout(10):  # the bot's answer, past its intent and tool call
            while frames[-1]["type"] != "message.sent":
                frames.append(json.loads(await ws.recv()))
    assert [f["type"] for f in frames] == ["message.received", "message.sent"]
    assert all(f["lineage"] == {} for f in frames)
    assert set(frames[1]["payload"]) <= {"text", "in_reply_to"}


async def test_a_reconnect_resumes_after_the_last_seq_seen(live_server) -> None:
    await append(live_server, "a", started())
    auth = {"Authorization": f"Bearer {sam(live_server)}"}
    url = f"{live_server.ws}/conversations/conv-1/stream"
    async with websockets.connect(url, additional_headers=auth) as ws:
        assert json.loads(await ws.recv())["seq"] == 1
    await append(live_server, "b", said("while I was away"))
    await append(live_server, "c", said("still there?"))
    url = f"{live_server.ws}/conversations/conv-1/stream?after_seq=1"
    async with websockets.connect(url, additional_headers=auth) as ws:
        got = await until_text(ws, "still there?")
        await append(live_server, "d", said("great"))
        got += await until_text(ws, "great")
    assert [e["seq"] for e in got] == list(range(2, len(got) + 2))

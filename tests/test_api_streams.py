"""Live conversation streams resume from a seq with nothing lost or repeated."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from threadline.api.app import create_app
from threadline.settings import Settings

MAYA = {"kind": "customer", "id": "cus-maya"}


@pytest.fixture
def client(tmp_path):
    app = create_app(Settings(store=f"sqlite:///{tmp_path / 'live.db'}"))
    with TestClient(app) as c:
        yield c


def append(client: TestClient, key: str, event: dict) -> None:
    response = client.post(
        "/conversations/conv-1/events", json={"events": [event]}, headers={"Idempotency-Key": key}
    )
    assert response.status_code == 201, response.text


def said(text: str) -> dict:
    return {"type": "message.received", "payload": {"text": text}, "channel": "chat",
            "actor": MAYA}  # fmt: skip


def until_text(ws, text: str) -> list[dict]:
    """Frames up to and including the event whose payload says ``text`` (the bot answers too)."""
    frames = []
    while True:
        frames.append(json.loads(ws.receive_text()))
        if frames[-1]["payload"].get("text") == text:
            return frames


def test_a_stream_sends_the_backlog_then_live_events(client) -> None:
    append(client, "a", {"type": "conversation.started", "payload": {"origin": "chat"},
                         "channel": "chat", "actor": MAYA})  # fmt: skip
    append(client, "b", said("hello"))
    with client.websocket_connect("/conversations/conv-1/stream?after_seq=0") as ws:
        backlog = until_text(ws, "hello")
        assert [e["seq"] for e in backlog] == [1, 2]
        append(client, "c", said("anyone there?"))
        live = until_text(ws, "anyone there?")
        assert [e["seq"] for e in backlog + live] == list(range(1, len(live) + 3))


def test_a_reconnect_resumes_after_the_last_seq_seen(client) -> None:
    append(client, "a", {"type": "conversation.started", "payload": {"origin": "chat"},
                         "channel": "chat", "actor": MAYA})  # fmt: skip
    with client.websocket_connect("/conversations/conv-1/stream") as ws:
        assert json.loads(ws.receive_text())["seq"] == 1
    append(client, "b", said("while I was away"))
    append(client, "c", said("still there?"))
    with client.websocket_connect("/conversations/conv-1/stream?after_seq=1") as ws:
        got = until_text(ws, "still there?")
        append(client, "d", said("great"))
        got += until_text(ws, "great")
        assert [e["seq"] for e in got] == list(range(2, len(got) + 2))

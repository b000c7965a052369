"""The desk's work stream over a real server, on both stores: snapshot, live, resume, refusals."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
import websockets
from fastapi import FastAPI

from tests.conftest import TOKEN_SECRET, LiveServer
from threadline.api.app import create_app
from threadline.api.auth import bearer_subprotocols
from threadline.api.deps import service_of
from threadline.core.events import Actor, Event, utcnow
from threadline.security import TokenIssuer, revoke
from threadline.settings import Settings

HOUR = timedelta(hours=1)
MAYA = Actor("customer", "cus-maya")
Frame = dict[str, Any]


@dataclass
class Service:
    server: LiveServer

    @property
    def app(self) -> FastAPI:
        return self.server.app

    def token(self, subject: str, scope: str, ttl: timedelta = HOUR, **claims: object) -> str:
        return str(service_of(self.app).tokens.issue(subject, [scope], ttl, claims).token)

    def ana(self, **kwargs: Any) -> str:
        return self.token("agent-ana", "agent", queues=["orders", "billing"], **kwargs)

    def stream(self, token: str, agent: str = "me", after: int | str | None = None) -> Any:
        """Opens the work stream of ``agent`` as ``token``, as the desk does."""
        query = f"?after={after}" if after is not None else ""
        url = f"{self.server.ws}/agents/{agent}/stream{query}"
        return websockets.connect(url, subprotocols=bearer_subprotocols(token))

    async def call(self, method: str, path: str, token: str, body: Any = None) -> Any:
        async with httpx.AsyncClient(base_url=self.server.http) as http:
            response = await http.request(method, path, json=body,
                                          headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert response.status_code == 200, response.text
        return response.json()

    async def asks_for_a_person(self, cid: str) -> None:
        """Maya opens a chat and asks for a person; the bot hands off to the orders queue."""
        events = [
            Event(cid, "conversation.started", {"origin": "chat"}, channel="chat", actor=MAYA,
                  customer_id="cus-maya", idempotency_key=f"{cid}-start"),
            Event(cid, "leg.started", {"leg_id": f"{cid}-chat", "channel": "chat"},
                  channel="chat", leg_id=f"{cid}-chat", actor=MAYA, customer_id="cus-maya",
                  idempotency_key=f"{cid}-leg"),
            Event(cid, "message.received", {"text": "My order 1042 is late"}, channel="chat",
                  actor=MAYA, customer_id="cus-maya", idempotency_key=f"{cid}-late"),
            Event(cid, "message.received", {"text": "I want to talk to a person"},
                  channel="chat", actor=MAYA, customer_id="cus-maya",
                  idempotency_key=f"{cid}-ask"),
        ]  # fmt: skip
        for event in events:
            await service_of(self.app).conversations.record(cid, [event])


@pytest.fixture
async def service(any_store) -> AsyncIterator[Service]:
    app = create_app(Settings(token_secret=TOKEN_SECRET), store=any_store)
    async with LiveServer(app) as server:
        yield Service(server)


async def until(ws, done: Callable[[Frame], bool], timeout: float = 10) -> list[Frame]:
    """Frames up to and including the first that ``done`` accepts."""
    frames: list[Frame] = []
    async with asyncio.timeout(timeout):
        while True:
            frames.append(json.loads(await ws.recv()))
            if done(frames[-1]):
                return frames


def of_type(type_: str, **fields: Any) -> Callable[[Frame], bool]:
    return lambda f: f["type"] == type_ and all(f.get(k) == v for k, v in fields.items())


async def refusal(connecting: Any) -> tuple[Frame, int | None]:
    async with connecting as ws:
        async with asyncio.timeout(10):
            frame = json.loads(await ws.recv())
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
        return frame, ws.close_code


#: Details read from the conversation when a frame is sent, not when its event happened.
AS_SENT = ("conversation", "packet")


def work(frames: list[Frame]) -> list[Frame]:
    """The frames but heartbeats, without the details that depend on when they were sent."""
    return [{k: v for k, v in f.items() if k not in AS_SENT} for f in frames
            if f["type"] != "heartbeat"]  # fmt: skip


# -- snapshot and live -------------------------------------------------------------------


async def test_a_desk_gets_a_snapshot_then_its_offer_live_with_the_reason_and_packet(
    service: Service,
) -> None:
    ana = service.ana()
    async with service.stream(ana) as ws:
        (snapshot,) = await until(ws, of_type("snapshot"))
        assert snapshot["offers"] == [] and snapshot["conversations"] == []
        assert snapshot["queues"] == {"billing": 0, "orders": 0}
        assert snapshot["agent"] == {"id": "agent-ana", "queues": ["billing", "orders"],
                                     "presence": "offline"}  # fmt: skip
        await service.call("PUT", "/agents/me/presence", ana, {"presence": "available"})
        await service.asks_for_a_person("conv-live")
        frames = await until(ws, of_type("handoff.offered"))
    assert [f["type"] for f in frames] == ["presence.changed", "queue.changed", "handoff.offered"]
    assert frames[0]["presence"] == "available"
    assert frames[1]["queues"] == {"orders": 1}
    offer = frames[-1]
    assert offer["conversation_id"] == "conv-live" and offer["queue"] == "orders"
    assert offer["agent_id"] == "agent-ana" and offer["expires_at"]
    assert offer["reason"] == "customer_request"
    packet = offer["packet"]
    assert packet["customer_id"] == "cus-maya" and packet["channels"] == ["chat"]
    assert {"name": "order_number", "value": "1042", "channel": "chat"} in packet["slots"]
    assert packet["summary"]
    cursors = [snapshot["cursor"]] + [f["cursor"] for f in frames]
    assert cursors == sorted(set(cursors))


async def test_accepting_replying_and_resolving_come_back_as_changes(service: Service) -> None:
    ana = service.ana()
    await service.call("PUT", "/agents/me/presence", ana, {"presence": "available"})
    async with service.stream(ana) as ws:
        await until(ws, of_type("snapshot"))
        await service.asks_for_a_person("conv-work")
        offer = (await until(ws, of_type("handoff.offered")))[-1]
        await service.call("POST", "/conversations/conv-work/accept", ana,
                           {"offer_id": offer["offer_id"]})  # fmt: skip
        accepted = (await until(ws, of_type("offer.accepted")))[-1]
        assert accepted["held"] is True and accepted["status"] == "with_human"
        assert accepted["conversation"]["status"] == "with_human"
        assert accepted["queues"] == {"orders": 0}
        await service.call("POST", "/conversations/conv-work/reply", ana, {"text": "Ana here."})
        replied = await until(ws, of_type("conversation.changed", event="message.sent"))
        assert replied[-1]["preview"] == "Ana here." and replied[-1]["held"] is True
        await service.call("POST", "/conversations/conv-work/resolve", ana, {"outcome": "answered"})
        resolved = (await until(ws, lambda f: f.get("event") == "conversation.resolved"))[-1]
    assert resolved["type"] == "conversation.changed"
    assert resolved["held"] is False and resolved["status"] == "resolved"
    async with service.stream(ana) as ws:
        (snapshot,) = await until(ws, of_type("snapshot"))
    assert snapshot["conversations"] == [] and snapshot["offers"] == []


async def test_a_snapshot_lists_open_offers_and_held_conversations(service: Service) -> None:
    ana = service.ana()
    await service.call("PUT", "/agents/me/presence", ana, {"presence": "available"})
    async with service.stream(ana) as ws:
        await until(ws, of_type("snapshot"))
        await service.asks_for_a_person("conv-held")
        offer = (await until(ws, of_type("handoff.offered")))[-1]
        await service.call("POST", "/conversations/conv-held/accept", ana,
                           {"offer_id": offer["offer_id"]})  # fmt: skip
        await until(ws, of_type("offer.accepted"))
    async with service.stream(ana) as ws:
        (snapshot,) = await until(ws, of_type("snapshot"))
    (card,) = snapshot["conversations"]
    assert card["conversation_id"] == "conv-held" and card["status"] == "with_human"
    assert card["customer_id"] == "cus-maya" and card["channels"] == ["chat"]
    sam = service.token("sup-sam", "supervisor")
    async with service.stream(sam, agent="agent-ana") as ws:
        (watched,) = await until(ws, of_type("snapshot"))
    assert watched["agent"]["id"] == "agent-ana"
    assert [c["conversation_id"] for c in watched["conversations"]] == ["conv-held"]


# -- resuming ---------------------------------------------------------------------------


async def test_a_reconnect_after_the_last_cursor_loses_and_repeats_nothing(
    service: Service,
) -> None:
    ana = service.ana()
    async with service.stream(ana) as watcher:
        # A second desk stays connected throughout: what the resumed one must match.
        await until(watcher, of_type("snapshot"))
        async with service.stream(ana) as ws:
            seen = await until(ws, of_type("snapshot"))
            await service.call("PUT", "/agents/me/presence", ana, {"presence": "available"})
            await service.asks_for_a_person("conv-a")
            seen += await until(ws, of_type("handoff.offered"))
        last = seen[-1]["cursor"]
        # While the desk is away: an accept, a reply, another handoff.
        await service.call("POST", "/conversations/conv-a/accept", ana,
                           {"offer_id": seen[-1]["offer_id"]})  # fmt: skip
        await service.call("POST", "/conversations/conv-a/reply", ana, {"text": "one moment"})
        await service.asks_for_a_person("conv-b")
        # The router offers conv-b when it hears of it: wait, so the order below is known.
        everything = await until(watcher, of_type("handoff.offered", conversation_id="conv-b"))
        await service.call("POST", "/conversations/conv-a/reply", ana, {"text": "done"})
        everything += await until(watcher, of_type("conversation.changed", preview="done"))
        async with service.stream(ana, after=last) as ws:
            resumed = await until(ws, of_type("conversation.changed", preview="done"))
            # And it carries on live.
            await service.call("POST", "/conversations/conv-a/reply", ana, {"text": "live"})
            resumed += await until(ws, of_type("conversation.changed", preview="live"))
        everything += await until(watcher, of_type("conversation.changed", preview="live"))
    missed = [f for f in work(everything) if f["cursor"] > last]
    assert work(resumed) == missed
    types = [f["type"] for f in resumed]
    assert types[:2] == ["offer.accepted", "conversation.changed"] and "handoff.offered" in types
    assert resumed[0]["conversation"]["conversation_id"] == "conv-a"
    assert "snapshot" not in [f["type"] for f in resumed]
    cursors = [f["cursor"] for f in seen + resumed]
    assert cursors == sorted(set(cursors))


async def test_a_cursor_from_another_log_gets_a_fresh_snapshot(service: Service) -> None:
    async with service.stream(service.ana(), after=10**12) as ws:
        (frame,) = await until(ws, lambda f: True)
    assert frame["type"] == "snapshot" and frame["cursor"] < 10**12


async def test_a_quiet_desk_gets_heartbeats_with_the_cursor_to_resume_from(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    from threadline.api import agent_stream

    monkeypatch.setattr(agent_stream, "HEARTBEAT", 0.2)
    ben = service.token("agent-ben", "agent", queues=["repairs"])
    async with service.stream(ben) as ws:
        (snapshot,) = await until(ws, of_type("snapshot"))
        await service.asks_for_a_person("conv-not-bens")  # orders: nothing for Ben
        beat = (await until(ws, of_type("heartbeat")))[-1]
    assert beat["cursor"] > snapshot["cursor"]
    tail = await service_of(service.app).store.read_all(0, 10_000)
    assert beat["cursor"] <= tail[-1].position


# -- refusals ---------------------------------------------------------------------------


async def test_tokens_of_the_wrong_kind_or_for_another_agent_are_refused(
    service: Service,
) -> None:
    maya = service.token("maya", "customer", customer="cus-maya")
    chat = service.token("web-chat", "adapter:chat")
    for token, agent in ((maya, "me"), (chat, "me"), (service.ana(), "agent-ben")):
        frame, code = await refusal(service.stream(token, agent=agent))
        assert frame["type"] == "error" and frame["code"] == "forbidden"
        assert frame["status"] == 403 and frame["problem"] == "urn:threadline:problem:forbidden"
        assert code == 1008
    frame, code = await refusal(websockets.connect(f"{service.server.ws}/agents/me/stream"))
    assert frame["problem"] == "urn:threadline:problem:missing-token" and frame["status"] == 401
    assert code == 1008
    frame, code = await refusal(service.stream(service.ana(), after="-3"))
    assert frame["code"] == "validation" and code == 1008


async def test_an_expired_token_is_refused_and_a_live_one_is_cut_off_when_it_expires(
    service: Service,
) -> None:
    tokens: TokenIssuer = service_of(service.app).tokens
    earlier = TokenIssuer(tokens.key, issuer=tokens.issuer, audience=tokens.audience,
                          clock=lambda: utcnow() - 2 * HOUR)  # fmt: skip
    stale = earlier.issue("agent-ana", ["agent"], HOUR, {"queues": ["orders"]}).token
    frame, code = await refusal(service.stream(stale))
    assert frame["problem"] == "urn:threadline:problem:token-expired" and code == 1008

    brief = service.ana(ttl=timedelta(seconds=2))
    async with service.stream(brief) as ws:
        frames = await until(ws, of_type("error"), timeout=10)
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
    assert frames[0]["type"] == "snapshot"
    assert frames[-1]["problem"] == "urn:threadline:problem:token-expired"
    assert ws.close_code == 1008


async def test_a_revoked_token_gets_no_further_frames(service: Service) -> None:
    tokens = service_of(service.app).tokens
    issued = tokens.issue("agent-ana", ["agent"], HOUR, {"queues": ["orders"]})
    async with service.stream(issued.token) as ws:
        await until(ws, of_type("snapshot"))
        store = service_of(service.app).store
        await revoke(store, issued.principal.token_id, reason="lost laptop",
                     revoked_by="sup-sam", expires_at=issued.principal.expires_at)  # fmt: skip
        await service_of(service.app).revocations.catch_up(store)
        await service.asks_for_a_person("conv-after-revoke")
        frames = await until(ws, of_type("error"))
    assert [f["type"] for f in frames] == ["error"]
    assert frames[0]["problem"] == "urn:threadline:problem:token-revoked"
    assert ws.close_code == 1008

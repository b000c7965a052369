"""Approving and denying a sensitive call on the desk, on both stores: the real app with its
model-backed agent (a local server speaking OpenAI's API), the desk API and its work stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import websockets
from fastapi import FastAPI

from tests.approvals import ASK, PROOF, TOOL, refund_script
from tests.conftest import TOKEN_SECRET, bearer
from threadline.api.app import create_app
from threadline.api.auth import bearer_subprotocols
from threadline.api.deps import service_of
from threadline.core.events import Actor, Event, Lineage
from threadline.settings import Settings
from threadline.testing.live import LiveServer
from threadline.testing.model_server import ScriptedModel, say

PROBLEM = "application/problem+json"
ADAPTER = Lineage("chat-adapter", "1")
Frame = dict[str, Any]


@dataclass
class Desk:
    """The service with its model-backed agent, served for real, and a customer chatting."""

    server: LiveServer
    http: httpx.AsyncClient
    model: ScriptedModel
    said: dict[str, int] = field(default_factory=dict)

    @property
    def app(self) -> FastAPI:
        return self.server.app

    def agent(self, subject: str, *queues: str) -> dict[str, str]:
        return bearer(self.app, subject, "agent", queues=list(queues))

    def supervisor(self) -> dict[str, str]:
        return bearer(self.app, "sup-sam", "supervisor")

    async def events(self, cid: str, *types: str) -> list[Event]:
        timeline = await service_of(self.app).conversations.timeline(cid)
        return [e for e in timeline if not types or e.type in types]

    async def replies(self, cid: str, count: int) -> list[Event]:
        """The bot's replies, once there are ``count`` of them."""
        async with asyncio.timeout(10):
            while len(sent := await self.events(cid, "message.sent")) < count:
                await asyncio.sleep(0.02)
        return sent

    async def say(self, cid: str, text: str) -> None:
        """The customer says ``text`` in chat; the bot answers before this returns."""
        n = self.said.get(cid, 0)
        self.said[cid] = n + 1
        who = f"visitor-{cid}"

        def event(type_: str, payload: dict[str, Any], key: str) -> Event:
            return Event(cid, type_, payload, channel="chat", leg_id=f"chat-{cid}",
                         actor=Actor("customer", who), customer_id=who,
                         idempotency_key=f"{cid}:{key}", lineage=ADAPTER)  # fmt: skip

        events = [event("message.received", {"text": text}, f"m{n}")]
        if n == 0:
            events[:0] = [event("conversation.started", {"origin": "chat"}, "start"),
                          event("leg.started", {"leg_id": f"chat-{cid}", "channel": "chat"},
                                "leg")]  # fmt: skip
        before = len(await self.events(cid, "message.sent"))
        await service_of(self.app).conversations.record(cid, events)
        await self.replies(cid, before + 1)

    async def refund_requested(self, cid: str) -> str:
        """The customer proves the order is theirs and asks for a refund: the approval id."""
        self.model.then(*refund_script(service_of(self.app).current.business))
        await self.say(cid, PROOF)
        await self.say(cid, ASK)
        (requested,) = await self.events(cid, "approval.requested")
        await self.routed()
        return str(requested.payload["approval_id"])

    async def routed(self) -> None:
        """Until the router, whose state the desk's listings read, has seen the whole log."""
        service = service_of(self.app)
        head = 0
        while page := await service.store.read_all(head, 10_000):
            head = page[-1].position
        async with asyncio.timeout(10):
            while service.relay.cursor < head:
                await asyncio.sleep(0.01)
            await service.bus.drain()

    async def decide(self, cid: str, approval_id: str, headers: dict[str, str],
                     decision: str = "approve", reason: str | None = None,
                     key: str | None = None) -> httpx.Response:  # fmt: skip
        if key is not None:
            headers = {**headers, "Idempotency-Key": key}
        body: dict[str, Any] = {"decision": decision}
        if reason is not None:
            body["reason"] = reason
        return await self.http.post(f"/conversations/{cid}/approvals/{approval_id}", json=body,
                                    headers=headers)  # fmt: skip

    async def waiting(self, headers: dict[str, str]) -> list[dict[str, Any]]:
        response = await self.http.get("/agents/me/approvals", headers=headers)
        assert response.status_code == 200, response.text
        return list(response.json())

    def stream(self, headers: dict[str, str], after: int | None = None) -> Any:
        token = headers["Authorization"].split()[1]
        query = f"?after={after}" if after is not None else ""
        return websockets.connect(f"{self.server.ws}/agents/me/stream{query}",
                                  subprotocols=bearer_subprotocols(token))  # fmt: skip


@pytest.fixture
async def desk(any_store, tmp_path) -> AsyncIterator[Desk]:
    model = ScriptedModel()
    async with LiveServer(model.app) as provider:
        settings = Settings(token_secret=TOKEN_SECRET, model_url=f"{provider.http}/v1",
                            model="scripted-1", data_dir=tmp_path)  # fmt: skip
        app = create_app(settings, store=any_store)
        async with LiveServer(app) as server, httpx.AsyncClient(base_url=server.http) as http:
            yield Desk(server, http, model)


async def until(ws: Any, done: Callable[[Frame], bool], timeout: float = 10) -> list[Frame]:
    """Frames up to and including the first that ``done`` accepts."""
    frames: list[Frame] = []
    async with asyncio.timeout(timeout):
        while True:
            frames.append(json.loads(await ws.recv()))
            if done(frames[-1]):
                return frames


def of_type(type_: str) -> Callable[[Frame], bool]:
    return lambda f: f["type"] == type_


# -- deciding ----------------------------------------------------------------------------


async def test_an_agent_of_billing_approves_and_the_refund_runs_once_and_the_customer_hears(
    desk: Desk,
) -> None:
    approval_id = await desk.refund_requested("c-ok")
    ana = desk.agent("agent-ana", "orders", "billing")
    (waiting,) = await desk.waiting(ana)
    assert waiting["approval_id"] == approval_id and waiting["conversation_id"] == "c-ok"
    assert (waiting["queue"], waiting["tool"], waiting["reason"]) == ("billing", TOOL,
                                                                      "lost parcel")  # fmt: skip
    assert waiting["arguments"]["order_number"] == "1042"
    assert waiting["arguments"]["customer_id"] == "cus-maya"  # the proven customer's
    assert waiting["customer_id"] == "cus-maya" and waiting["requested_at"]

    approved = await desk.decide("c-ok", approval_id, ana, reason="checked the carrier",
                                 key="ok-1")  # fmt: skip
    assert approved.status_code == 200, approved.text
    again = await desk.decide("c-ok", approval_id, ana, reason="checked the carrier", key="ok-1")
    assert again.status_code == 200 and again.json() == approved.json()

    sent = await desk.replies("c-ok", 3)
    assert "approved" in sent[-1].payload["text"] and "rf-1042" in sent[-1].payload["text"]
    (granted,) = await desk.events("c-ok", "approval.granted")
    assert granted.seq == approved.json()["seq"]
    assert (granted.actor.kind, granted.actor.id) == ("human", "agent-ana")
    assert granted.payload == {"approval_id": approval_id, "agent_id": "agent-ana",
                               "queue": "billing", "note": "checked the carrier"}  # fmt: skip
    runs = [e for e in await desk.events("c-ok", "action.requested", "action.completed")
            if e.payload["action_id"] == approval_id]  # fmt: skip
    assert [e.type for e in runs] == ["action.requested", "action.completed"]
    assert runs[-1].payload["result"]["refund_id"] == "rf-1042"

    twice = await desk.decide("c-ok", approval_id, ana)
    assert twice.status_code == 409 and twice.headers["content-type"] == PROBLEM
    assert twice.json()["type"] == "urn:threadline:problem:stale-approval"
    async with asyncio.timeout(5):
        while await desk.waiting(ana):
            await asyncio.sleep(0.02)
    # Who decided follows the conversation, to see the call run and the customer told.
    timeline = await desk.http.get("/conversations/c-ok/events", headers=ana)
    assert timeline.status_code == 200, timeline.text


async def test_an_agent_outside_the_approvals_queue_is_refused_with_the_policys_reason(
    desk: Desk,
) -> None:
    approval_id = await desk.refund_requested("c-no")
    bea = desk.agent("agent-bea", "orders")
    assert await desk.waiting(bea) == []
    refused = await desk.decide("c-no", approval_id, bea)
    assert refused.status_code == 403 and refused.headers["content-type"] == PROBLEM
    assert "not waiting in orders" in refused.json()["detail"]
    # Once the customer waits in her queue (a request for a person goes to the topic's
    # queue: an order's, now) she reads the conversation, but the call is still billing's
    # to decide.
    desk.model.then(say("Which order is it?"))
    await desk.say("c-no", "where is my order")
    await desk.say("c-no", "I want to talk to a person")
    (handoff,) = await desk.events("c-no", "handoff.requested")
    assert handoff.payload["queue"] == "orders"
    refused = await desk.decide("c-no", approval_id, bea)
    assert refused.status_code == 403
    assert "the approval waits in billing, not in orders" in refused.json()["detail"]
    assert not await desk.events("c-no", "approval.granted")


async def test_a_supervisor_decides_any_and_a_denial_needs_a_reason(desk: Desk) -> None:
    approval_id = await desk.refund_requested("c-sup")
    sam = desk.supervisor()
    assert [a["approval_id"] for a in await desk.waiting(sam)] == [approval_id]
    for reason in (None, "   "):
        bare = await desk.decide("c-sup", approval_id, sam, "deny", reason)
        assert bare.status_code == 422 and bare.headers["content-type"] == PROBLEM
        assert "a denial needs a reason" in bare.json()["detail"]
    unknown = await desk.decide("c-sup", approval_id, sam, "maybe")
    assert unknown.status_code == 422

    denied = await desk.decide("c-sup", approval_id, sam, "deny", "the replacement shipped")
    assert denied.status_code == 200, denied.text
    sent = await desk.replies("c-sup", 3)
    assert "the replacement shipped" in sent[-1].payload["text"]
    (event,) = await desk.events("c-sup", "approval.denied")
    assert event.payload["agent_id"] == "sup-sam" and event.actor.id == "sup-sam"
    assert not [e for e in await desk.events("c-sup", "action.requested")
                if e.payload["tool"] == TOOL]  # fmt: skip
    stale = await desk.decide("c-sup", approval_id, sam)
    assert stale.status_code == 409
    missing = await desk.decide("c-none", approval_id, sam)
    assert missing.status_code == 404


async def test_the_waiting_list_holds_only_what_the_caller_may_decide(desk: Desk) -> None:
    approval_id = await desk.refund_requested("c-list")
    ben = desk.agent("agent-ben", "repairs", "billing")
    async with asyncio.timeout(5):
        while not await desk.waiting(ben):
            await asyncio.sleep(0.02)
    assert [a["approval_id"] for a in await desk.waiting(ben)] == [approval_id]
    assert await desk.waiting(desk.agent("agent-ben", "repairs")) == []
    maya = bearer(desk.app, "cus-maya", "customer", customer="cus-maya")
    refused = await desk.http.get("/agents/me/approvals", headers=maya)
    assert refused.status_code == 403


# -- the work stream ---------------------------------------------------------------------


async def test_a_desk_hears_an_approval_asked_and_decided_live_and_a_reconnect_replays_them(
    desk: Desk,
) -> None:
    ana = desk.agent("agent-ana", "orders", "billing")
    async with desk.stream(ana) as ws:
        (snapshot,) = await until(ws, of_type("snapshot"))
        assert snapshot["approvals"] == []
        approval_id = await desk.refund_requested("c-live")
        live = await until(ws, of_type("approval.requested"))
        asked = live[-1]
        assert asked["approval_id"] == approval_id and asked["conversation_id"] == "c-live"
        assert (asked["queue"], asked["tool"], asked["reason"]) == ("billing", TOOL,
                                                                    "lost parcel")  # fmt: skip
        assert asked["arguments"]["order_number"] == "1042"

        async with desk.stream(ana) as fresh:
            (later,) = await until(fresh, of_type("snapshot"))
        (pending,) = later["approvals"]
        assert pending["approval_id"] == approval_id
        assert pending["arguments"]["customer_id"] == "cus-maya"

        ben = desk.agent("agent-ben", "repairs", "billing")
        decided = await desk.decide("c-live", approval_id, ben)
        assert decided.status_code == 200, decided.text
        live += await until(ws, of_type("approval.decided"))
    done = live[-1]
    assert (done["approval_id"], done["decision"], done["agent_id"]) == (approval_id, "granted",
                                                                        "agent-ben")  # fmt: skip
    assert done["queue"] == "billing" and done["conversation_id"] == "c-live"
    cursors = [snapshot["cursor"]] + [f["cursor"] for f in live]
    assert cursors == sorted(set(cursors))

    async with desk.stream(ana, after=snapshot["cursor"]) as ws:
        replayed = await until(ws, of_type("approval.decided"))
    # What the call would do is read as a frame is sent: once it ran, it is no longer there.
    as_sent = ("arguments", "reason")

    def same(frames: list[Frame]) -> list[Frame]:
        return [{k: v for k, v in f.items() if k not in as_sent} for f in frames
                if f["type"] != "heartbeat"]  # fmt: skip

    assert same(replayed) == same(live)
    assert "snapshot" not in [f["type"] for f in replayed]
    async with desk.stream(ana) as ws:
        (after,) = await until(ws, of_type("snapshot"))
    assert after["approvals"] == []


async def test_a_desk_of_other_queues_hears_nothing_of_the_approval(desk: Desk) -> None:
    bea = desk.agent("agent-bea", "orders")
    async with desk.stream(bea) as ws:
        await until(ws, of_type("snapshot"))
        approval_id = await desk.refund_requested("c-other")
        sam = desk.supervisor()
        assert (await desk.decide("c-other", approval_id, sam)).status_code == 200
        await desk.replies("c-other", 3)
        # The next frame concerns her: a handoff into her queue (an order's, the topic now).
        desk.model.then(say("Which order is it?"))
        await desk.say("c-other", "where is my order")
        await desk.say("c-other", "I want to talk to a person")
        frames = await until(ws, of_type("queue.changed"))
    assert not [f for f in frames if f["type"].startswith("approval.")]

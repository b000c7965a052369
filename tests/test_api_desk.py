"""The desk API on both stores: presence, offers, accepting, working and resolving."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import TOKEN_SECRET, bearer
from threadline.api.app import create_app
from threadline.api.deps import service_of
from threadline.core.events import Actor, Event
from threadline.settings import Settings

PROBLEM = "application/problem+json"
MAYA = Actor("customer", "cus-maya")
HOUR = timedelta(hours=1)


@dataclass
class Desk:
    app: FastAPI
    client: httpx.AsyncClient

    def token(self, subject: str, scope: str, **claims: object) -> dict[str, str]:
        return bearer(self.app, subject, scope, **claims)

    def agent(self, subject: str, *queues: str) -> dict[str, str]:
        return self.token(subject, "agent", queues=list(queues))

    async def types(self, cid: str) -> list[str]:
        return [r.type for r in await service_of(self.app).store.read(cid)]

    async def wait_for(self, cid: str, type_: str, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while type_ not in await self.types(cid):
                await asyncio.sleep(0.02)


@pytest.fixture
async def desk(any_store) -> AsyncIterator[Desk]:
    app = create_app(Settings(token_secret=TOKEN_SECRET), store=any_store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Desk(app, client)


async def asks_for_a_person(desk: Desk, cid: str) -> None:
    """Maya opens a chat and asks for a person; the bot hands off, the router offers."""
    events = [
        Event(cid, "conversation.started", {"origin": "chat"}, channel="chat", actor=MAYA,
              customer_id="cus-maya", idempotency_key=f"{cid}-start"),
        Event(cid, "message.received", {"text": "I want to talk to a person"}, channel="chat",
              actor=MAYA, customer_id="cus-maya", idempotency_key=f"{cid}-ask"),
    ]  # fmt: skip
    await service_of(desk.app).conversations.record(cid, events)
    await desk.wait_for(cid, "handoff.requested")
    await desk.wait_for(cid, "handoff.offered")


async def offers_of(desk: Desk, headers: dict[str, str]) -> list[dict[str, object]]:
    """The caller's open offers, once the router has seen at least one (it folds them
    from the bus, a moment after they are stored)."""
    async with asyncio.timeout(5):
        while not (offers := (await desk.client.get("/agents/me/offers", headers=headers)).json()):
            await asyncio.sleep(0.02)
    return list(offers)


async def available(desk: Desk, headers: dict[str, str]) -> None:
    response = await desk.client.put(
        "/agents/me/presence", json={"presence": "available"}, headers=headers
    )
    assert response.status_code == 200, response.text
    async with asyncio.timeout(5):
        while (await desk.client.get("/agents/me", headers=headers)).json()[
            "presence"
        ] != "available":
            await asyncio.sleep(0.02)


async def test_an_agent_takes_works_and_resolves_a_conversation(desk: Desk) -> None:
    ana = desk.agent("agent-ana", "orders", "billing")
    await available(desk, ana)
    me = (await desk.client.get("/agents/me", headers=ana)).json()
    assert me["id"] == "agent-ana" and me["name"] == "Ana Ruiz"
    assert me["queues"] == ["billing", "orders"] and me["load"] == 0

    await asks_for_a_person(desk, "conv-desk")
    offers = await offers_of(desk, ana)
    assert [o["conversation_id"] for o in offers] == ["conv-desk"]
    offer = offers[0]
    assert offer["queue"] == "orders" and offer["reason"] == "customer_request"
    assert offer["expires_at"]

    accepted = await desk.client.post(
        "/conversations/conv-desk/accept", json={"offer_id": offer["offer_id"]},
        headers={**ana, "Idempotency-Key": "take-1"},
    )  # fmt: skip
    assert accepted.status_code == 200, accepted.text
    again = await desk.client.post(
        "/conversations/conv-desk/accept", json={"offer_id": offer["offer_id"]},
        headers={**ana, "Idempotency-Key": "take-1"},
    )  # fmt: skip
    assert again.json() == accepted.json()
    stale = await desk.client.post(
        "/conversations/conv-desk/accept", json={"offer_id": offer["offer_id"]}, headers=ana
    )
    assert stale.status_code == 409 and stale.headers["content-type"] == PROBLEM

    packet = await desk.client.get("/conversations/conv-desk/packet", headers=ana)
    assert packet.status_code == 200, packet.text
    assert packet.json()["conversation_id"] == "conv-desk"

    replied = await desk.client.post(
        "/conversations/conv-desk/reply", json={"text": "Hi Maya, Ana here."}, headers=ana
    )
    assert replied.status_code == 200, replied.text
    records = await service_of(desk.app).store.read("conv-desk")
    sent = next(r for r in records if r.seq == replied.json()["seq"])
    assert sent.type == "message.sent" and sent.channel == "chat"
    assert (sent.actor_kind, sent.actor_id) == ("human", "agent-ana")

    resolved = await desk.client.post(
        "/conversations/conv-desk/resolve", json={"outcome": "answered"}, headers=ana
    )
    assert resolved.status_code == 200, resolved.text
    # Resolved, it is no longer hers: she reads it no more; a supervisor still does.
    assert (await desk.client.get("/conversations/conv-desk", headers=ana)).status_code == 403
    sam = desk.token("sup-sam", "supervisor")
    state = (await desk.client.get("/conversations/conv-desk", headers=sam)).json()
    assert state["status"] == "resolved"


async def test_other_agents_are_kept_out(desk: Desk) -> None:
    ana = desk.agent("agent-ana", "orders", "billing")
    ben = desk.agent("agent-ben", "repairs")
    await available(desk, ana)
    await asks_for_a_person(desk, "conv-keep")
    (offer,) = await offers_of(desk, ana)
    assert (await desk.client.get("/agents/me/offers", headers=ben)).json() == []

    packet = await desk.client.get("/conversations/conv-keep/packet", headers=ben)
    assert packet.status_code == 403 and packet.headers["content-type"] == PROBLEM
    taken = await desk.client.post(
        "/conversations/conv-keep/accept", json={"offer_id": offer["offer_id"]}, headers=ben
    )
    assert taken.status_code in {403, 409}
    billing = desk.agent("agent-bea", "orders")  # in the queue, but not the one offered
    taken = await desk.client.post(
        "/conversations/conv-keep/accept", json={"offer_id": offer["offer_id"]}, headers=billing
    )
    assert taken.status_code == 403
    reply = await desk.client.post(
        "/conversations/conv-keep/reply", json={"text": "hello"}, headers=billing
    )
    assert reply.status_code == 403
    assert "handoff.accepted" not in await desk.types("conv-keep")


async def test_a_supervisor_may_work_any_conversation(desk: Desk) -> None:
    ana = desk.agent("agent-ana", "orders", "billing")
    sam = desk.token("sup-sam", "supervisor")
    await available(desk, ana)
    await asks_for_a_person(desk, "conv-sup")
    (offer,) = await offers_of(desk, sam)
    assert offer["agent_id"] == "agent-ana"
    declined = await desk.client.post(
        "/conversations/conv-sup/decline", json={"offer_id": "nope"}, headers=ana
    )
    assert declined.status_code == 409
    assert declined.json()["type"] == "urn:threadline:problem:stale-offer"
    accepted = await desk.client.post(
        "/conversations/conv-sup/accept", json={"offer_id": offer["offer_id"]}, headers=ana
    )
    assert accepted.status_code == 200
    moved = await desk.client.post(
        "/conversations/conv-sup/transfer", json={"queue": "billing", "reason": "refund"},
        headers=sam,
    )  # fmt: skip
    assert moved.status_code == 200, moved.text
    unknown = await desk.client.post(
        "/conversations/conv-sup/transfer", json={"queue": "nowhere"}, headers=sam
    )
    assert unknown.status_code == 422
    returned = await desk.client.post("/conversations/conv-sup/return", headers=sam)
    assert returned.status_code == 409  # awaiting a human again: nobody holds it


async def test_no_token_is_401_and_the_wrong_kind_is_403(desk: Desk) -> None:
    bare = await desk.client.get("/agents/me")
    assert bare.status_code == 401 and bare.headers["content-type"] == PROBLEM
    assert bare.headers["WWW-Authenticate"].startswith("Bearer")
    forged = await desk.client.get("/agents/me", headers={"Authorization": "Bearer a.b.c"})
    assert forged.status_code == 401
    maya = desk.token("cus-maya", "customer", customer="cus-maya")
    refused = await desk.client.get("/agents/me/offers", headers=maya)
    assert refused.status_code == 403 and refused.headers["content-type"] == PROBLEM
    assert "insufficient_scope" in refused.headers["WWW-Authenticate"]
    presence = await desk.client.put(
        "/agents/me/presence", json={"presence": "available"}, headers=maya
    )
    assert presence.status_code == 403


async def test_presence_is_idempotent_and_validated(desk: Desk) -> None:
    ben = desk.agent("agent-ben", "repairs")
    headers = {**ben, "Idempotency-Key": "p-1"}
    first = await desk.client.put("/agents/me/presence", json={"presence": "away"}, headers=headers)
    again = await desk.client.put("/agents/me/presence", json={"presence": "away"}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert len(await service_of(desk.app).store.read("agent:agent-ben")) == 1
    bad = await desk.client.put("/agents/me/presence", json={"presence": "asleep"}, headers=ben)
    assert bad.status_code == 422

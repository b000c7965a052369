"""Every conversation route and stream needs a bearer token with the right scope."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
import websockets
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount

from tests.conftest import OTHER_TOKEN_SECRET, TOKEN_SECRET, bearer
from threadline.api import access
from threadline.api.access import authorize_route
from threadline.api.app import create_app
from threadline.api.auth import bearer_subprotocols
from threadline.api.deps import service_of
from threadline.core.events import Actor, Event, utcnow
from threadline.security import TokenIssuer
from threadline.security.authz import Denied
from threadline.settings import Settings

PROBLEM = "application/problem+json"
HOUR = timedelta(hours=1)
MAYA = {"kind": "customer", "id": "cus-maya"}
ROUTES = ("/conversations/conv-1", "/conversations/conv-1/events")


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient

    def token(self, subject: str, scope: str, **claims: object) -> dict[str, str]:
        return bearer(self.app, subject, scope, **claims)

    async def post(self, cid: str, *events: dict, auth: dict[str, str], key: str = "k"):
        return await self.client.post(
            f"/conversations/{cid}/events",
            json={"events": list(events)},
            headers={"Idempotency-Key": key, **auth},
        )

    async def stored(self, cid: str, by: str | None = None) -> list[str]:
        """The types stored on ``cid``; with ``by``, only those of that actor kind."""
        records = await service_of(self.app).store.read(cid)
        return [r.type for r in records if by is None or r.actor_kind == by]


@pytest.fixture
async def api(any_store) -> AsyncIterator[Api]:
    app = create_app(Settings(token_secret=TOKEN_SECRET), store=any_store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Api(app, client)


def started(customer: str = "cus-maya") -> dict:
    return {"type": "conversation.started", "payload": {"origin": "chat"}, "channel": "chat",
            "actor": {"kind": "customer", "id": customer}, "customer_id": customer}  # fmt: skip


def said(text: str, channel: str = "chat") -> dict:
    return {"type": "message.received", "payload": {"text": text}, "channel": channel,
            "actor": MAYA, "customer_id": "cus-maya"}  # fmt: skip


async def chat_started(api: Api, cid: str, customer: str = "cus-maya") -> None:
    response = await api.post(cid, started(customer), auth=api.token("web-chat", "adapter:chat"))
    assert response.status_code == 201, response.text


# -- authentication --------------------------------------------------------------------


async def test_every_route_needs_a_token(api: Api) -> None:
    await chat_started(api, "conv-1")
    refused = [await api.client.get(path) for path in ROUTES]
    refused.append(await api.client.post("/conversations/conv-1/events",
                                         json={"events": [said("hi")]},
                                         headers={"Idempotency-Key": "k2"}))  # fmt: skip
    for response in refused:
        assert response.status_code == 401
        assert response.headers["content-type"] == PROBLEM
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="threadline"'
        assert response.json()["type"] == "urn:threadline:problem:missing-token"
    assert await api.stored("conv-1") == ["conversation.started"]


async def test_expired_and_forged_tokens_are_refused(api: Api) -> None:
    await chat_started(api, "conv-1")
    tokens: TokenIssuer = service_of(api.app).tokens
    earlier = TokenIssuer(tokens.key, issuer=tokens.issuer, audience=tokens.audience,
                          clock=lambda: utcnow() - 2 * HOUR)  # fmt: skip
    expired = earlier.issue("root", ["admin"], HOUR).token
    forged = TokenIssuer.from_settings(Settings(token_secret=OTHER_TOKEN_SECRET)).issue(
        "root", ["admin"], HOUR
    )
    for token, slug in ((expired, "token-expired"), (forged.token, "token-signature")):
        auth = {"Authorization": f"Bearer {token}"}
        for path in ROUTES:
            response = await api.client.get(path, headers=auth)
            assert response.status_code == 401, response.text
            assert response.json()["type"] == f"urn:threadline:problem:{slug}"
            assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
        appended = await api.post("conv-1", said("hi"), auth=auth, key="k2")
        assert appended.status_code == 401
    assert await api.stored("conv-1") == ["conversation.started"]


# -- customers -------------------------------------------------------------------------


async def test_a_customer_cannot_tell_anothers_conversation_from_a_missing_one(api: Api) -> None:
    await chat_started(api, "conv-other", customer="cus-other")
    maya = api.token("maya", "customer", customer="cus-maya")
    for cid in ("conv-other", "conv-nobody"):
        for path in (f"/conversations/{cid}", f"/conversations/{cid}/events"):
            response = await api.client.get(path, headers=maya)
            assert response.status_code == 403, (path, response.text)
            assert response.json()["type"] == "urn:threadline:problem:forbidden"
    sneaky = await api.post("conv-other", said("let me in"), auth=maya)
    assert sneaky.status_code == 403
    assert await api.stored("conv-other") == ["conversation.started"]
    # Someone allowed to read anything learns that a missing conversation is missing.
    admin = api.token("root", "admin")
    assert (await api.client.get("/conversations/conv-nobody", headers=admin)).status_code == 404


async def test_a_customer_token_bound_to_one_conversation_reads_only_that_one(api: Api) -> None:
    await chat_started(api, "conv-1")
    await chat_started(api, "conv-2")
    bound = api.token("maya", "customer", customer="cus-maya", conversation="conv-1")
    assert (await api.client.get("/conversations/conv-1", headers=bound)).status_code == 200
    assert (await api.client.get("/conversations/conv-2", headers=bound)).status_code == 403


async def test_a_customer_appending_a_bot_event_is_forbidden_and_nothing_is_stored(
    api: Api,
) -> None:
    await chat_started(api, "conv-1")
    maya = api.token("maya", "customer", customer="cus-maya")
    bot = {"type": "message.sent", "payload": {"text": "refund approved"}, "channel": "chat",
           "actor": {"kind": "bot", "id": "northwind"}, "customer_id": "cus-maya"}  # fmt: skip
    response = await api.post("conv-1", said("hello"), bot, auth=maya)
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert await api.stored("conv-1") == ["conversation.started"]


async def test_a_customer_cannot_start_a_conversation_for_themselves(api: Api) -> None:
    maya = api.token("maya", "customer", customer="cus-maya")
    response = await api.post("conv-new", started(), auth=maya)
    assert response.status_code == 403
    assert await api.stored("conv-new") == []


# -- adapters --------------------------------------------------------------------------


async def test_the_chat_adapter_may_not_write_voice_events(api: Api) -> None:
    chat = api.token("web-chat", "adapter:chat")
    voice_start = {**started(), "payload": {"origin": "voice"}, "channel": "voice"}
    assert (await api.post("conv-1", voice_start, auth=chat)).status_code == 403
    await chat_started(api, "conv-1")
    response = await api.post("conv-1", said("over the phone", channel="voice"), auth=chat, key="v")
    assert response.status_code == 403
    assert await api.stored("conv-1") == ["conversation.started"]


async def test_each_event_is_judged_on_the_state_it_follows(api: Api) -> None:
    """A batch that starts the conversation and then writes to it is judged in order."""
    chat = api.token("web-chat", "adapter:chat")
    response = await api.post("conv-1", started(), said("hello"), auth=chat)
    assert response.status_code == 201, response.text
    # A bot event in the middle of an otherwise allowed batch refuses the whole batch.
    bot = {"type": "intent.detected", "payload": {"intent": "x", "confidence": 0.9},
           "channel": "chat", "actor": {"kind": "bot", "id": "northwind"}}  # fmt: skip
    refused = await api.post("conv-1", said("one"), bot, said("two"), auth=chat, key="b")
    assert refused.status_code == 403
    # (The bot may have answered "hello" meanwhile; the adapter's batch added nothing.)
    assert await api.stored("conv-1", by="customer") == ["conversation.started", "message.received"]


# -- agents ----------------------------------------------------------------------------


async def test_an_agent_reads_only_conversations_in_their_queues(api: Api) -> None:
    maya = Actor("customer", "cus-maya")
    await service_of(api.app).conversations.record("conv-1", [
        Event("conv-1", "conversation.started", {"origin": "chat"}, channel="chat",
              actor=maya, customer_id="cus-maya", idempotency_key="s"),
        Event("conv-1", "handoff.requested", {"queue": "billing", "reason_code": "transfer"},
              actor=Actor("bot", "northwind"), idempotency_key="h"),
    ])  # fmt: skip
    outsider = api.token("sam", "agent", queues=["returns"])
    insider = api.token("ana", "agent", queues=["billing"])
    for path in ("/conversations/conv-1", "/conversations/conv-1/events"):
        refused = await api.client.get(path, headers=outsider)
        assert refused.status_code == 403
        assert refused.json()["type"] == "urn:threadline:problem:forbidden"
        assert (await api.client.get(path, headers=insider)).status_code == 200


# -- streams ---------------------------------------------------------------------------


async def refusal(url: str, **kwargs: object) -> tuple[dict, int | None]:
    """The one frame a refused stream sends, and the close code that follows."""
    async with websockets.connect(url, **kwargs) as ws:  # type: ignore[arg-type]
        async with asyncio.timeout(5):
            frame = json.loads(await ws.recv())
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
        return frame, ws.close_code


async def test_a_stream_without_a_token_is_closed_with_an_error_frame(live_server) -> None:
    frame, code = await refusal(f"{live_server.ws}/conversations/conv-1/stream")
    assert frame["type"] == "error" and frame["code"] == "unauthenticated"
    assert frame["detail"]
    assert code == 1008
    url = f"{live_server.ws}/conversations/conv-1/stream"
    frame, code = await refusal(url, subprotocols=bearer_subprotocols("nonsense"))
    assert frame["code"] == "unauthenticated" and code == 1008


async def test_a_stream_of_someone_elses_conversation_sends_nothing(live_server) -> None:
    service = service_of(live_server.app)
    await service.conversations.record("conv-1", [
        Event("conv-1", "conversation.started", {"origin": "chat"}, channel="chat",
              actor=Actor("customer", "cus-maya"), customer_id="cus-maya", idempotency_key="s"),
    ])  # fmt: skip
    other = service.tokens.issue("eve", ["customer"], HOUR, {"customer": "cus-eve"}).token
    url = f"{live_server.ws}/conversations/conv-1/stream"
    frame, code = await refusal(url, subprotocols=bearer_subprotocols(other))
    assert frame["type"] == "error" and frame["code"] == "forbidden"
    assert code == 1008


# -- what each role sees -----------------------------------------------------------------


async def _a_conversation_with_internals(api: Api, cid: str) -> None:
    """Maya's chat: what she said and was told, and what staff and the bot keep inside."""
    await chat_started(api, cid)
    maya = api.token("maya", "customer", customer="cus-maya")
    assert (await api.post(cid, said("where is my order 1042?"), auth=maya,
                           key="said")).status_code == 201  # fmt: skip
    bot = Actor("bot", "northwind-bot")
    inside = [
        Event(cid, "intent.detected", {"intent": "order_status", "confidence": 0.9},
              channel="chat", actor=bot, customer_id="cus-maya", idempotency_key="intent"),
        Event(cid, "message.sent", {"text": "Order 1042 is on its way."}, channel="chat",
              actor=bot, customer_id="cus-maya", idempotency_key="answer"),
        Event(cid, "note.added", {"author_id": "sup-sam", "text": "VIP, be kind"},
              actor=Actor("human", "sup-sam"), customer_id="cus-maya", idempotency_key="note"),
    ]  # fmt: skip
    await service_of(api.app).conversations.record(cid, inside)


async def test_a_customer_reads_what_was_said_to_and_by_her_and_nothing_inside(
    api: Api,
) -> None:
    await _a_conversation_with_internals(api, "conv-1")
    maya = api.token("maya", "customer", customer="cus-maya")
    events = (await api.client.get("/conversations/conv-1/events", headers=maya)).json()
    said_and_told = [(e["type"], e["payload"].get("text")) for e in events]
    assert ("message.received", "where is my order 1042?") in said_and_told
    assert ("message.sent", "Order 1042 is on its way.") in said_and_told
    assert {kind for kind, _ in said_and_told} == {"message.received", "message.sent"}
    assert all(e["lineage"] == {} and e["idempotency_key"] == "" for e in events)
    assert "VIP" not in json.dumps(events) and "order_status" not in json.dumps(events)
    state = (await api.client.get("/conversations/conv-1", headers=maya)).json()
    assert "summary" not in state and "slots" not in state and "identities" not in state
    assert state["status"] == "bot_active" and "VIP" not in json.dumps(state)
    packet = await api.client.get("/conversations/conv-1/packet", headers=maya)
    assert packet.status_code == 403 and packet.headers["content-type"] == PROBLEM
    # Staff still see everything.
    sam = api.token("sup-sam", "supervisor")
    staff = (await api.client.get("/conversations/conv-1/events", headers=sam)).json()
    assert "note.added" in [e["type"] for e in staff] and "VIP" in json.dumps(staff)


async def _held_by_ben(api: Api, cid: str) -> None:
    """Maya's chat, in the orders queue, accepted by Ben."""
    await chat_started(api, cid)
    router = Actor("system", "router")
    ben = Actor("human", "agent-ben")
    expires = (utcnow() + timedelta(minutes=2)).isoformat()
    await service_of(api.app).conversations.record(cid, [
        Event(cid, "handoff.requested", {"queue": "orders", "reason_code": "customer_request"},
              actor=Actor("bot", "northwind-bot"), customer_id="cus-maya", idempotency_key="hr"),
        Event(cid, "handoff.offered", {"offer_id": "o-1", "agent_id": "agent-ben",
                                       "queue": "orders", "expires_at": expires},
              actor=router, customer_id="cus-maya", idempotency_key="ho"),
        Event(cid, "handoff.accepted", {"offer_id": "o-1", "agent_id": "agent-ben"},
              actor=ben, customer_id="cus-maya", idempotency_key="ha"),
    ])  # fmt: skip


def _staff(who: str, type_: str, payload: dict) -> dict:
    return {"type": type_, "payload": payload, "channel": "chat",
            "actor": {"kind": "human", "id": who}, "customer_id": "cus-maya"}  # fmt: skip


async def test_only_the_assignee_works_a_conversation_through_the_events_api(api: Api) -> None:
    await _held_by_ben(api, "conv-1")
    before = await api.stored("conv-1")
    ana = api.token("agent-ana", "agent", queues=["orders"])
    work = [
        ("message.sent", {"text": "Ana here, I'll take it from Ben"}),
        ("conversation.resolved", {"outcome": "answered"}),
        ("consent.granted", {"purpose": "marketing"}),
        ("identity.linked", {"kind": "phone", "value": "+14155550123", "verified": False,
                             "method": "typed"}),
    ]  # fmt: skip
    for n, (type_, payload) in enumerate(work):
        refused = await api.post("conv-1", _staff("agent-ana", type_, payload), auth=ana,
                                 key=f"ana-{n}")  # fmt: skip
        assert refused.status_code == 403, (type_, refused.text)
        assert refused.headers["content-type"] == PROBLEM
    assert await api.stored("conv-1") == before
    # Held by a colleague, it is out of her reach: not even a note.
    note = _staff("agent-ana", "note.added", {"author_id": "agent-ana", "text": "Ben has it"})
    assert (await api.post("conv-1", note, auth=ana, key="ana-note")).status_code == 403
    assert (await api.client.get("/conversations/conv-1", headers=ana)).status_code == 403


async def test_staff_cannot_record_a_proof_the_customer_never_gave(api: Api) -> None:
    await _held_by_ben(api, "conv-1")
    ben = api.token("agent-ben", "agent", queues=["orders"])
    sam = api.token("sup-sam", "supervisor")
    proof = {"kind": "phone", "value": "+14155550123", "verified": True, "method": "postcode"}
    for who, auth in (("agent-ben", ben), ("sup-sam", sam)):
        forged = await api.post("conv-1", _staff(who, "identity.linked", proof), auth=auth,
                                key=f"{who}-forged")  # fmt: skip
        assert forged.status_code == 403, forged.text
    confirmed = {**proof, "method": "agent"}  # what Ben checked himself, recorded as his
    ok = await api.post("conv-1", _staff("agent-ben", "identity.linked", confirmed), auth=ben,
                        key="ben-confirmed")  # fmt: skip
    assert ok.status_code == 201, ok.text
    state = await service_of(api.app).conversations.rehydrate("conv-1")
    assert [(p["method"], p["level"]) for p in state.proofs] == [("agent", "knowledge")]


# -- every route is the policy's ------------------------------------------------------------


def test_every_route_of_the_app_is_decided_by_the_policy() -> None:
    """The API reference included: FastAPI's own routes for it would skip the check."""
    app = create_app(Settings(token_secret=TOKEN_SECRET))
    unchecked, paths = [], set()
    for route in iter_route_contexts(app.routes):
        paths.add(route.path)
        if isinstance(route.original_route, Mount):
            continue  # the static files: decided as a page (api/pages.py)
        dependant = getattr(route, "dependant", None)
        checks = [d.call for d in dependant.dependencies] if dependant is not None else []
        if authorize_route not in checks:  # sockets too: they are decided as they open
            unchecked.append(route.path)
    assert unchecked == []
    assert {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"} <= paths


async def test_the_api_reference_is_served_as_the_policy_says(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    for path in ("/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"):
        response = await api.client.get(path)
        assert response.status_code == 200, path
    assert (
        "/conversations/{conversation_id}"
        in (await api.client.get("/openapi.json")).json()["paths"]
    )
    refuse_reference = Denied("anonymous: the reference is closed")

    def closed(principal: object, endpoint: str, target: object = None) -> None:
        if endpoint.endswith(("/openapi.json", "/docs", "/redoc")):
            raise refuse_reference

    monkeypatch.setattr(access, "can_call", closed)
    monkeypatch.setattr(access, "allows", lambda check, *args: False)
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert (await api.client.get(path)).status_code == 401, path

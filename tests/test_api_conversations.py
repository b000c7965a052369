"""The conversations API on both stores: appends, state, timeline, and precise errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from tests.conftest import TOKEN_SECRET, bearer
from threadline.api.app import create_app
from threadline.settings import Settings

PROBLEM = "application/problem+json"
MAYA = {"kind": "customer", "id": "cus-maya"}
HOUR = timedelta(hours=1)


@pytest.fixture
async def client(any_store) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(token_secret=TOKEN_SECRET), store=any_store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            c.store = any_store  # type: ignore[attr-defined]
            c.chat = bearer(app, "web-chat", "adapter:chat")  # type: ignore[attr-defined]
            c.maya = bearer(app, "maya", "customer", customer="cus-maya")  # type: ignore[attr-defined]
            c.admin = bearer(app, "root", "admin")  # type: ignore[attr-defined]
            yield c


def started(origin: str = "chat") -> dict:
    return {"type": "conversation.started", "payload": {"origin": origin}, "channel": origin,
            "actor": MAYA, "customer_id": "cus-maya"}  # fmt: skip


def said(text: str) -> dict:
    return {"type": "message.received", "payload": {"text": text}, "channel": "chat",
            "actor": MAYA, "customer_id": "cus-maya"}  # fmt: skip


async def post(client, cid: str, *events: dict, key: str = "k1", auth=None, **headers: str):
    """Append as the chat adapter unless ``auth`` names another caller's headers."""
    return await client.post(
        f"/conversations/{cid}/events",
        json={"events": list(events)},
        headers={"Idempotency-Key": key, **(auth or client.chat), **headers},
    )


async def stored(client, cid: str) -> int:
    return len(await client.store.read(cid))


async def test_append_then_read_state_and_timeline(client) -> None:
    created = await post(client, "conv-1", started(), said("where is my order 1042?"))
    assert created.status_code == 201
    assert created.json()["seqs"] == [1, 2]
    assert created.headers["ETag"] == '"2"'
    state = await client.get("/conversations/conv-1", headers=client.admin)
    assert state.status_code == 200
    assert state.json()["status"] == "bot_active" and state.json()["messages_in"] == 1
    events = (await client.get("/conversations/conv-1/events", headers=client.admin)).json()
    # The bot may already have answered after these two; they come first, in order.
    assert [e["type"] for e in events][:2] == ["conversation.started", "message.received"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[1]["payload"] == {"text": "where is my order 1042?"}
    assert events[1]["idempotency_key"] == "k1#1"


async def test_the_customer_writes_their_own_messages(client) -> None:
    await post(client, "conv-1", started(), key="a")
    mine = await post(client, "conv-1", said("it is me"), key="b", auth=client.maya)
    assert mine.status_code == 201, mine.text
    events = (await client.get("/conversations/conv-1/events", headers=client.admin)).json()
    assert events[1]["actor"] == MAYA and events[1]["payload"] == {"text": "it is me"}


async def test_a_repeated_request_replays_the_first_answer(client) -> None:
    first = await post(client, "conv-1", started(), key="same")
    again = await post(client, "conv-1", started(), key="same")
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["seqs"] == first.json()["seqs"]
    assert await stored(client, "conv-1") == 1


def note(text: str) -> dict:
    # A note, not a customer message: the bot stays quiet and the seqs stay predictable.
    return {"type": "note.added", "payload": {"author_id": "sup-sam", "text": text},
            "actor": {"kind": "human", "id": "sup-sam"}}  # fmt: skip


async def test_a_stale_if_match_is_a_failed_precondition(client) -> None:
    await post(client, "conv-1", started(), key="a")
    first = await post(client, "conv-1", note("hello"), key="b", auth=client.admin,
                       **{"If-Match": '"1"'})  # fmt: skip
    assert first.status_code == 201, first.text
    stale = await post(client, "conv-1", note("again"), key="c", auth=client.admin,
                       **{"If-Match": '"1"'})  # fmt: skip
    assert stale.status_code == 412
    assert stale.headers["content-type"] == PROBLEM
    assert stale.json()["type"] == "urn:threadline:problem:precondition-failed"
    assert stale.json()["current_seq"] == 2
    assert await stored(client, "conv-1") == 2


async def test_a_missing_idempotency_key_is_refused(client) -> None:
    response = await client.post(
        "/conversations/conv-1/events", json={"events": [started()]}, headers=client.chat
    )
    assert response.status_code == 400
    assert response.json()["type"] == "urn:threadline:problem:idempotency-key-required"
    assert await stored(client, "conv-1") == 0


async def test_malformed_json_is_a_bad_request(client) -> None:
    response = await client.post(
        "/conversations/conv-1/events",
        content=b'{"events": [',
        headers={"Idempotency-Key": "k", "Content-Type": "application/json", **client.chat},
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "urn:threadline:problem:malformed-json"


async def test_wrong_types_name_the_field(client) -> None:
    bad = {**started(), "actor": {"kind": "robot", "id": 7}}
    response = await post(client, "conv-1", bad)
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert "body.events.0.actor.kind" in fields and "body.events.0.actor.id" in fields
    assert await stored(client, "conv-1") == 0


async def test_an_invalid_payload_names_the_payload_field(client) -> None:
    await post(client, "conv-1", started(), key="a")
    response = await post(client, "conv-1", {**said("x"), "payload": {"txt": "x"}}, key="b")
    assert response.status_code == 422
    assert response.json()["type"] == "urn:threadline:problem:validation"
    assert {"field": "payload.text", "reason": "Field required"} in response.json()["errors"]
    assert await stored(client, "conv-1") == 1


async def test_an_unknown_event_type_is_refused(client) -> None:
    response = await post(client, "conv-1", {**started(), "type": "message.teleported"})
    assert response.status_code == 422
    assert response.json()["type"] == "urn:threadline:problem:unknown-event-type"


async def test_an_illegal_transition_is_a_conflict_and_writes_nothing(client) -> None:
    response = await post(client, "conv-1", said("hello before anything started"))
    assert response.status_code == 409
    assert response.json()["type"] == "urn:threadline:problem:illegal-transition"
    assert await stored(client, "conv-1") == 0


async def test_an_oversize_body_is_refused_before_it_is_read(client) -> None:
    response = await post(client, "conv-1", started(), said("x" * 70_000))
    assert response.status_code == 413
    assert response.json()["type"] == "urn:threadline:problem:too-large"
    assert await stored(client, "conv-1") == 0


async def test_an_unknown_conversation_is_not_found(client) -> None:
    for path in ("/conversations/nobody", "/conversations/nobody/events"):
        response = await client.get(path, headers=client.admin)
        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM


async def test_the_openapi_document_describes_the_api(client) -> None:
    document = (await client.get("/openapi.json")).json()
    assert "/conversations/{conversation_id}/events" in document["paths"]

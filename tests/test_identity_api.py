"""The identity API on both stores: resolve with a reason, links, conflicts, merges, chat
verification with an ID token, and step-up by postcode and one-time code."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from tests.conftest import TOKEN_SECRET, bearer
from tests.test_identity_oidc import AUDIENCE, ISSUER, IdentityProvider
from threadline.api.app import create_app
from threadline.api.deps import service_of
from threadline.core.events import Actor
from threadline.identity.identifiers import email
from threadline.settings import Settings

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def provider() -> Iterator[IdentityProvider]:
    idp = IdentityProvider()
    yield idp
    idp.close()


@asynccontextmanager
async def running(store: Any, provider: IdentityProvider) -> AsyncIterator[Any]:
    settings = Settings(token_secret=TOKEN_SECRET, oidc_issuer=ISSUER, oidc_audience=AUDIENCE,
                        oidc_jwks_url=provider.url)  # fmt: skip
    app = create_app(settings, store=store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            app.state.client = client
            yield app


@pytest.fixture
async def app(any_store, provider) -> AsyncIterator[Any]:
    async with running(any_store, provider) as started:
        yield started


@pytest.fixture
async def known_app(app) -> Any:
    """The service after the demo customers' first contacts: the directory knows them."""
    await known(app)
    return app


async def known(app: Any) -> None:
    """The demo customers are known to the directory, as after their first contacts."""
    recognition = service_of(app).recognition
    for number in ("+14155550123", "+15105550188", "+16505550142"):
        assert await recognition.customer("phone", number) is not None


def staff(app: Any, who: str = "agent-ana") -> dict[str, str]:
    if who.startswith("sup-"):
        return bearer(app, who, "supervisor")
    return bearer(app, who, "agent", queues=["orders"])


async def looked_up(app: Any, customer: str) -> list[dict[str, Any]]:
    events = await service_of(app).identity.history(customer)
    fields = ("looked_up_by", "reason", "kind")
    return [{k: e.payload[k] for k in fields} for e in events if e.type == "customer.looked_up"]


async def test_customers_resolve_from_the_business_system_and_each_look_up_is_recorded(
    app,
) -> None:
    client = app.state.client
    params = {"kind": "phone", "value": "(415) 555-0123", "reason": "customer at the counter"}
    response = await client.get("/identity/resolve", headers=staff(app), params=params)
    assert response.status_code == 200, response.text
    assert response.json() == {"customer_id": "cus-maya", "verified": True, "method": "system",
                               "kind": "phone"}  # fmt: skip
    assert await looked_up(app, "cus-maya") == [
        {"looked_up_by": "agent-ana", "reason": "customer at the counter", "kind": "phone"}
    ]
    # The directory learned Maya's other identifiers from her record: no second look-up.
    found = await service_of(app).identity.resolve("email", "maya.chen@example.com")
    assert found is not None and found.customer_id == "cus-maya" and found.verified
    for kind, value, who in (("member", "nw-100871", "cus-omar"),
                             ("email", " Lena.Park@Example.org ", "cus-lena")):  # fmt: skip
        assert await service_of(app).recognition.customer(kind, value) == who
        found = await service_of(app).identity.resolve(kind, value)
        assert found is not None and found.customer_id == who and found.verified


async def test_a_look_up_without_a_reason_is_refused_and_records_nothing(app) -> None:
    client = app.state.client
    response = await client.get("/identity/resolve", headers=staff(app),
                                params={"kind": "phone", "value": "+14155550123"})  # fmt: skip
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM
    assert await looked_up(app, "cus-maya") == []


async def test_customers_may_not_resolve_and_bad_identifiers_are_422(app) -> None:
    client = app.state.client
    customer = bearer(app, "cus-maya", "customer", customer="cus-maya")
    params = {"kind": "phone", "value": "+14155550123", "reason": "curious"}
    assert (
        await client.get("/identity/resolve", headers=customer, params=params)
    ).status_code == 403
    params["value"] = "12"
    response = await client.get("/identity/resolve", headers=staff(app), params=params)
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "phone"


async def test_a_conflicting_claim_is_409_and_a_supervisor_resolves_it(known_app) -> None:
    app = known_app
    client = app.state.client
    body = {"kind": "phone", "value": "+1 415 555 0123", "reason": "Omar says it is his"}
    response = await client.post("/customers/cus-omar/identifiers", headers=staff(app), json=body)
    assert response.status_code == 409 and response.headers["content-type"] == PROBLEM
    conflict_id = response.json()["conflict_id"]
    found = await service_of(app).identity.resolve("phone", "+14155550123")
    assert found.customer_id == "cus-maya"  # never merged silently
    assert (await client.get("/identity/conflicts", headers=staff(app))).status_code == 403
    listed = (await client.get("/identity/conflicts", headers=staff(app, "sup-sam"))).json()
    assert [(c["conflict_id"], c["claimed_for"], c["held_by"]) for c in listed] == [
        (conflict_id, "cus-omar", "cus-maya")
    ]
    response = await client.post(f"/identity/conflicts/{conflict_id}/resolve",
                                 headers=staff(app, "sup-sam"),
                                 json={"resolution": "keep", "note": "Maya's number"})  # fmt: skip
    assert response.status_code == 200 and response.json()["status"] == "keep"
    assert (await client.get("/identity/conflicts", headers=staff(app, "sup-sam"))).json() == []


async def test_a_typed_email_is_a_claim_until_the_postcode_verifies_it(app) -> None:
    client = app.state.client
    path = "/customers/cus-maya/identifiers"
    body = {"kind": "email", "value": "Maya@Work.example", "reason": "given on the phone"}
    response = await client.post(path, headers=staff(app), json=body)
    assert response.status_code == 201 and response.json()["verified"] is False
    response = await client.post(path, headers=staff(app), json={**body, "postcode": "10001"})
    assert response.status_code == 422
    response = await client.post(path, headers=staff(app), json={**body, "postcode": "94103"})
    assert response.status_code == 201 and response.json() == {
        "status": "verified", "customer_id": "cus-maya", "verified": True}  # fmt: skip
    listed = (await client.get(path, headers=staff(app))).json()
    assert {"kind": "email", "value": "m***@work.example", "verified": True,
            "method": "knowledge", "linked_by": "agent-ana"} in listed  # fmt: skip


async def test_supervisors_merge_and_unmerge(app) -> None:
    client = app.state.client
    identity = service_of(app).identity
    await identity.link("cus-dup", email("maya.c@example.org"), verified=False, method="typed",
                        linked_by="test", reason="test", actor=Actor("system", "t"))  # fmt: skip
    body = {"into": "cus-maya", "reason": "same person"}
    assert (await client.post("/customers/cus-dup/merge", headers=staff(app), json=body)
            ).status_code == 403  # fmt: skip
    response = await client.post("/customers/cus-dup/merge", headers=staff(app, "sup-sam"),
                                 json=body)  # fmt: skip
    assert response.status_code == 200, response.text
    assert (await identity.resolve("email", "maya.c@example.org")).customer_id == "cus-maya"
    response = await client.post("/customers/cus-dup/unmerge", headers=staff(app, "sup-sam"),
                                 json={"reason": "two people"})  # fmt: skip
    assert response.status_code == 200
    assert (await identity.resolve("email", "maya.c@example.org")).customer_id == "cus-dup"
    again = await client.post("/customers/cus-dup/unmerge", headers=staff(app, "sup-sam"),
                              json={"reason": "two people"})  # fmt: skip
    assert again.status_code == 409


async def _session(app: Any) -> tuple[dict[str, str], str, str]:
    client = app.state.client
    session = (await client.post("/chat/session")).json()
    headers = {"Authorization": f"Bearer {session['token']}"}
    nonce = (await client.get("/chat/verify/nonce", headers=headers)).json()["nonce"]
    return headers, session["customer_id"], nonce


async def test_an_id_token_links_the_chat_visitor_to_the_real_customer(app, provider) -> None:
    client = app.state.client
    headers, visitor, nonce = await _session(app)
    token = provider.token(nonce=nonce, sub="maya-at-idp")
    response = await client.post("/chat/verify", headers=headers, json={"id_token": token})
    assert response.status_code == 200, response.text
    assert response.json()["customer_id"] == "cus-maya"
    found = await service_of(app).identity.resolve("device", visitor)
    assert found.customer_id == "cus-maya" and found.verified and found.method == "oidc"
    found = await service_of(app).identity.resolve("idp", f"{ISSUER}#maya-at-idp")
    assert found.customer_id == "cus-maya"


async def test_a_sign_in_on_a_chat_is_recorded_on_its_timeline_at_its_level(app, provider) -> None:
    client, service = app.state.client, service_of(app)
    headers, visitor, nonce = await _session(app)
    leg = await service.chat.open(visitor)
    body = {"id_token": provider.token(nonce=nonce, sub="maya-at-idp"),
            "conversation_id": leg.conversation_id}  # fmt: skip
    response = await client.post("/chat/verify", headers=headers, json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["customer_id"], answer["level"], answer["conversation_id"]) == (
        "cus-maya", "idp", leg.conversation_id,
    )  # fmt: skip
    timeline = await service.conversations.timeline(leg.conversation_id)
    linked = [dict(e.payload) for e in timeline if e.type == "identity.linked"]
    assert linked == [{"kind": "device", "value": visitor, "verified": True, "method": "oidc",
                       "level": "idp", "customer_id": "cus-maya"}]  # fmt: skip
    state = await service.conversations.rehydrate(leg.conversation_id)
    assert state.customer_id == "cus-maya" and visitor in state.aliases
    # The new session token is the customer's: it opens her chat again.
    again = await service.chat.open("cus-maya", leg.conversation_id)
    assert again.conversation_id == leg.conversation_id


async def test_a_sign_in_on_someone_elses_chat_is_refused(app, provider) -> None:
    client, service = app.state.client, service_of(app)
    headers, _, nonce = await _session(app)
    other = await service.chat.open("visitor-someone-else")
    body = {"id_token": provider.token(nonce=nonce, sub="maya-at-idp"),
            "conversation_id": other.conversation_id}  # fmt: skip
    response = await client.post("/chat/verify", headers=headers, json=body)
    assert response.status_code == 404 and response.headers["content-type"] == PROBLEM
    timeline = await service.conversations.timeline(other.conversation_id)
    assert not any(e.type == "identity.linked" for e in timeline)
    assert await service.identity.resolve("idp", f"{ISSUER}#maya-at-idp") is None  # no half


@pytest.mark.parametrize(
    ("claims", "slug"),
    [
        ({"iss": "https://evil.example"}, "id-token-issuer"),
        ({"aud": "another-app"}, "id-token-audience"),
        ({"nonce": "someone-elses"}, "id-token-nonce"),
    ],
)
async def test_a_refused_id_token_is_401_and_links_nothing(app, provider, claims, slug) -> None:
    client = app.state.client
    headers, visitor, nonce = await _session(app)
    token = provider.token(**{"nonce": nonce, **claims})
    response = await client.post("/chat/verify", headers=headers, json={"id_token": token})
    assert response.status_code == 401 and response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == f"urn:threadline:problem:{slug}"
    assert await service_of(app).identity.resolve("device", visitor) is None


async def test_what_the_directory_learned_survives_a_restart_and_is_not_learned_again(
    any_store, provider
) -> None:
    async with running(any_store, provider) as first:
        await known(first)
        before = len(await service_of(first).identity.history("cus-maya"))
    async with running(any_store, provider) as second:
        assert (await service_of(second).identity.resolve("phone", "+14155550123")).verified
        await service_of(second).recognition.customer("phone", "+14155550123")
        assert len(await service_of(second).identity.history("cus-maya")) == before == 3

"""Guessing proofs is limited (issue 14, hole 2): per conversation, per customer asked
about (on any channel, until a person lifts the lockout) and per client, on both stores."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import TOKEN_SECRET, LiveServer, bearer
from tests.journey import visitor_says
from tests.test_agents_verification import SENSITIVE, Journey
from threadline.api.app import create_app
from threadline.identity.lockouts import Lockouts
from threadline.settings import Settings
from threadline.systems import Systems

WRONG = ("94110", "94111", "94112", "94114", "94115", "94116", "94117", "94118")


def _reveals(text: str) -> list[str]:
    return [word for word in SENSITIVE if word in text]


@pytest.fixture
async def server(any_store: Any) -> Any:
    async with LiveServer(create_app(Settings(token_secret=TOKEN_SECRET), store=any_store)) as live:
        yield live


async def _visit(server: Any, *texts: str) -> list[str]:
    """A new anonymous visitor says ``texts``; the bot's reply to each."""
    return (await visitor_says(server, *texts))[1]


async def _lockout(server: Any, customer_id: str, failures: int) -> dict[str, Any]:
    """The customer's lockout once ``failures`` wrong proofs have reached their stream."""
    sam = bearer(server.app, "sup-sam", "supervisor")
    async with httpx.AsyncClient(base_url=server.http, headers=sam) as http:
        for _ in range(200):
            state = (await http.get(f"/customers/{customer_id}/lockout")).json()
            if state["failures"] >= failures:
                return dict(state)
            await asyncio.sleep(0.02)
    raise AssertionError(f"{customer_id} has {state['failures']} failures, not {failures}")


async def test_guessing_across_conversations_locks_the_customer_until_a_person_lifts_it(
    server: Any,
) -> None:
    # Seven visitors, three wrong postcodes each for order 1042: twenty-one guesses.
    for n in range(7):
        guesses = WRONG[n % 3 : n % 3 + 3]
        replies = await _visit(server, "where is my order 1042?", *guesses)
        assert all(_reveals(reply) == [] for reply in replies)
    state = await _lockout(server, "cus-maya", 5)
    assert state["locked"] and state["limit"] == 5
    # Then the right one: still no details, and no proof recorded.
    (_, reply) = await _visit(server, "where is my order 1042?", "my postcode is 94103")
    assert _reveals(reply) == [] and "too many wrong answers" in reply
    # A supervisor lifts the lockout; the right postcode works again.
    sam = bearer(server.app, "sup-sam", "supervisor")
    async with httpx.AsyncClient(base_url=server.http, headers=sam) as http:
        lifted = await http.post(
            "/customers/cus-maya/unlock",
            json={"reason": "confirmed on the phone by her security word"},
        )
    assert lifted.status_code == 200 and lifted.json()["locked"] is False
    (_, reply) = await _visit(server, "where is my order 1042?", "my postcode is 94103")
    assert "carrier lost the parcel" in reply


async def test_only_supervisors_and_admins_lift_a_lockout(server: Any) -> None:
    body = {"reason": "asked nicely"}
    alex = bearer(server.app, "agt-alex", "agent", queues=["orders"])
    async with httpx.AsyncClient(base_url=server.http) as http:
        as_agent = await http.post("/customers/cus-maya/unlock", json=body, headers=alex)
        token = (await http.post("/chat/session")).json()["token"]
        as_customer = await http.post(
            "/customers/cus-maya/unlock", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        no_reason = await http.post(
            "/customers/cus-maya/unlock",
            json={},
            headers=bearer(server.app, "sup-sam", "supervisor"),
        )
    assert (as_agent.status_code, as_customer.status_code) == (403, 403)
    assert as_agent.headers["content-type"] == "application/problem+json"
    assert no_reason.status_code == 422


async def test_one_client_guessing_about_many_customers_is_stopped(
    any_store: Any, systems: Systems
) -> None:
    async with Journey(any_store, systems, chat_customer="visitor-guesser") as visitor:
        visitor.agent.lockouts = Lockouts(any_store)
        # Ten wrong answers about three customers, three a conversation (no one customer
        # reaches their own limit of five).
        for n, (order, wrong) in enumerate([("1042", 3), ("1043", 3), ("1057", 3), ("1042", 1)]):
            visitor.conversation_id, visitor.said = f"conv-guess-{n}", 0
            await visitor.chats(f"where is my order {order}?")
            for guess in WRONG[:wrong]:
                assert _reveals(await visitor.chats(f"my postcode is {guess}")) == []
        # Omar's right postcode, from the same client: refused all the same.
        visitor.conversation_id, visitor.said = "conv-guess-last", 0
        await visitor.chats("where is order 1043?")
        reply = await visitor.chats("my postcode is 94612")
        assert "too many wrong answers" in reply and "delivered" not in reply
        state = await visitor.conversations.rehydrate("conv-guess-last")
        assert state.customer_id == "visitor-guesser" and state.level is None


async def test_another_client_is_not_held_back_by_the_guesser(
    any_store: Any, systems: Systems
) -> None:
    lockouts = Lockouts(any_store)
    policy = systems.business.pack.verification.lockout
    for _ in range(policy.client_failures):
        lockouts.client_failed("device:visitor-guesser", policy)
    assert lockouts.client_locked("device:visitor-guesser", policy)
    async with Journey(any_store, systems, chat_customer="visitor-honest") as visitor:
        visitor.agent.lockouts = lockouts
        await visitor.chats("where is my order 1043?")
        reply = await visitor.chats("my postcode is 94612")
        assert "delivered" in reply


async def test_one_address_opens_only_so_many_chat_sessions(any_store: Any) -> None:
    settings = Settings(token_secret=TOKEN_SECRET, chat_sessions_per_hour=3)
    app = create_app(settings, store=any_store)
    async with LiveServer(app) as live, httpx.AsyncClient(base_url=live.http) as http:
        opened = [(await http.post("/chat/session")).status_code for _ in range(4)]
        refused = await http.post("/chat/session")
    assert opened == [201, 201, 201, 429]
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "urn:threadline:problem:too-many-requests"
    assert 3500 < int(refused.headers["Retry-After"]) <= 3601

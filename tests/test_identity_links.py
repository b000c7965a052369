"""Links proved in conversations reach the identity directory, once, on both stores."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import TOKEN_SECRET
from threadline.api.app import create_app
from threadline.api.deps import service_of
from threadline.core.events import Actor, Event
from threadline.identity.identifiers import phone
from threadline.identity.links import ConversationLinks, link_key
from threadline.settings import Settings

BOT = Actor("bot", "northwind-bot")
SECOND_PHONE = "+14155550177"


@pytest.fixture
async def app(any_store) -> AsyncIterator[Any]:
    app = create_app(Settings(token_secret=TOKEN_SECRET), store=any_store)
    async with app.router.lifespan_context(app):
        yield app


def claim(value: str, verified: bool, method: str) -> dict[str, Any]:
    return {"kind": "phone", "value": value, "verified": verified, "method": method}


async def linked(app: Any, cid: str, customer_id: str, payload: dict[str, Any],
                 actor: Actor = BOT, channel: str = "voice") -> Event:  # fmt: skip
    """A conversation on which ``identity.linked`` is recorded; the event as stored."""
    events = [
        Event(cid, "conversation.started", {"origin": channel}, channel=channel,
              actor=Actor("customer", customer_id), customer_id=customer_id,
              idempotency_key=f"{cid}-start"),
        Event(cid, "identity.linked", payload, channel=channel, actor=actor,
              customer_id=customer_id, idempotency_key=f"{cid}-link"),
    ]  # fmt: skip
    await service_of(app).conversations.record(cid, events)
    return (await service_of(app).conversations.timeline(cid))[-1]


async def settled(app: Any, value: str, verified: bool, timeout: float = 10.0) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            found = await service_of(app).identity.resolve("phone", value)
            if found is not None and found.verified == verified:
                return found
            await asyncio.sleep(0.05)


async def test_a_postcode_check_on_a_call_verifies_the_number_in_the_directory(app) -> None:
    identity = service_of(app).identity
    await identity.link("cus-maya", phone(SECOND_PHONE), verified=False, method="typed",
                        linked_by="agent-ana", reason="second number",
                        actor=Actor("human", "agent-ana"))  # fmt: skip
    event = await linked(app, "conv-call", "cus-maya", claim(SECOND_PHONE, True, "postcode"))
    found = await settled(app, SECOND_PHONE, verified=True)
    assert (found.customer_id, found.method, found.linked_by) == (
        "cus-maya", "knowledge", "northwind-bot")  # fmt: skip
    (verified,) = [e for e in await identity.history("cus-maya") if e.type == "identity.verified"
                   and e.payload["value"] == SECOND_PHONE]  # fmt: skip
    assert verified.payload["conversation_id"] == "conv-call"
    assert verified.idempotency_key == f"conversation:{event.event_id}"


async def test_a_redelivered_link_records_nothing_twice(app) -> None:
    await linked(app, "conv-call", "cus-lena", claim(SECOND_PHONE, True, "postcode"))
    await settled(app, SECOND_PHONE, verified=True)
    record = next(r for r in await service_of(app).store.read("conv-call")
                  if r.type == "identity.linked")  # fmt: skip
    again = ConversationLinks(service_of(app).identity)
    await asyncio.gather(again.handle(record), again.handle(record))
    history = await service_of(app).identity.history("cus-lena")
    copies = [e for e in history if e.idempotency_key == link_key(record)]
    assert [e.type for e in copies] == ["identity.verified"]


async def test_caller_id_claims_and_placeholder_customers_stay_out(app) -> None:
    await linked(app, "conv-claim", "cus-omar", claim(SECOND_PHONE, False, "caller_id"))
    await linked(app, "conv-stranger", "caller-0190", claim("+12025550199", True, "postcode"))
    # A link that does travel, recorded after both: once it is in, the others were seen.
    await linked(app, "conv-typed", "cus-omar", claim("+15105550111", False, "typed"),
                 actor=Actor("human", "agent-ana"))  # fmt: skip
    typed = await settled(app, "+15105550111", verified=False)
    assert (typed.customer_id, typed.method) == ("cus-omar", "typed")
    links = ConversationLinks(service_of(app).identity)
    for cid in ("conv-claim", "conv-stranger"):  # handled again, in hand: still nothing
        for record in await service_of(app).store.read(cid):
            await links.handle(record)
    assert await service_of(app).identity.resolve("phone", SECOND_PHONE) is None
    assert await service_of(app).identity.resolve("phone", "+12025550199") is None


async def test_a_proof_that_identifies_a_visitor_links_her_session_to_the_customer(app) -> None:
    visitor = "visitor-5f1c9a02"
    proof = {"kind": "device", "value": visitor, "verified": True, "method": "postcode",
             "customer_id": "cus-maya"}  # fmt: skip
    await linked(app, "conv-chat", visitor, proof, channel="chat")
    identity = service_of(app).identity
    async with asyncio.timeout(10):
        while (found := await identity.resolve("device", visitor)) is None:
            await asyncio.sleep(0.05)
    assert (found.customer_id, found.verified, found.method) == ("cus-maya", True, "knowledge")
    # A call's leg is no device anyone comes back on: it stays out.
    leg = {"kind": "device", "value": "CA-1234567", "verified": True, "method": "otp"}
    await linked(app, "conv-leg", "cus-maya", leg)
    await linked(app, "conv-after", "cus-omar", claim("+15105550112", False, "typed"),
                 actor=Actor("human", "agent-ana"))  # fmt: skip
    await settled(app, "+15105550112", verified=False)
    assert await identity.resolve("device", "CA-1234567") is None


async def test_a_wrong_code_counts_against_the_customer_it_was_for(app) -> None:
    rejected = {"method": "otp", "reason": "wrong", "challenge_id": "otp-1",
                "customer_id": "cus-maya"}  # fmt: skip
    cid = "conv-wrong"
    await service_of(app).conversations.record(cid, [
        Event(cid, "conversation.started", {"origin": "voice"}, channel="voice",
              actor=Actor("customer", "caller-77"), customer_id="caller-77",
              idempotency_key=f"{cid}-start"),
        Event(cid, "verification.rejected", rejected, channel="voice", actor=BOT,
              customer_id="caller-77", idempotency_key=f"{cid}-wrong"),
    ])  # fmt: skip
    identity = service_of(app).identity

    async def failures() -> list[Any]:
        return [e for e in await identity.history("cus-maya") if e.type == "verification.failed"]

    async with asyncio.timeout(10):
        while not (found := await failures()):
            await asyncio.sleep(0.05)
    (failed,) = found
    assert dict(failed.payload) == {
        "method": "otp", "reason": "wrong", "challenge_id": "otp-1", "conversation_id": cid,
        "kind": None, "value": None,
    }  # fmt: skip
    links = ConversationLinks(identity)
    for record in await service_of(app).store.read(cid):  # a redelivery
        await links.handle(record)
    assert len(await failures()) == 1

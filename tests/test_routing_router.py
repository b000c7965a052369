"""The router on a real SQLite store, the in-process bus and the relay: offers, expiry,
re-offers, capacity, presence, restart catch-up and redelivery."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.test_routing_demo import demo_config, eventually
from threadline.bus.memory import MemoryBus
from threadline.core.events import Actor, Event, EventRecord, new_id, utcnow
from threadline.core.ports import Bus, Handler
from threadline.engine.conversations import Conversations
from threadline.engine.outbox import Relay
from threadline.routing import AgentPresence, Router, RoutingConfig, agent_stream
from threadline.store.sqlite import SQLiteStore

SHORT = 0.05
LONG = 30.0
MAYA = Actor("customer", "cus-maya")
BOT = Actor("bot", "northwind-bot")


@dataclass
class Desk:
    """A store with conversations, agents' presence, the bus, the relay and a router."""

    store: SQLiteStore
    conversations: Conversations
    presence: AgentPresence
    bus: MemoryBus
    relay: Relay
    router: Router

    async def stop(self) -> None:
        await self.relay.stop()
        await self.router.stop()
        await self.bus.close()

    async def record(self, cid: str, type_: str, payload: dict[str, Any], **kw: Any) -> None:
        kw.setdefault("actor", Actor("human", payload.get("agent_id", "someone")))
        await self.conversations.record(cid, [Event(cid, type_, payload, **kw)])

    async def waiting_in(self, queue: str) -> str:
        """A new conversation whose handoff to ``queue`` was requested."""
        cid = new_id()
        await self.record(cid, "conversation.started", {"origin": "chat"}, actor=MAYA)
        payload = {"queue": queue, "reason_code": "customer_request"}
        await self.record(cid, "handoff.requested", payload, actor=BOT)
        return cid

    async def available(self, *agent_ids: str) -> None:
        for agent_id in agent_ids:
            await self.presence.set_presence(agent_id, "available")
        await self.settled()

    async def events(self, cid: str, type_: str) -> list[Event]:
        return [e for e in await self.conversations.timeline(cid) if e.type == type_]

    async def offers(self, cid: str) -> list[str]:
        return [e.payload["agent_id"] for e in await self.events(cid, "handoff.offered")]

    async def nth(self, cid: str, type_: str, n: int) -> Event:
        """The ``n``-th event of ``type_`` on the conversation, once it is there."""

        async def found() -> Event | None:
            events = await self.events(cid, type_)
            return events[n - 1] if len(events) >= n else None

        event: Event = await eventually(found)
        return event

    async def offer(self, cid: str, n: int = 1) -> Event:
        return await self.nth(cid, "handoff.offered", n)

    async def settled(self) -> None:
        """Wait until the router has handled everything in the log so far."""
        head = await _head(self.store)
        await eventually(lambda: self.relay.cursor >= head)
        await self.bus.drain()

    async def accept(self, cid: str, offer: Event) -> None:
        await self.record(cid, "handoff.accepted", _answer(offer))

    async def decline(self, cid: str, offer: Event) -> None:
        await self.record(cid, "handoff.declined", _answer(offer))


def _answer(offer: Event) -> dict[str, str]:
    return {"offer_id": offer.payload["offer_id"], "agent_id": offer.payload["agent_id"]}


async def _head(store: SQLiteStore) -> int:
    position = 0
    while page := await store.read_all(position, 10_000):
        position = page[-1].position
    return position


async def open_desk(store: SQLiteStore, config: RoutingConfig, ttl: float) -> Desk:
    conversations = Conversations(store)
    bus = MemoryBus(store, retry_delay=0.001)
    router = Router(conversations, config, offer_ttl=ttl, retry_delay=0.01)
    await router.start(bus)
    relay = Relay(store, bus, store, poll_interval=0.005)
    await relay.start()
    return Desk(store, conversations, AgentPresence(store), bus, relay, router)


@pytest.fixture
async def desk(sqlite_store: SQLiteStore) -> AsyncIterator[Desk]:
    """Offers expire after 50 ms."""
    desk = await open_desk(sqlite_store, demo_config(), SHORT)
    yield desk
    await desk.stop()


@pytest.fixture
async def calm_desk(sqlite_store: SQLiteStore) -> AsyncIterator[Desk]:
    """Offers stay open for 30 s, longer than any test."""
    desk = await open_desk(sqlite_store, demo_config(), LONG)
    yield desk
    await desk.stop()


# -- offers ------------------------------------------------------------------------------


async def test_a_handoff_is_offered_to_an_eligible_agent_until_it_expires(calm_desk: Desk) -> None:
    await calm_desk.available("agent-ana")
    cid = await calm_desk.waiting_in("orders")
    offer = await calm_desk.offer(cid)
    [request] = await calm_desk.events(cid, "handoff.requested")
    assert offer.payload["agent_id"] == "agent-ana" and offer.payload["queue"] == "orders"
    assert offer.actor == Actor("system", "router")
    expires_at = datetime.fromisoformat(offer.payload["expires_at"])
    assert expires_at == offer.occurred_at + timedelta(seconds=LONG)
    assert (offer.causation_id, offer.correlation_id) == (request.event_id, request.correlation_id)
    assert offer.idempotency_key == f"router:offer:{request.event_id}"


async def test_an_agent_becoming_available_is_offered_what_waits(calm_desk: Desk) -> None:
    cid = await calm_desk.waiting_in("repairs")
    await calm_desk.settled()
    assert await calm_desk.offers(cid) == []
    await calm_desk.presence.set_presence("agent-ben", "available")
    assert (await calm_desk.offer(cid)).payload["agent_id"] == "agent-ben"


async def test_an_agent_who_stepped_away_is_offered_nothing(calm_desk: Desk) -> None:
    await calm_desk.available("agent-ben")
    await calm_desk.presence.set_presence("agent-ben", "away")
    cid = await calm_desk.waiting_in("repairs")
    await calm_desk.settled()
    assert await calm_desk.offers(cid) == []


async def test_freeing_capacity_offers_the_next_conversation_in_the_queue(
    sqlite_store: SQLiteStore,
) -> None:
    desk = await open_desk(sqlite_store, demo_config(capacity=1), LONG)
    try:
        await desk.available("agent-ana")
        first = await desk.waiting_in("orders")
        second = await desk.waiting_in("orders")
        await desk.accept(first, await desk.offer(first))
        await desk.settled()
        assert await desk.offers(second) == []
        await desk.record(first, "conversation.resolved", {"outcome": "done"})
        assert (await desk.offer(second)).payload["agent_id"] == "agent-ana"
    finally:
        await desk.stop()


async def test_a_transfer_frees_the_agent_and_offers_the_new_queue(calm_desk: Desk) -> None:
    await calm_desk.available("agent-ana", "agent-ben")
    cid = await calm_desk.waiting_in("orders")
    await calm_desk.accept(cid, await calm_desk.offer(cid))
    transfer = {"queue": "repairs", "reason_code": "transfer", "skills": ["repairs"]}
    await calm_desk.record(cid, "handoff.requested", transfer, actor=Actor("human", "agent-ana"))
    assert (await calm_desk.offer(cid, 2)).payload["agent_id"] == "agent-ben"
    assert calm_desk.router.state.agent("agent-ana").load == 0


# -- declines and expiry ---------------------------------------------------------------


async def test_an_expired_offer_is_declined_and_offered_to_the_next_agent(desk: Desk) -> None:
    await desk.available("agent-ana", "agent-ben")
    cid = await desk.waiting_in("billing")
    first = await desk.offer(cid)
    second = await desk.offer(cid, 2)
    expired = await desk.nth(cid, "handoff.declined", 1)
    assert (first.payload["agent_id"], second.payload["agent_id"]) == ("agent-ana", "agent-ben")
    assert expired.payload == {
        "offer_id": first.payload["offer_id"],
        "agent_id": "agent-ana",
        "reason": "expired",
    }
    assert expired.causation_id == first.event_id
    assert second.causation_id == expired.event_id


async def test_a_declined_conversation_is_never_offered_back_to_who_declined(desk: Desk) -> None:
    await desk.available("agent-ana", "agent-ben")
    cid = await desk.waiting_in("billing")
    await desk.decline(cid, await desk.offer(cid))
    await desk.offer(cid, 2)
    # Ben lets his offer expire; Ana declined hers, so nobody is left to offer it to.
    await desk.nth(cid, "handoff.declined", 2)
    await desk.settled()
    assert await desk.offers(cid) == ["agent-ana", "agent-ben"]
    assert desk.router.state.waiting[cid].offer is None


# -- restart and redelivery -----------------------------------------------------------


async def test_a_restarted_router_expires_offers_that_ran_out_and_offers_again(
    sqlite_store: SQLiteStore,
) -> None:
    presence = AgentPresence(sqlite_store)
    await presence.set_presence("agent-ana", "available")
    await presence.set_presence("agent-ben", "available")
    conversations = Conversations(sqlite_store)
    cid = new_id()
    ran_out = utcnow() - timedelta(minutes=1)
    for type_, payload in [
        ("conversation.started", {"origin": "voice"}),
        ("handoff.requested", {"queue": "billing", "reason_code": "sensitive_intent"}),
        ("handoff.offered", {"offer_id": "offer-before-restart", "agent_id": "agent-ana",
                             "queue": "billing", "expires_at": ran_out}),
    ]:  # fmt: skip
        await conversations.record(cid, [Event(cid, type_, payload)])

    desk = await open_desk(sqlite_store, demo_config(), LONG)
    try:
        offer = await desk.offer(cid, 2)
        [expired] = await desk.events(cid, "handoff.declined")
        assert expired.payload["offer_id"] == "offer-before-restart"
        assert expired.payload["reason"] == "expired"
        assert offer.payload["agent_id"] == "agent-ben"
    finally:
        await desk.stop()


class Unplugged(Bus):
    """A bus that never delivers: its router falls behind the log."""

    async def publish(self, records: Sequence[EventRecord]) -> None:
        pass

    async def subscribe(
        self,
        group: str,
        handler: Handler,
        *,
        concurrency: int = 1,
        types: Collection[str] | None = None,
    ) -> None:
        pass

    async def close(self) -> None:
        pass


async def _record(desk: Desk, cid: str, seq: int) -> EventRecord:
    [record] = await desk.store.read(cid, from_seq=seq, limit=1)
    return record


async def test_the_same_request_delivered_again_or_to_a_router_behind_offers_once(
    calm_desk: Desk,
) -> None:
    behind = Router(calm_desk.conversations, demo_config(), offer_ttl=LONG)
    await behind.start(Unplugged())
    try:
        await calm_desk.available("agent-ana")
        await behind.handle(await _record(calm_desk, agent_stream("agent-ana"), 1))
        cid = await calm_desk.waiting_in("orders")
        await calm_desk.offer(cid)
        request = await _record(calm_desk, cid, 2)
        await calm_desk.router.handle(request)
        # The router behind has not seen the offer; it proposes the same key, which the log keeps.
        await behind.handle(request)
        await behind.handle(request)
        await calm_desk.settled()
        assert await calm_desk.offers(cid) == ["agent-ana"]
    finally:
        await behind.stop()


async def test_a_router_rebuilt_from_the_log_has_the_live_routers_state(calm_desk: Desk) -> None:
    await calm_desk.available("agent-ana", "agent-ben")
    taken = await calm_desk.waiting_in("billing")
    await calm_desk.accept(taken, await calm_desk.offer(taken))
    offered = await calm_desk.waiting_in("billing")
    await calm_desk.offer(offered)
    await calm_desk.settled()
    rebuilt = Router(calm_desk.conversations, demo_config())
    await rebuilt.rebuild()
    assert rebuilt.state == calm_desk.router.state
    assert rebuilt.state.agent("agent-ana").conversations == {taken}
    assert rebuilt.state.waiting[offered].offer is not None

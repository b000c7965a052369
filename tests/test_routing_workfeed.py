"""The worklist feed on both stores: log order, snapshots, and replays equal to live."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from tests.counting import CountingReads, read_through
from threadline.core.events import Event, EventCodec, utcnow
from threadline.routing.queues import agent_stream
from threadline.routing.workfeed import Idle, Snapshot, WorkFeed
from threadline.routing.worklist import Viewer, WorkChange

ANA = Viewer("agent-ana", frozenset({"orders", "billing"}))
CODEC = EventCodec()


async def append(store, cid: str, type_: str, **payload: Any) -> int:
    event = Event(cid, type_, payload, idempotency_key=f"{cid}-{type_}-{utcnow().timestamp()}")
    result = await store.append(cid, [CODEC.encode(event)])
    return result.positions[-1]


async def hand_to_ana(store, cid: str) -> int:
    """Offer ``cid`` to Ana; the log position of the offer."""
    await append(store, cid, "handoff.requested", queue="orders", reason_code="customer_request")
    return await append(store, cid, "handoff.offered", offer_id=f"o-{cid}", agent_id="agent-ana",
                        queue="orders", expires_at=utcnow() + timedelta(minutes=1))  # fmt: skip


async def take(items: AsyncIterator[Any], n: int) -> list[Any]:
    got: list[Any] = []
    if n == 0:
        return got
    async with asyncio.timeout(5):
        async for item in items:
            if not isinstance(item, Idle):
                got.append(item)
            if len(got) == n:
                return got
    return got


async def test_a_new_desk_gets_the_state_so_far_then_changes_in_log_order(any_store) -> None:
    feed = WorkFeed(any_store)
    await hand_to_ana(any_store, "c1")
    await feed.catch_up(force=True)
    with feed.subscribe(ANA) as subscription:
        items = feed.follow(subscription, None, idle=0.05)
        (snapshot,) = await take(items, 1)
        assert isinstance(snapshot, Snapshot) and "c1" in snapshot.state.waiting
        await hand_to_ana(any_store, "c2")
        await append(any_store, "c1", "handoff.accepted", offer_id="o-c1", agent_id="agent-ana")
        feed.ring()  # the hub rings once, whichever conversation it delivered first
        changes: list[WorkChange] = await take(items, 3)
    assert [(c.conversation_id, c.event_type) for c in changes] == [
        ("c2", "handoff.requested"), ("c2", "handoff.offered"), ("c1", "handoff.accepted"),
    ]  # fmt: skip
    positions = [snapshot.position] + [c.position for c in changes]
    assert positions == sorted(set(positions))


async def test_a_replay_from_any_cursor_is_what_a_desk_connected_throughout_got(
    any_store,
) -> None:
    feed = WorkFeed(any_store)
    await feed.catch_up(force=True)
    with feed.subscribe(ANA) as subscription:
        live = feed.follow(subscription, None, idle=0.05)
        (start,) = await take(live, 1)
        await append(any_store, agent_stream("agent-ana"), "agent.presence_changed",
                     agent_id="agent-ana", presence="available")  # fmt: skip
        await hand_to_ana(any_store, "c1")
        await hand_to_ana(any_store, "c2")
        await append(any_store, "c1", "handoff.accepted", offer_id="o-c1", agent_id="agent-ana")
        await append(any_store, "c1", "message.received", text="hello")
        await append(any_store, "c2", "handoff.declined", offer_id="o-c2", agent_id="agent-ana")
        await append(any_store, "c1", "conversation.resolved", outcome="answered")
        feed.ring()
        seen: list[WorkChange] = await take(live, 9)
    assert [c.event_type for c in seen][-1] == "conversation.resolved"
    for k, cursor in enumerate([start.position] + [c.position for c in seen]):
        with feed.subscribe(ANA) as again:
            replayed = await take(feed.follow(again, cursor, idle=0.05), len(seen) - k)
        assert replayed == seen[k:], k


async def test_a_cursor_too_far_behind_gets_a_snapshot_instead(any_store) -> None:
    feed = WorkFeed(any_store, backlog_limit=2)
    first = await append(any_store, "c0", "handoff.requested", queue="orders",
                         reason_code="customer_request")  # fmt: skip
    for cid in ("c1", "c2"):
        await hand_to_ana(any_store, cid)
    await feed.catch_up(force=True)
    with feed.subscribe(ANA) as subscription:
        (item,) = await take(feed.follow(subscription, first, idle=0.05), 1)
    assert isinstance(item, Snapshot) and set(item.state.waiting) == {"c0", "c1", "c2"}


async def test_events_the_hub_hands_over_in_order_need_no_read_back(any_store) -> None:
    store = CountingReads(any_store, "read_all")
    feed = WorkFeed(store)
    first = await read_through(any_store, 0, await hand_to_ana(any_store, "c1"))
    with feed.subscribe(ANA) as subscription:
        items = feed.follow(subscription, None, idle=5)
        await take(items, 1)
        feed.ring(first[-1])  # the first event heard: the feed reads to be sure of the rest
        await feed.catch_up()
        assert feed.position == first[-1].position
        reads = store.reads
        await hand_to_ana(any_store, "c2")
        last = await append(any_store, "c1", "handoff.accepted", offer_id="o-c1",
                            agent_id="agent-ana")  # fmt: skip
        for record in await read_through(any_store, first[-1].position, last):
            feed.ring(record)
        changes: list[WorkChange] = await take(items, 5)
        assert store.reads == reads
    assert [(c.conversation_id, c.event_type) for c in changes] == [
        ("c1", "handoff.requested"), ("c1", "handoff.offered"),
        ("c2", "handoff.requested"), ("c2", "handoff.offered"), ("c1", "handoff.accepted"),
    ]  # fmt: skip


async def test_a_feed_behind_what_it_heard_reads_back_in_log_order(any_store) -> None:
    store = CountingReads(any_store, "read_all")
    feed = WorkFeed(store)
    heard = await read_through(any_store, 0, await hand_to_ana(any_store, "c1"))
    for record in heard:
        feed.ring(record)  # heard with no desk: nothing is folded
    with feed.subscribe(ANA) as subscription:
        items = feed.follow(subscription, None, idle=5)
        (snapshot,) = await take(items, 1)
        assert isinstance(snapshot, Snapshot) and not snapshot.state.waiting
        last = await hand_to_ana(any_store, "c2")
        for record in await read_through(any_store, heard[-1].position, last):
            feed.ring(record)  # in order, but the feed is behind what it heard
        changes: list[WorkChange] = await take(items, 4)
        assert store.reads > 0
    assert [(c.conversation_id, c.event_type) for c in changes] == [
        ("c1", "handoff.requested"), ("c1", "handoff.offered"),
        ("c2", "handoff.requested"), ("c2", "handoff.offered"),
    ]  # fmt: skip

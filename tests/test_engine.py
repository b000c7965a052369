"""The write path: Conversations.record and rehydrate on a real SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tests.counting import CountingReads
from threadline.core.conversation import (
    RECENT_KEYS,
    RESOLVED,
    STATE_SCHEMA_VERSION,
    WITH_HUMAN,
    ConversationState,
)
from threadline.core.errors import ConflictError, UnknownEventType, ValidationError
from threadline.core.events import Actor, Event
from threadline.core.ports import Snapshot
from threadline.engine.conversations import CONFLICT_RETRIES, Conversations
from threadline.store.sqlite import SQLiteStore, open_sqlite

CID = "conv-1"
T0 = datetime(2025, 3, 4, 9, 0, tzinfo=UTC)
# The in-person desk stamps events in local time; the log keeps UTC.
BERLIN = timezone(timedelta(hours=1))
MAYA = Actor("customer", "cus-maya")
BOT = Actor("bot", "northwind-bot")
ANA = Actor("human", "ana")


def ev(type_: str, payload: dict[str, Any], minute: float = 0, **kw: Any) -> Event:
    kw.setdefault("actor", BOT)
    kw.setdefault("customer_id", "cus-maya")
    when = (T0 + timedelta(minutes=minute)).astimezone(BERLIN)
    return Event(CID, type_, payload, occurred_at=when, **kw)


def started(key: str = "") -> Event:
    return ev("conversation.started", {"origin": "chat"}, channel="chat", idempotency_key=key)


def received(text: str = "where is my order 1042?", key: str = "", minute: float = 1) -> Event:
    return ev("message.received", {"text": text}, minute, actor=MAYA, idempotency_key=key)


def story() -> list[Event]:
    """A chat that reaches a human and is resolved, with old producers in the mix."""
    offer = {"offer_id": "offer-1", "agent_id": "ana", "queue": "billing"}
    return [
        started(),
        ev("leg.started", {"leg_id": "chat-1", "channel": "chat"}, 0, leg_id="chat-1"),
        received(minute=1),
        ev("intent.detected", {"intent": "refund", "confidence": 0.42}, 1),
        ev("slot.filled", {"name": "order_number", "value": "1042"}, 2),
        ev("message.sent", {"text": "Let me get a colleague."}, 2, version=1),
        ev("handoff.requested", {"queue": "billing", "reason": "wants a person"}, 2, version=1),
        ev("handoff.offered", {**offer, "expires_at": "2025-03-04T09:10:00Z"}, 3),
        ev("handoff.accepted", {"offer_id": "offer-1", "agent_id": "ana"}, 4, actor=ANA),
        ev("consent.granted", {"purpose": "recording"}, 4, actor=MAYA),
        ev("conversation.waiting", {"reason": "receipt photo"}, 5, actor=ANA),
        received("here it is", minute=9),
        ev("action.requested", {"action_id": "a-1", "tool": "issue_refund"}, 10),
        ev("action.completed", {"action_id": "a-1", "result": {"refund": "R-77"}}, 11),
        ev("leg.ended", {"leg_id": "chat-1"}, 12),
        ev("conversation.resolved", {"outcome": "refund_issued"}, 12, actor=ANA),
    ]


async def record_each(conversations: Conversations, events: list[Event]) -> None:
    for event in events:
        await conversations.record(CID, [event])


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[SQLiteStore]:
    store = await open_sqlite(tmp_path / "threadline.db")
    yield store
    await store.close()


@pytest.fixture
def conversations(store: SQLiteStore) -> Conversations:
    return Conversations(store)


# -- record and rehydrate ----------------------------------------------------------------


async def test_recorded_events_rehydrate_into_the_state_they_describe(
    conversations: Conversations,
) -> None:
    await record_each(conversations, story()[:9])
    state = await conversations.rehydrate(CID)
    assert state.seq == 9
    assert state.status == WITH_HUMAN
    assert state.assignee == "ana"
    assert state.handoff_reason == "other"
    assert set(state.live_legs) == {"chat-1"}
    assert state.slots["order_number"]["value"] == "1042"


async def test_record_returns_where_the_events_landed(conversations: Conversations) -> None:
    first = await conversations.record(CID, story()[:3])
    second = await conversations.record(CID, [received(minute=5)])
    assert (first.seqs, second.seqs) == ((1, 2, 3), (4,))
    assert first.positions[-1] < second.positions[0]
    assert not first.duplicate and not second.duplicate


async def test_events_are_stored_in_utc(conversations: Conversations) -> None:
    await conversations.record(CID, [started()])
    (event,) = await conversations.timeline(CID)
    assert event.occurred_at == T0
    assert event.occurred_at.utcoffset() == timedelta(0)


async def test_events_written_in_an_old_version_read_back_in_the_current_one(
    conversations: Conversations,
) -> None:
    await conversations.record(CID, story()[:7])
    sent, handoff = (await conversations.timeline(CID))[5:7]
    assert (sent.version, handoff.version) == (3, 2)
    assert sent.payload["heard_text"] == "Let me get a colleague."
    assert handoff.payload["reason_detail"] == "wants a person"


async def test_the_state_survives_reopening_the_store(tmp_path) -> None:
    path = tmp_path / "threadline.db"
    store = await open_sqlite(path)
    await record_each(Conversations(store), story())
    await store.close()
    store = await open_sqlite(path)
    try:
        state = await Conversations(store).rehydrate(CID)
    finally:
        await store.close()
    assert (state.seq, state.status, state.outcome) == (16, RESOLVED, "refund_issued")


# -- snapshots ---------------------------------------------------------------------------


async def test_no_snapshot_is_written_before_snapshot_every_events(store: SQLiteStore) -> None:
    await record_each(Conversations(store, snapshot_every=5), story()[:4])
    assert await store.load_snapshot(CID, STATE_SCHEMA_VERSION) is None


async def test_a_snapshot_is_written_every_snapshot_every_events(store: SQLiteStore) -> None:
    conversations = Conversations(store, snapshot_every=3)
    seen = []
    for event in story()[:8]:
        await conversations.record(CID, [event])
        snapshot = await store.load_snapshot(CID, STATE_SCHEMA_VERSION)
        seen.append(None if snapshot is None else snapshot.seq)
    assert seen == [None, None, 3, 3, 3, 6, 6, 6]


async def test_a_record_that_crosses_the_boundary_snapshots_the_state_after_it(
    store: SQLiteStore,
) -> None:
    conversations = Conversations(store, snapshot_every=4)
    events = story()
    await conversations.record(CID, events[:3])
    await conversations.record(CID, events[3:6])
    snapshot = await store.load_snapshot(CID, STATE_SCHEMA_VERSION)
    assert snapshot is not None and snapshot.seq == 6


async def test_a_snapshot_holds_the_state_folded_from_the_log(store: SQLiteStore) -> None:
    conversations = Conversations(store, snapshot_every=len(story()))
    await conversations.record(CID, story())
    snapshot = await store.load_snapshot(CID, STATE_SCHEMA_VERSION)
    assert snapshot is not None
    from_log = await conversations.rehydrate(CID, snapshots=False)
    assert ConversationState.from_bytes(snapshot.state) == from_log


async def test_rehydrate_with_snapshots_equals_rehydrate_without(store: SQLiteStore) -> None:
    conversations = Conversations(store, snapshot_every=4)
    await record_each(conversations, story())
    assert (await store.load_snapshot(CID, STATE_SCHEMA_VERSION)) is not None
    with_snapshots = await conversations.rehydrate(CID)
    assert with_snapshots == await conversations.rehydrate(CID, snapshots=False)


async def test_rehydrate_starts_from_the_latest_snapshot(
    store: SQLiteStore, conversations: Conversations
) -> None:
    await conversations.record(CID, story()[:3])
    marked = replace(await conversations.rehydrate(CID), summary=("from the snapshot",))
    await store.save_snapshot(Snapshot(CID, 3, STATE_SCHEMA_VERSION, marked.to_bytes()))
    await conversations.record(CID, [received("still there?", minute=6)])
    state = await conversations.rehydrate(CID)
    assert state.summary == ("from the snapshot",)
    assert (state.seq, state.messages_in) == (4, 2)


async def test_a_snapshot_in_another_state_schema_version_is_ignored(
    store: SQLiteStore, conversations: Conversations
) -> None:
    await conversations.record(CID, story())
    await store.save_snapshot(Snapshot(CID, 10_000, 999, b"\x00 not a state"))
    state = await conversations.rehydrate(CID)
    assert state == await conversations.rehydrate(CID, snapshots=False)
    assert (state.seq, state.status) == (16, RESOLVED)


# -- idempotency -----------------------------------------------------------------------------


async def test_a_repeated_record_returns_the_first_result_and_writes_nothing(
    store: SQLiteStore, conversations: Conversations
) -> None:
    await conversations.record(CID, [started("start")])
    first = await conversations.record(CID, [received(key="m-1"), received("hello?", key="m-2")])
    again = await conversations.record(CID, [received(key="m-1"), received("hello?", key="m-2")])
    assert again.duplicate
    assert (again.seqs, again.positions) == (first.seqs, first.positions)
    assert len(await store.read(CID)) == 3


async def test_a_repeat_after_the_state_moved_on_is_still_a_duplicate(
    store: SQLiteStore, conversations: Conversations
) -> None:
    await conversations.record(CID, [started("start"), received(key="m-1")])
    await conversations.record(CID, [ev("conversation.resolved", {"outcome": "answered"}, 3)])
    # The message would be illegal now, but it is a repeat of one already recorded.
    again = await conversations.record(CID, [received(key="m-1")])
    assert again.duplicate and again.seqs == (2,)
    assert len(await store.read(CID)) == 3


async def test_a_repeat_older_than_the_keys_the_state_remembers_is_still_a_duplicate(
    store: SQLiteStore, conversations: Conversations
) -> None:
    await conversations.record(CID, [started("start")])
    chatter = [received(f"message {i}", key=f"m-{i}") for i in range(RECENT_KEYS + 5)]
    await conversations.record(CID, chatter)
    again = await conversations.record(CID, [started("start")])
    assert again.duplicate and again.seqs == (1,)
    assert len(await store.read(CID)) == RECENT_KEYS + 6


async def test_a_repeat_with_a_stale_expected_seq_is_a_duplicate_not_a_conflict(
    store: SQLiteStore, conversations: Conversations
) -> None:
    await conversations.record(CID, [started("start")], expected_seq=0)
    await conversations.record(CID, [received(key="m-1")], expected_seq=1)
    again = await conversations.record(CID, [started("start")], expected_seq=0)
    assert again.duplicate and again.seqs == (1,)


# -- concurrency -------------------------------------------------------------------------------


async def test_concurrent_records_without_expected_seq_all_land(
    store: SQLiteStore, conversations: Conversations, monkeypatch: pytest.MonkeyPatch
) -> None:
    await conversations.record(CID, [started()])
    writers = CONFLICT_RETRIES
    # Hold every writer's first append until all have read the same head, so all
    # but one of them must conflict and decide again.
    everyone_read = asyncio.Barrier(writers)
    calls = 0
    conflicts = 0
    append = store.append

    async def append_after_everyone_read(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls, conflicts
        calls += 1
        if calls <= writers:
            await everyone_read.wait()
        try:
            return await append(*args, **kwargs)
        except ConflictError:
            conflicts += 1
            raise

    monkeypatch.setattr(store, "append", append_after_everyone_read)
    results = await asyncio.gather(
        *(conversations.record(CID, [received(f"message {i}", minute=2)]) for i in range(writers))
    )
    assert conflicts >= writers - 1
    assert sorted(r.seqs[0] for r in results) == list(range(2, writers + 2))
    assert (await conversations.rehydrate(CID)).messages_in == writers


async def test_a_stale_expected_seq_raises_conflict_and_writes_nothing(
    store: SQLiteStore, conversations: Conversations
) -> None:
    await conversations.record(CID, [started(), received()])
    with pytest.raises(ConflictError) as caught:
        await conversations.record(CID, [received("me again", minute=2)], expected_seq=1)
    assert (caught.value.expected, caught.value.actual) == (1, 2)
    assert caught.value.retryable
    assert len(await store.read(CID)) == 2


async def test_a_current_expected_seq_records(conversations: Conversations) -> None:
    await conversations.record(CID, [started()], expected_seq=0)
    result = await conversations.record(CID, [received()], expected_seq=1)
    assert result.seqs == (2,)


# -- validation ------------------------------------------------------------------------------


async def test_an_invalid_payload_writes_nothing(
    store: SQLiteStore, conversations: Conversations
) -> None:
    await conversations.record(CID, [started()])
    bad = ev("slot.filled", {"name": "order_number"}, 2)
    with pytest.raises(ValidationError) as caught:
        await conversations.record(CID, [received(), bad])
    assert caught.value.errors == [{"field": "payload.value", "reason": "Field required"}]
    assert len(await store.read(CID)) == 1


async def test_an_unknown_event_type_writes_nothing(
    store: SQLiteStore, conversations: Conversations
) -> None:
    with pytest.raises(UnknownEventType):
        await conversations.record(CID, [started(), ev("message.teleported", {"text": "hi"})])
    assert await store.read(CID) == []


async def test_recording_no_events_is_refused(conversations: Conversations) -> None:
    with pytest.raises(ValidationError):
        await conversations.record(CID, [])


# -- following events appended elsewhere ---------------------------------------------------


async def test_a_hot_state_follows_events_appended_elsewhere_without_reading_them(
    store: SQLiteStore,
) -> None:
    counted = CountingReads(store)
    here = Conversations(counted)  # type: ignore[arg-type]
    elsewhere = Conversations(store)
    await here.record(CID, [started(), received(minute=1)])
    turn = [
        ev("intent.detected", {"intent": "order_status", "confidence": 0.9}, 1),
        ev("slot.filled", {"name": "order_number", "value": "1042"}, 1),
        ev("message.sent", {"text": "It ships tomorrow."}, 1),
    ]
    await elsewhere.record(CID, turn)
    for record in await store.read(CID, from_seq=3):
        here.observe(record)
    counted.reads = 0
    state = await here.current(CID, at_least_seq=5)
    assert state == await elsewhere.rehydrate(CID)
    await here.record(CID, [received("thanks", minute=2)])
    assert counted.reads == 0
    assert await here.current(CID, at_least_seq=6) == await elsewhere.rehydrate(CID)


async def test_an_event_observed_after_a_gap_is_left_for_the_next_read(
    store: SQLiteStore,
) -> None:
    here, elsewhere = Conversations(store), Conversations(store)
    await here.record(CID, [started()])
    await elsewhere.record(CID, [received(minute=1)])
    await elsewhere.record(CID, [received("still there?", minute=2)])
    here.observe((await store.read(CID, from_seq=3))[0])  # seq 2 never arrived here
    state = await here.current(CID, at_least_seq=3)
    assert state.seq == 3
    assert state == await elsewhere.rehydrate(CID)


async def test_a_conversation_started_elsewhere_is_followed_from_its_first_event(
    store: SQLiteStore,
) -> None:
    counted = CountingReads(store)
    here = Conversations(counted)  # type: ignore[arg-type]
    elsewhere = Conversations(store)
    await elsewhere.record(CID, [started(), received(minute=1)])
    for record in await store.read(CID):
        here.observe(record)
    state = await here.current(CID, at_least_seq=2)
    assert counted.reads == 0
    assert state == await elsewhere.rehydrate(CID)


async def test_a_conversation_first_heard_after_its_start_is_read(store: SQLiteStore) -> None:
    counted = CountingReads(store)
    here = Conversations(counted)  # type: ignore[arg-type]
    elsewhere = Conversations(store)
    await elsewhere.record(CID, [started(), received(minute=1)])
    here.observe((await store.read(CID, from_seq=2))[0])  # its first event never arrived here
    state = await here.current(CID, at_least_seq=2)
    assert counted.reads == 1
    assert state == await elsewhere.rehydrate(CID)

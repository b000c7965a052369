"""The conversation index: a pure fold of the log, its queries, and its upkeep on both stores."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from tests.timelines import (
    abandoned,
    handoff,
    held_by,
    leg,
    leg_ended,
    resolved,
    sent,
    started,
    waiting,
)
from threadline.core.conversation import fold, initial
from threadline.core.events import Event, EventCodec, EventRecord
from threadline.engine.conversations import Conversations
from threadline.engine.projections import (
    ConversationEntry,
    ConversationFilter,
    ConversationIndex,
    advance,
    preview,
    select,
)
from threadline.routing.presence import AgentPresence

POSITIONS = count(1)
CODEC = EventCodec()


def stored(*steps: Event | list[Event]) -> list[Event]:
    """The events as a store hands them out: seq within the stream, a global position."""
    events = [e for step in steps for e in ([step] if isinstance(step, Event) else step)]
    return [
        CODEC.decode(CODEC.encode(e)._replace(seq=i, position=next(POSITIONS)))
        for i, e in enumerate(events, 1)
    ]


def folded(events: list[Event]) -> ConversationEntry | None:
    entry = None
    for event in events:
        entry = advance(entry, event)
    return entry


JOURNEYS = {
    "bot": lambda c: stored(started(c)),
    "handed off": lambda c: stored(started(c), handoff(c, "orders")),
    "held": lambda c: stored(started(c, "cus-omar", "voice"), held_by(c, "agent-ana", "billing")),
    "resolved": lambda c: stored(started(c), leg_ended(c, "chat"), leg(c, "voice"), resolved(c)),
    "waiting": lambda c: stored(started(c, "cus-lena", "in_person"), waiting(c)),
    "abandoned": lambda c: stored(started(c), sent(c, "hello?"), abandoned(c)),
}


# -- the fold ------------------------------------------------------------------------


@pytest.mark.parametrize("journey", sorted(JOURNEYS))
def test_an_entry_holds_what_the_conversation_state_says(journey: str) -> None:
    events = JOURNEYS[journey]("c-1")
    entry = folded(events)
    state = fold(initial("c-1"), events)
    assert entry is not None
    for name in ("conversation_id", "seq", "status", "customer_id", "queue", "assignee",
                 "legs", "origin", "opened_at", "updated_at", "offer"):  # fmt: skip
        assert getattr(entry.state, name) == getattr(state, name), name
    assert entry.position == events[-1].position
    assert entry.live_channels == {str(leg["channel"]) for leg in state.live_legs.values()}


def test_streams_that_are_not_conversations_have_no_entry() -> None:
    presence = Event("agent:agent-ana", "agent.presence_changed",
                     {"agent_id": "agent-ana", "presence": "away"}, seq=1, position=1)  # fmt: skip
    assert advance(None, presence) is None
    second = stored(started("c-1"))[1]  # a conversation whose start the index never saw
    assert advance(None, second) is None


def test_repeats_and_gaps_change_nothing() -> None:
    events = stored(started("c-1"), handoff("c-1", "orders"), resolved("c-1"))
    entry = folded(events[:2])
    assert entry is not None
    assert advance(entry, events[0]) is entry and advance(entry, events[1]) is entry
    assert advance(entry, events[3]) is entry  # seq 4 after seq 2: wait for seq 3
    assert folded(events + events) == folded(events)


def test_the_last_message_is_kept_shortened() -> None:
    long = "Where   is\nmy order? " + "x" * 300
    events = stored(started("c-1"), sent("c-1", long), handoff("c-1", "orders"))
    entry = folded(events)
    assert entry is not None and entry.last_message is not None
    assert entry.last_message.text == preview(long)
    assert entry.last_message.text.startswith("Where is my order? x")
    assert len(entry.last_message.text) == 140 and entry.last_message.text.endswith("…")
    assert (entry.last_message.type, entry.last_message.actor_kind) == ("message.sent", "human")
    assert preview("  short  text ") == "short text"


def test_entries_do_not_keep_what_the_index_never_shows() -> None:
    entry = folded(stored(started("c-1"), sent("c-1", "hi"), handoff("c-1", "orders")))
    assert entry is not None
    assert entry.state.summary == () and entry.state.recent_keys == ()


# -- queries -------------------------------------------------------------------------


def _entries(n: int) -> list[ConversationEntry]:
    out = []
    for i in range(n):
        customer = "cus-maya" if i % 2 else "cus-omar"
        entry = folded(stored(started(f"c-{i:02d}", customer)))
        assert entry is not None
        out.append(entry)
    return out


def test_select_pages_newest_first_without_loss_or_repeats() -> None:
    entries = _entries(11)
    everyone = ConversationFilter()
    seen: list[str] = []
    after = None
    while True:
        page, after = select(entries, everyone, lambda s: True, after=after, limit=3)
        seen += [e.conversation_id for e in page]
        if after is None:
            break
    assert seen == [e.conversation_id for e in reversed(entries)]


def test_select_judges_visibility_before_it_counts_a_page() -> None:
    entries = _entries(9)
    page, after = select(entries, ConversationFilter(), lambda s: s.customer_id == "cus-maya",
                         limit=2)  # fmt: skip
    assert [e.conversation_id for e in page] == ["c-07", "c-05"] and after is not None
    rest, end = select(entries, ConversationFilter(), lambda s: s.customer_id == "cus-maya",
                       after=after, limit=5)  # fmt: skip
    assert [e.conversation_id for e in rest] == ["c-03", "c-01"] and end is None


def test_updated_after_is_strictly_after() -> None:
    at = datetime(2024, 5, 1, 12, tzinfo=UTC)
    entry = folded(stored(started("c-1", at=at)))
    assert entry is not None
    assert ConversationFilter(updated_after=at - timedelta(seconds=1)).matches(entry)
    assert not ConversationFilter(updated_after=at).matches(entry)


# -- upkeep on a store ---------------------------------------------------------------


async def record_some(conversations: Conversations) -> list[EventRecord]:
    """Seven events on c-1, c-2 and an agent's stream; all of them, once read_all has them.

    On PostgreSQL ``read_all`` holds events back while an older transaction in
    the cluster is open, so wait until it hands out everything recorded here.
    """
    await conversations.record("c-1", started("c-1"))
    await conversations.record("c-2", [*started("c-2", "cus-omar"), handoff("c-2", "repairs")])
    await conversations.record("c-1", [sent("c-1", "hi")])
    await AgentPresence(conversations.store).set_presence("agent-ana", "away")
    async with asyncio.timeout(10):
        while len(records := await conversations.store.read_all(0, 1000)) < 7:
            await asyncio.sleep(0.01)
    return records


async def test_an_index_built_from_the_log_equals_one_kept_up_to_date(any_store) -> None:
    conversations = Conversations(any_store)
    live = await ConversationIndex.build(any_store)
    await record_some(conversations)
    await live.catch_up()
    built = await ConversationIndex.build(any_store)
    assert len(built) == 2 and built.get("agent:agent-ana") is None
    assert {e.conversation_id: e for e in built} == {e.conversation_id: e for e in live}
    assert [e.conversation_id for e in built.of_customer("cus-maya")] == ["c-1"]
    assert built.get("c-2").state.status == "awaiting_human"  # type: ignore[union-attr]


async def test_live_events_fold_once_and_catch_up_fills_gaps(any_store) -> None:
    conversations = Conversations(any_store)
    records = await record_some(conversations)
    index = ConversationIndex(any_store)
    for record in records[1:]:  # missed c-1's start: nothing of c-1 can fold yet
        index.observe(record)
    assert index.get("c-1") is None and index.get("c-2") is not None
    for record in records:  # a redelivery of everything
        index.observe(record)
    once = {e.conversation_id: e for e in index}
    for record in records:
        index.observe(record)
    assert {e.conversation_id: e for e in index} == once
    gap = ConversationIndex(any_store)
    gap.observe(records[0])
    gap.observe(records[-2])  # c-1's message before c-1's leg: ignored until caught up
    assert gap.get("c-1").state.seq == 1  # type: ignore[union-attr]
    await gap.catch_up()
    assert {e.conversation_id: e for e in gap} == once


async def test_a_live_event_the_index_cannot_fold_never_reaches_the_hub(any_store) -> None:
    record = CODEC.encode(started("c-1")[0])._replace(seq=1, position=1, payload=b"{not json")
    index = ConversationIndex(any_store)
    index.observe(record)  # logged, not raised: the live feeds go on
    assert len(index) == 0

"""The outbox relay and the in-process bus: every event reaches every group, at least once."""

from __future__ import annotations

import asyncio

import pytest

from tests.counting import CountingReads, read_through
from threadline.bus.memory import MemoryBus
from threadline.core.events import Event, EventRecord
from threadline.engine.outbox import Relay
from threadline.testing.effects import EffectsLedger, consumer
from threadline.testing.factories import CODEC, CUSTOMER, record


async def _append_turns(store, conversations: int, turns: int) -> None:
    async def one(n: int) -> None:
        for i in range(turns):
            await store.append(f"conv-{n}", [record(f"conv-{n}", f"turn {i}", key=f"k{n}-{i}")])

    await asyncio.gather(*(one(n) for n in range(conversations)))


async def test_every_event_reaches_every_group_in_conversation_order(any_store) -> None:
    seen: dict[str, list[EventRecord]] = {"projector": [], "notifier": []}
    bus = MemoryBus(any_store)
    for group, got in seen.items():

        async def handle(r: EventRecord, got: list[EventRecord] = got) -> None:
            got.append(r)

        await bus.subscribe(group, handle)
    relay = Relay(any_store, bus, any_store, poll_interval=0.01)
    await relay.start()
    await _append_turns(any_store, 5, 12)
    relay.poke()
    await asyncio.wait_for(_until(lambda: all(len(g) == 60 for g in seen.values())), 10)
    for got in seen.values():
        assert len({r.event_id for r in got}) == 60
        for n in range(5):
            assert [r.seq for r in got if r.conversation_id == f"conv-{n}"] == list(range(1, 13))
    await relay.stop()
    await bus.close()


async def test_a_failing_handler_gets_the_event_again_and_later_events_wait(any_store) -> None:
    calls: list[int] = []
    failures = {"left": 2}

    async def flaky(r: EventRecord) -> None:
        calls.append(r.seq)
        if r.seq == 2 and failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("downstream is down")

    bus = MemoryBus(any_store, retry_delay=0.001)
    await bus.subscribe("flaky", flaky)
    relay = Relay(any_store, bus, any_store, poll_interval=0.01)
    await relay.start()
    await any_store.append("conv-a", [record("conv-a", f"t{i}") for i in range(3)])
    relay.poke()
    await asyncio.wait_for(_until(lambda: 3 in calls), 10)
    assert calls == [1, 2, 2, 2, 3]
    assert bus.redeliveries("flaky") == 2
    await relay.stop()
    await bus.close()


async def test_groups_resume_from_their_checkpoints_after_a_restart(any_store, tmp_path) -> None:
    ledger = EffectsLedger(str(tmp_path / "effects.db"))
    bus = MemoryBus(any_store)
    await bus.subscribe("mailer", consumer(any_store, ledger))
    relay = Relay(any_store, bus, any_store, poll_interval=0.01)
    await relay.start()
    await _append_turns(any_store, 3, 10)
    relay.poke()
    await asyncio.wait_for(_until(lambda: relay.cursor > 0 and len(ledger.counts()[0]) == 30), 10)
    await relay.stop()
    await bus.close()
    assert await any_store.load_checkpoint("mailer") > 0

    await _append_turns_more(any_store)
    bus = MemoryBus(any_store)
    await bus.subscribe("mailer", consumer(any_store, ledger))
    relay = Relay(any_store, bus, any_store, poll_interval=0.01)
    await relay.start()
    await asyncio.wait_for(_until(lambda: len(ledger.counts()[0]) == 33), 10)
    effects, attempts = ledger.counts()
    assert set(effects.values()) == {1}
    assert attempts == 33  # nothing from before the restart ran again
    await relay.stop()
    await bus.close()


async def _append_turns_more(store) -> None:
    for n in range(3):
        await store.append(f"conv-{n}", [record(f"conv-{n}", "after restart", key=f"late-{n}")])


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.01)


async def _started(store, bus) -> Relay:
    relay = Relay(store, bus, store, poll_interval=0.01)
    await relay.start()
    return relay


async def test_parallel_groups_keep_each_conversation_in_order(any_store) -> None:
    got: list[EventRecord] = []
    running = {"now": 0, "most": 0}

    async def slow(r: EventRecord) -> None:
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        await asyncio.sleep(0.002 * (hash(r.conversation_id) % 3))
        got.append(r)
        running["now"] -= 1

    bus = MemoryBus(any_store)
    await bus.subscribe("bot", slow, concurrency=4)
    relay = await _started(any_store, bus)
    await _append_turns(any_store, 12, 8)
    relay.poke()
    await asyncio.wait_for(_until(lambda: len(got) == 96), 10)
    await asyncio.wait_for(bus.drain(), 5)
    assert len({r.event_id for r in got}) == 96
    for n in range(12):
        assert [r.seq for r in got if r.conversation_id == f"conv-{n}"] == list(range(1, 9))
    assert 1 < running["most"] <= 4
    await relay.stop()
    await bus.close()
    assert await any_store.load_checkpoint("bot") == relay.cursor


async def test_parallel_delivery_overlaps_slow_handlers(any_store) -> None:
    done: list[str] = []

    async def slow(r: EventRecord) -> None:
        await asyncio.sleep(0.05)
        done.append(r.conversation_id)

    bus = MemoryBus(any_store)
    await bus.subscribe("bot", slow, concurrency=20)
    await _append_turns(any_store, 20, 1)
    relay = await _started(any_store, bus)
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(_until(lambda: len(done) == 20), 10)
    # Twenty 50 ms handlers one after another would take a second.
    assert asyncio.get_running_loop().time() - started < 0.5
    await relay.stop()
    await bus.close()


async def test_a_failing_conversation_holds_back_only_itself_and_the_checkpoint(any_store) -> None:
    calls: list[tuple[str, int]] = []
    release = asyncio.Event()

    async def stuck_on_a(r: EventRecord) -> None:
        if r.conversation_id == "conv-a" and r.seq == 2 and not release.is_set():
            raise RuntimeError("downstream is down for conv-a")
        calls.append((r.conversation_id, r.seq))

    bus = MemoryBus(any_store, retry_delay=0.005, max_delay=0.01)
    await bus.subscribe("bot", stuck_on_a, concurrency=2)
    await any_store.append("conv-a", [record("conv-a", f"a{i}", key=f"a{i}") for i in range(3)])
    await any_store.append("conv-b", [record("conv-b", f"b{i}", key=f"b{i}") for i in range(3)])
    relay = await _started(any_store, bus)
    await asyncio.wait_for(_until(lambda: ("conv-b", 3) in calls), 10)
    assert [c for c in calls if c[0] == "conv-a"] == [("conv-a", 1)]
    assert bus.redeliveries("bot") >= 1
    await relay.stop()
    await bus.close()
    # conv-b finished, but the checkpoint stays before conv-a's stuck event.
    checkpoint = await any_store.load_checkpoint("bot")
    stuck = next(r for r in await any_store.read("conv-a") if r.seq == 2)
    assert checkpoint < stuck.position

    release.set()
    calls.clear()
    bus = MemoryBus(any_store)
    await bus.subscribe("bot", stuck_on_a, concurrency=2)
    relay = await _started(any_store, bus)
    await asyncio.wait_for(_until(lambda: ("conv-a", 3) in calls), 10)
    assert [c for c in calls if c[0] == "conv-a"] == [("conv-a", 2), ("conv-a", 3)]
    await relay.stop()
    await bus.close()


async def test_concurrency_below_one_is_refused(any_store) -> None:
    async def handle(r: EventRecord) -> None:
        return None

    bus = MemoryBus(any_store)
    with pytest.raises(ValueError, match="concurrency"):
        await bus.subscribe("bot", handle, concurrency=0)
    await bus.close()


def _started_event(conversation_id: str) -> EventRecord:
    return CODEC.encode(
        Event(conversation_id=conversation_id, type="conversation.started",
              payload={"origin": "chat"}, channel="chat", actor=CUSTOMER,
              idempotency_key=f"{conversation_id}:start")
    )  # fmt: skip


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_a_group_that_names_its_types_gets_only_those_and_passes_the_rest(
    any_store, concurrency: int
) -> None:
    starts: list[EventRecord] = []
    everything: list[EventRecord] = []

    async def on_start(r: EventRecord) -> None:
        starts.append(r)

    async def on_any(r: EventRecord) -> None:
        everything.append(r)

    bus = MemoryBus(any_store)
    await bus.subscribe("starts", on_start, concurrency=concurrency,
                        types={"conversation.started"})  # fmt: skip
    await bus.subscribe("all", on_any, concurrency=concurrency)
    for n in range(3):
        conversation = f"conv-{n}"
        await any_store.append(conversation, [_started_event(conversation)])
        await any_store.append(conversation, [record(conversation, f"m{i}") for i in range(4)])
    relay = await _started(any_store, bus)
    await asyncio.wait_for(_until(lambda: len(everything) == 15), 10)
    await asyncio.wait_for(bus.drain(), 10)
    assert [r.type for r in starts] == ["conversation.started"] * 3
    assert sorted(r.conversation_id for r in starts) == ["conv-0", "conv-1", "conv-2"]
    await relay.stop()
    await bus.close()
    # The events it passes over count as handled: its checkpoint is the end of the log.
    last = max(r.position for r in everything)
    assert await any_store.load_checkpoint("starts") == last


async def test_passed_over_events_do_not_move_the_checkpoint_past_one_in_hand(any_store) -> None:
    release = asyncio.Event()
    handled: list[int] = []

    async def slow_start(r: EventRecord) -> None:
        if r.conversation_id == "conv-a":
            await release.wait()
        handled.append(r.position)

    bus = MemoryBus(any_store)
    await bus.subscribe("starts", slow_start, concurrency=4, types=["conversation.started"])
    await any_store.append("conv-a", [_started_event("conv-a")])
    await any_store.append("conv-b", [record("conv-b", f"b{i}") for i in range(3)])
    await any_store.append("conv-c", [_started_event("conv-c")])
    relay = await _started(any_store, bus)
    await asyncio.wait_for(_until(lambda: len(handled) == 1), 10)
    await asyncio.sleep(0.3)  # past the checkpoint pause
    # conv-b's messages and conv-c's start are done, but conv-a's start is still in hand.
    held = (await any_store.read("conv-a"))[0].position
    assert await any_store.load_checkpoint("starts") < held
    release.set()
    await asyncio.wait_for(bus.drain(), 10)
    await relay.stop()
    await bus.close()
    last = (await any_store.read("conv-c"))[-1].position
    assert await any_store.load_checkpoint("starts") == last


@pytest.mark.parametrize("types", ["conversation.started", set()])
async def test_types_must_be_a_collection_of_names(any_store, types) -> None:  # type: ignore[no-untyped-def]
    async def handle(r: EventRecord) -> None:
        return None

    bus = MemoryBus(any_store)
    with pytest.raises(ValueError, match="types"):
        await bus.subscribe("starts", handle, types=types)
    await bus.close()


async def test_fed_pages_that_follow_the_cursor_are_published_without_a_read(tmp_path) -> None:
    from threadline.store.sqlite import open_sqlite

    store = await open_sqlite(tmp_path / "fed.db")
    counted = CountingReads(store, "read_all")
    bus = MemoryBus(store)
    got: list[EventRecord] = []

    async def handle(r: EventRecord) -> None:
        got.append(r)

    await bus.subscribe("projector", handle)
    relay = Relay(counted, bus, store, poll_interval=60)  # no polls during the test
    pages: list[tuple[int, list[EventRecord]]] = []
    relay.forward(lambda after, page: pages.append((after, list(page))))
    try:
        await relay.start()
        assert relay.fed  # the store feeds it its commits
        await asyncio.wait_for(_until(lambda: counted.reads >= 1), 5)  # the first read
        reads = counted.reads
        await _append_turns(store, 4, 5)
        await asyncio.wait_for(_until(lambda: len(got) == 20), 5)
        assert counted.reads == reads
        assert [r.position for r in got] == sorted(r.position for r in got)
        assert [r for _, page in pages for r in page] == got  # passed on as fed
        relay.feed(10_000, [record("gap")])  # a page after a gap: read from the cursor instead
        await asyncio.wait_for(_until(lambda: counted.reads > reads), 5)
        assert len(got) == 20
    finally:
        await relay.stop()
        await bus.close()
        await store.close()


class CountingCheckpoints:
    """A store whose checkpoint writes are counted."""

    def __init__(self, store) -> None:  # type: ignore[no-untyped-def]
        self._store = store
        self.saves = 0

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._store, name)

    async def save_checkpoint(self, group: str, position: int) -> None:
        self.saves += 1
        await self._store.save_checkpoint(group, position)


async def test_a_group_saves_its_checkpoint_at_most_once_a_pause_however_often_it_moves(
    any_store,
) -> None:
    from threadline.bus.memory import CHECKPOINT_PAUSE

    counted = CountingCheckpoints(any_store)
    bus = MemoryBus(counted)  # type: ignore[arg-type]
    got: list[EventRecord] = []

    async def handle(r: EventRecord) -> None:
        got.append(r)

    await bus.subscribe("projector", handle)
    started = asyncio.get_running_loop().time()
    for i in range(30):  # one event at a time, each handled before the next arrives
        result = await any_store.append("c", [record("c", f"m{i}", key=f"k{i}")])
        position = result.positions[0]
        await bus.publish(await read_through(any_store, position - 1, position))
        await asyncio.wait_for(_until(lambda i=i: len(got) == i + 1), 5)
        await asyncio.sleep(0.005)
    elapsed = asyncio.get_running_loop().time() - started
    assert counted.saves <= elapsed / CHECKPOINT_PAUSE + 2
    await bus.close()
    assert await any_store.load_checkpoint("projector") == got[-1].position


class SwallowsOneCancel:
    """A store whose ``read_all`` loses one cancellation, as ``asyncio.wait_for`` on
    Python 3.11 can when the wait it guards finishes at the same moment (a driver's
    pool does that)."""

    def __init__(self, store) -> None:
        self._store = store
        self.reading = asyncio.Event()
        self.swallowed = False

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    async def read_all(self, after: int, limit: int):
        if not self.swallowed:
            self.reading.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                self.swallowed = True
                asyncio.current_task().uncancel()
        return await self._store.read_all(after, limit)


async def test_the_relay_stops_even_when_a_read_loses_its_cancellation(sqlite_store) -> None:
    store = SwallowsOneCancel(sqlite_store)
    bus = MemoryBus(sqlite_store)
    relay = Relay(store, bus, sqlite_store)
    await relay.start()
    await asyncio.wait_for(store.reading.wait(), 5)
    stopping = asyncio.create_task(relay.stop())
    done, _ = await asyncio.wait({stopping}, timeout=5)
    assert store.swallowed
    assert stopping in done, "the relay went on after stop()"
    await bus.close()


class SwallowsOneCancellation:
    """Checkpoints whose first save drops the cancellation that stops it, as a
    connection pool's ``asyncio.wait_for`` can on Python 3.11 when a connection
    comes back at the same moment."""

    def __init__(self, store) -> None:
        self.store = store
        self.saving = asyncio.Event()
        self.swallowed = False

    async def load_checkpoint(self, group: str) -> int:
        return await self.store.load_checkpoint(group)

    async def save_checkpoint(self, group: str, position: int) -> None:
        if self.swallowed:
            await self.store.save_checkpoint(group, position)
            return
        self.saving.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.swallowed = True


async def test_closing_the_bus_ends_a_task_that_swallowed_its_cancellation(sqlite_store) -> None:
    checkpoints = SwallowsOneCancellation(sqlite_store)
    bus = MemoryBus(checkpoints)
    seen: list[int] = []

    async def handle(r: EventRecord) -> None:
        seen.append(r.position)

    await bus.subscribe("projector", handle)
    relay = await _started(sqlite_store, bus)
    await sqlite_store.append("conv-1", [record("conv-1", "hello", key="k1")])
    relay.poke()
    await asyncio.wait_for(checkpoints.saving.wait(), 5)  # the checkpoint save is in flight
    await relay.stop()
    loop = asyncio.get_running_loop()
    began = loop.time()
    await asyncio.wait_for(bus.close(), 5)
    assert loop.time() - began < 2
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("bus:")]
    assert checkpoints.swallowed
    assert await sqlite_store.load_checkpoint("projector") == seen[-1]

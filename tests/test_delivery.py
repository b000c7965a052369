"""The outbox relay and the in-process bus: every event reaches every group, at least once."""

from __future__ import annotations

import asyncio

from threadline.bus.memory import MemoryBus
from threadline.core.events import EventRecord
from threadline.engine.outbox import Relay
from threadline.testing.effects import EffectsLedger, consumer
from threadline.testing.factories import record


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

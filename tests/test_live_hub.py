"""Live feeds: the backlog, then live events, once each; a watcher may name the types it wants."""

from __future__ import annotations

import asyncio

from threadline.bus.memory import MemoryBus
from threadline.core.events import Event, EventRecord
from threadline.engine.live import LiveHub
from threadline.store.sqlite import open_sqlite
from threadline.testing.factories import BOT, CODEC, record


def _intent(conversation_id: str) -> EventRecord:
    return CODEC.encode(
        Event(conversation_id=conversation_id, type="intent.detected", channel="chat", actor=BOT,
              payload={"intent": "order_status", "confidence": 0.9})
    )  # fmt: skip


async def test_a_watcher_of_some_types_gets_only_those_in_the_backlog_and_live(tmp_path) -> None:
    store = await open_sqlite(tmp_path / "live.db")
    bus = MemoryBus(store)
    hub = LiveHub(store)
    await hub.attach(bus)
    try:
        result = await store.append("conv-a", [record("conv-a", "one"), _intent("conv-a")])
        async with (
            hub.watch("conv-a", 0, {"message.received"}) as some,
            hub.watch("conv-a", 0) as every,
        ):
            later = await store.append("conv-a", [_intent("conv-a"), record("conv-a", "two")])
            await bus.publish(await store.read_all(result.positions[-1]))
            assert later.seqs == (3, 4)

            async def take(watcher, n: int) -> list[int]:  # type: ignore[no-untyped-def]
                seqs = []
                async for r in hub.follow(watcher):
                    seqs.append(r.seq)
                    if len(seqs) == n:
                        return seqs
                return seqs

            assert await asyncio.wait_for(take(some, 2), 5) == [1, 4]
            assert await asyncio.wait_for(take(every, 4), 5) == [1, 2, 3, 4]
    finally:
        await bus.close()
        await store.close()

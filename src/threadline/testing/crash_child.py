"""A writer that the crash test kills with SIGKILL mid-flight.

Usage: ``python -m threadline.testing.crash_child STORE_URL SCHEMA EFFECTS_DB``.
It runs the relay and one consumer group whose side effect writes to an
external SQLite file, appends to eight conversations concurrently, and prints
``ACK <conversation> <seq> <key>`` after each acknowledged append.
"""

from __future__ import annotations

import asyncio
import sys

from threadline.bus.memory import MemoryBus
from threadline.engine.outbox import Relay
from threadline.store import open_store
from threadline.testing.effects import EffectsLedger, consumer
from threadline.testing.factories import record


async def main(url: str, schema: str, effects_path: str) -> None:
    store = await open_store(url, schema=schema or None)
    ledger = EffectsLedger(effects_path)
    bus = MemoryBus(store)
    await bus.subscribe("mailer", consumer(store, ledger))
    relay = Relay(store, bus, store, poll_interval=0.01)
    await relay.start()

    async def conversation(n: int) -> None:
        i = 0
        while True:
            key = f"crash-{n}-{i}"
            result = await store.append(f"conv-{n}", [record(f"conv-{n}", f"turn {i}", key=key)])
            relay.poke()
            sys.stdout.write(f"ACK conv-{n} {result.last_seq} {key}\n")
            sys.stdout.flush()
            i += 1

    await asyncio.gather(*(conversation(n) for n in range(8)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))

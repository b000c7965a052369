"""CPU cost of encrypting personal data at rest: per stored event, and per chat turn.

``python -m bench.sealing_cost [--events 2000] [--turns 200] [--runs 3] [--postgres DSN]``

Two measurements, each with the store's encryption off (the baseline) and on, in
alternating runs, reporting the median of the process's CPU time (every thread: the
SQLite writer and readers count too), and for turns the fastest runs too (CPU time still
varies with what else the machine runs):

* **store**: appending ``message.received`` events one per append (as the chat path does),
  with a commit follower attached (as the relay is), then reading each conversation back
  once: CPU per event appended and read.
* **turn**: the service in this process (bot in process, Northwind pack) taking chat
  turns through its chat adapter, one at a time: a customer message, the bot's turn, and
  the reply reaching a watcher. CPU per turn. The baseline runs the same service with
  :func:`threadline.store.encrypt` replaced by a no-op (the only way to turn encryption
  off: the service always encrypts).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from threadline.core.events import Actor, Event, EventCodec, new_id
from threadline.core.ports import KeyProvider, Storage
from threadline.security.master_key import LocalKeyProvider
from threadline.store.postgres import open_postgres
from threadline.store.sqlite import open_sqlite

NORTHWIND = Path(__file__).resolve().parent.parent / "examples" / "northwind"
SECRET = "nH4rX9dWq2Lz7Vb0Tk5Gm8Yc3Pf6Js1Ra-Eu_Io"
QUESTIONS = (
    "where is my order 1042?",
    "when are you open on Sunday in Oakland?",
    "can I book a repair tomorrow?",
    "what are the hours at Market Street?",
    "thank you",
)
TEXT = "hi, I'm Ada Lovelace, my order 1042 hasn't arrived at 12 Crescent Road yet"


@asynccontextmanager
async def opened(dsn: str | None, keys: KeyProvider | None) -> AsyncIterator[Storage]:
    if dsn is None:
        with tempfile.TemporaryDirectory() as folder:
            store: Storage = await open_sqlite(Path(folder) / "bench.db", keys=keys)
            try:
                yield store
            finally:
                await store.close()
        return
    schema = f"bench_{new_id().replace('-', '')[:16]}"
    store = await open_postgres(dsn, schema=schema, keys=keys)
    try:
        yield store
    finally:
        await store.close()
        import psycopg

        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def store_round(dsn: str | None, keys: KeyProvider | None, events: int) -> float:
    """CPU microseconds per event appended (one per append) and read back."""
    codec = EventCodec()
    conversations = [f"c-{i}" for i in range(max(1, events // 20))]
    async with opened(dsn, keys) as store:
        follow: Callable[..., Any] | None = getattr(store, "follow", None)
        if follow is not None:
            await follow(lambda after, records: None)

        async def say(i: int) -> None:
            cid = conversations[i % len(conversations)]
            customer = f"cus-{cid}"
            event = Event(cid, "message.received", {"text": f"{TEXT} ({i})"}, channel="chat",
                          actor=Actor("customer", customer), customer_id=customer)  # fmt: skip
            await store.append(cid, [codec.encode(event)])

        for i in range(len(conversations)):  # each customer's first event makes their key
            await say(i)
        started = time.process_time()
        for i in range(events):
            await say(i)
        for cid in conversations:
            for record in await store.read(cid):
                codec.decode(record)
        return (time.process_time() - started) / events * 1e6


async def first_event_round(dsn: str | None, keys: KeyProvider | None, customers: int) -> float:
    """CPU microseconds for a new customer's first event (its data key is made then)."""
    codec = EventCodec()
    async with opened(dsn, keys) as store:
        started = time.process_time()
        for i in range(customers):
            cid, customer = f"c-{i}", f"cus-{i}"
            event = Event(cid, "message.received", {"text": TEXT}, channel="chat",
                          actor=Actor("customer", customer), customer_id=customer)  # fmt: skip
            await store.append(cid, [codec.encode(event)])
        return (time.process_time() - started) / customers * 1e6


async def turn_round(dsn: str | None, encrypted: bool, turns: int) -> float:
    """CPU milliseconds per chat turn taken by the service in this process."""
    import threadline.service.wiring as wiring
    from threadline.service import running
    from threadline.settings import Settings

    original = wiring.encrypt
    if not encrypted:
        wiring.encrypt = lambda store, keys: None
    try:
        with tempfile.TemporaryDirectory() as folder:
            settings = Settings(token_secret=SECRET, business=NORTHWIND, data_dir=Path(folder))
            async with opened(dsn, None) as store, running(settings, store) as service:
                legs = [await service.chat.open(f"cus-bench-{i}") for i in range(10)]
                seen = {leg.conversation_id: leg.seq for leg in legs}
                await _turn(service, legs[0], "warm up", seen)  # the first turn loads models
                started = time.process_time()
                for n in range(turns):
                    await _turn(service, legs[n % len(legs)], QUESTIONS[n % len(QUESTIONS)], seen)
                return (time.process_time() - started) / turns * 1e3
    finally:
        wiring.encrypt = original


async def _turn(service: Any, leg: Any, text: str, seen: dict[str, int]) -> None:
    """Say ``text`` and wait for the bot's reply to it (``seen``: the last seq watched)."""
    hub, cid = service.hub, leg.conversation_id
    async with hub.watch(cid, after_seq=seen[cid], types={"message.sent"}) as watcher:
        seq = await service.chat.say(leg, new_id(), text)
        async with asyncio.timeout(15):
            async for record in hub.follow(watcher):
                seen[cid] = record.seq
                if record.seq > seq:
                    return


def _median(values: list[float]) -> float:
    return statistics.median(values)


async def main(events: int, turns: int, runs: int, dsn: str | None) -> None:
    keys = LocalKeyProvider(os.urandom(32))
    plain: list[float] = []
    sealed: list[float] = []
    for _ in range(runs):
        plain.append(await store_round(dsn, None, events))
        sealed.append(await store_round(dsn, keys, events))
    p, s = _median(plain), _median(sealed)
    where = "postgres" if dsn else "sqlite"
    print(f"store ({where}): {p:.1f} µs/event plain, {s:.1f} µs/event encrypted:"
          f" +{s - p:.1f} µs (+{(s / p - 1) * 100:.0f}%)")  # fmt: skip
    p = _median([await first_event_round(dsn, None, 200) for _ in range(runs)])
    s = _median([await first_event_round(dsn, keys, 200) for _ in range(runs)])
    print(f"a new customer's first event ({where}): {p:.1f} µs plain, {s:.1f} µs encrypted"
          f" (the data key is made): +{s - p:.1f} µs")  # fmt: skip
    plain, sealed = [], []
    for _ in range(runs):
        plain.append(await turn_round(dsn, False, turns))
        sealed.append(await turn_round(dsn, True, turns))
    p, s = _median(plain), _median(sealed)
    print(f"chat turn ({where}): {p:.2f} ms/turn plain, {s:.2f} ms/turn encrypted:"
          f" +{s - p:.2f} ms (+{(s / p - 1) * 100:.1f}%); fastest runs: {min(plain):.2f} and"
          f" {min(sealed):.2f} ms (+{(min(sealed) / min(plain) - 1) * 100:.1f}%)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", metavar="DSN", help="measure on PostgreSQL instead")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.turns, args.runs, args.postgres))

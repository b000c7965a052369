"""The storage benchmark: Threadline's event store against its peers, in one run.

``python -m bench.run [--runs 5] [--quick]`` measures each scenario ``runs``
times on SQLite and PostgreSQL, prints median and min–max, and writes the
table with the machine's description to ``var/benchmarks-storage.md`` (the figures of record
are copied into ``docs/benchmarks.md`` by hand, with their date).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench import peers
from threadline.core.events import Event, EventCodec
from threadline.core.ports import Storage
from threadline.engine.conversations import Conversations
from threadline.store.sqlite import open_sqlite
from threadline.testing.factories import message

CODEC = EventCodec()
TEXT = "x" * 250


@dataclass
class Sizes:
    conversations: int = 64
    per_conversation: int = 150
    sequential: int = 2000
    turns: int = 1000
    rehydrate_events: int = 10_000
    storage_events: int = 2000
    peer_turns: int = 1000
    peer_saves: int = 20

    @classmethod
    def quick(cls) -> Sizes:
        return cls(16, 30, 300, 100, 1000, 300, 100, 5)


@dataclass
class Row:
    scenario: str
    backend: str
    system: str
    unit: str
    samples: list[float] = field(default_factory=list)
    note: str = ""

    def cells(self) -> list[str]:
        med = statistics.median(self.samples)
        low, high = min(self.samples), max(self.samples)
        return [
            self.scenario, self.backend, self.system, _fmt(med), f"{_fmt(low)}–{_fmt(high)}",
            self.unit, self.note,
        ]  # fmt: skip


def _ratio(values: Iterable[float]) -> str:
    return f"last/turn 10 = {statistics.median(values):.2f}×"


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


# -- backends ---------------------------------------------------------------------------


class Backend:
    name: str

    async def open(self) -> Storage:
        raise NotImplementedError

    async def dispose(self, store: Storage) -> None:
        await store.close()

    async def storage_bytes(self, store: Storage) -> int:
        raise NotImplementedError


class SQLiteBackend(Backend):
    name = "SQLite"

    async def open(self) -> Storage:
        self.dir = tempfile.mkdtemp(prefix="tl-bench-")
        self.path = Path(self.dir) / "threadline.db"
        return await open_sqlite(self.path)

    async def dispose(self, store: Storage) -> None:
        await store.close()
        for entry in Path(self.dir).iterdir():
            entry.unlink()
        os.rmdir(self.dir)

    async def storage_bytes(self, store: Storage) -> int:
        import sqlite3

        with sqlite3.connect(self.path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            size = conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)


class PostgresBackend(Backend):
    name = "PostgreSQL"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    async def open(self) -> Storage:
        from threadline.store.postgres import open_postgres

        self.schema = f"bench_tl_{uuid.uuid4().hex[:10]}"
        store: Storage = await open_postgres(self.dsn, schema=self.schema)
        return store

    async def dispose(self, store: Storage) -> None:
        await store.close()
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    async def storage_bytes(self, store: Storage) -> int:
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            await conn.execute("CHECKPOINT")
            cur = await conn.execute(
                "SELECT pg_total_relation_size(%s)", (f'"{self.schema}".events',)
            )
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])


# -- Threadline scenarios ------------------------------------------------------------------


async def concurrent_appends(store: Storage, sizes: Sizes, encode: bool = True) -> float:
    """Events/s with ``conversations`` tasks each appending one event per append.

    With ``encode`` each task also builds, validates and encodes its events
    inside the timed loop, as the peers do; without it the records are ready
    beforehand and only the store is timed.
    """
    ready = [
        [
            CODEC.encode(message(f"conv-{n}", TEXT, key=f"{n}-{i}"))
            for i in range(sizes.per_conversation)
        ]
        for n in range(sizes.conversations)
    ]

    async def one(n: int) -> None:
        cid = f"conv-{n}"
        for i in range(sizes.per_conversation):
            if encode:
                await store.append(cid, [CODEC.encode(message(cid, TEXT, key=f"{n}-{i}"))])
            else:
                await store.append(cid, [ready[n][i]])

    start = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(sizes.conversations)))
    return sizes.conversations * sizes.per_conversation / (time.perf_counter() - start)


async def sequential_appends(store: Storage, sizes: Sizes) -> float:
    """Appends/s for one conversation, one event per append, awaited one by one."""
    start = time.perf_counter()
    for i in range(sizes.sequential):
        await store.append("conv-seq", [CODEC.encode(message("conv-seq", TEXT, key=str(i)))])
    return sizes.sequential / (time.perf_counter() - start)


def _around(samples: list[float], turn: int) -> float:
    window = samples[max(0, turn - 3) : turn + 2]
    return statistics.median(window) * 1000


async def turn_costs(store: Storage, sizes: Sizes) -> tuple[float, float]:
    """Milliseconds of one engine turn (rehydrate, decide, append) at turn 10 and the last."""
    conversations = Conversations(store)
    cid = "conv-turns"
    await conversations.record(cid, [Event(cid, "conversation.started", {"origin": "chat"})])
    samples = []
    for i in range(sizes.turns):
        event = message(cid, TEXT, key=f"turn-{i}")
        start = time.perf_counter()
        await conversations.record(cid, [event])
        samples.append(time.perf_counter() - start)
    return _around(samples, 10), _around(samples, sizes.turns)


async def storage_per_event(backend: Backend, store: Storage, sizes: Sizes) -> float:
    before = await backend.storage_bytes(store)
    batch = 50
    for start in range(0, sizes.storage_events, batch):
        records = [
            CODEC.encode(message("conv-size", TEXT, key=f"s{start + i}")) for i in range(batch)
        ]
        await store.append("conv-size", records)
    return (await backend.storage_bytes(store) - before) / sizes.storage_events


async def build_long_conversation(store: Storage, sizes: Sizes) -> str:
    cid = "conv-long"
    conversations = Conversations(store)
    await conversations.record(cid, [Event(cid, "conversation.started", {"origin": "chat"})])
    batch = 100
    for start in range(1, sizes.rehydrate_events, batch):
        count = min(batch, sizes.rehydrate_events - start)
        await conversations.record(
            cid, [message(cid, TEXT, key=f"long-{start + i}") for i in range(count)]
        )
    return cid


async def rehydrate_ms(store: Storage, cid: str, snapshots: bool, repeat: int = 10) -> float:
    conversations = Conversations(store)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        state = await conversations.rehydrate(cid, snapshots=snapshots)
        times.append(time.perf_counter() - start)
    assert state.seq >= 1
    return statistics.median(times) * 1000


# -- the run ---------------------------------------------------------------------------------


async def _measure(
    backend: Backend, runs: int, scenario: Callable[[Storage], Awaitable[Any]]
) -> list[Any]:
    results = []
    for _ in range(runs):
        store = await backend.open()
        try:
            results.append(await scenario(store))
        finally:
            await backend.dispose(store)
    return results


async def threadline_rows(backend: Backend, runs: int, sizes: Sizes) -> list[Row]:
    b = backend.name
    rows = []
    conc = await _measure(backend, runs, lambda s: concurrent_appends(s, sizes, encode=False))
    rows.append(Row(f"durable appends, {sizes.conversations} conversations concurrently", b,
                    "Threadline", "events/s", conc, note="store only"))  # fmt: skip
    conc = await _measure(backend, runs, lambda s: concurrent_appends(s, sizes))
    rows.append(Row(f"durable appends, {sizes.conversations} conversations concurrently", b,
                    "Threadline", "events/s", conc,
                    note="incl. building and validating each event"))  # fmt: skip
    seq = await _measure(backend, runs, lambda s: sequential_appends(s, sizes))
    rows.append(Row("one conversation, one event per append", b, "Threadline", "appends/s", seq))
    turns = await _measure(backend, runs, lambda s: turn_costs(s, sizes))
    rows.append(Row("engine turn at turn 10", b, "Threadline", "ms", [t[0] for t in turns]))
    rows.append(Row(f"engine turn at turn {sizes.turns}", b, "Threadline", "ms",
                    [t[1] for t in turns],
                    note=_ratio(t[1] / t[0] for t in turns)))  # fmt: skip
    size = await _measure(backend, runs, lambda s: storage_per_event(backend, s, sizes))
    rows.append(Row("storage per 250-char message event", b, "Threadline", "bytes", size,
                    note="table + indexes"))  # fmt: skip
    store = await backend.open()
    try:
        cid = await build_long_conversation(store, sizes)
        with_snap = [await rehydrate_ms(store, cid, True) for _ in range(runs)]
        without = [await rehydrate_ms(store, cid, False) for _ in range(runs)]
    finally:
        await backend.dispose(store)
    n = f"{sizes.rehydrate_events:,}"
    rows.append(Row(f"rehydrate {n}-event conversation, snapshots", b, "Threadline", "ms",
                    with_snap))  # fmt: skip
    rows.append(Row(f"rehydrate {n}-event conversation, no snapshots", b, "Threadline", "ms",
                    without))  # fmt: skip
    return rows


def peer_rows(backend: str, location: Any, runs: int, sizes: Sizes) -> list[Row]:
    b = "SQLite" if backend == "sqlite" else "PostgreSQL"
    raw = peers.raw_sqlite_commits if backend == "sqlite" else peers.raw_postgres_commits
    rows = [Row("one conversation, one event per append", b, "raw single-row commit",
                "commits/s", [raw(location, n=sizes.sequential) for _ in range(runs)])]  # fmt: skip
    rows.append(Row(f"durable appends, {sizes.conversations} conversations concurrently", b,
                    "eventsourcing (16 threads)", "saves/s",
                    [peers.eventsourcing_saves(backend, location, threads=16,  # type: ignore[arg-type]
                                               conversations=sizes.conversations,
                                               events_per_conversation=sizes.peer_saves)
                     for _ in range(runs)]))  # fmt: skip
    rows.append(Row("one conversation, one event per append", b, "eventsourcing", "saves/s",
                    [peers.eventsourcing_sequential(backend, location,  # type: ignore[arg-type]
                                                    n=sizes.sequential)
                     for _ in range(runs)]))  # fmt: skip
    lg = [peers.langgraph_turns(backend, location, turns=sizes.peer_turns,  # type: ignore[arg-type]
                                sample_at=(10, sizes.peer_turns))
          for _ in range(runs)]  # fmt: skip
    rows.append(Row("engine turn at turn 10", b, "LangGraph saver", "ms",
                    [r["turn_10_ms"] for r in lg]))  # fmt: skip
    last = f"turn_{sizes.peer_turns}_ms"
    rows.append(
        Row(
            f"engine turn at turn {sizes.peer_turns}",
            b,
            "LangGraph saver",
            "ms",
            [r[last] for r in lg],
            note=_ratio(r[last] / r["turn_10_ms"] for r in lg),
        )
    )
    rows.append(Row("storage per 250-char message event", b, "LangGraph saver", "bytes",
                    [r["bytes_per_turn"] for r in lg], note="per turn, whole store"))  # fmt: skip
    return rows


def render(rows: Iterable[Row], machine: str, runs: int, seconds: float) -> str:
    header = ["scenario", "backend", "system", "median", "min–max", "unit", "note"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `make bench` (`python -m bench.run --runs {runs}`) in one run of"
        f" {seconds / 60:.1f} minutes; every figure is the median of {runs} runs with the"
        " min–max beside it. Peers do the same work in the same run.",
        "",
        "## Machine",
        "",
        "```",
        machine,
        "```",
        "",
        "## Storage",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines) + "\n"


async def main(runs: int, quick: bool, output: Path) -> None:
    sizes = Sizes.quick() if quick else Sizes()
    started = time.perf_counter()
    dsn = peers.find_postgres_dsn()
    rows: list[Row] = []
    backends: list[tuple[Backend, str, Any]] = [(SQLiteBackend(), "sqlite", None)]
    if dsn is not None:
        backends.append((PostgresBackend(dsn), "postgres", dsn))
    else:
        print("PostgreSQL is not reachable: measuring SQLite only")
    for backend, peer_name, location in backends:
        print(f"-- {backend.name}: Threadline", flush=True)
        ours = await threadline_rows(backend, runs, sizes)
        print(f"-- {backend.name}: peers", flush=True)
        theirs = await asyncio.to_thread(peer_rows, peer_name, location, runs, sizes)
        merged = sorted(ours + theirs, key=lambda r: _order(r, ours + theirs))
        for row in merged:
            print(" | ".join(row.cells()), flush=True)
        rows += merged
    text = render(rows, peers.describe_machine(dsn), runs, time.perf_counter() - started)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output}")


def _order(row: Row, rows: list[Row]) -> tuple[int, int]:
    scenarios: list[str] = []
    for r in rows:
        if r.scenario not in scenarios:
            scenarios.append(r.scenario)
    return scenarios.index(row.scenario), 0 if row.system == "Threadline" else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", type=Path, default=Path("var/benchmarks-storage.md"))
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.quick, args.output))

"""Identity look-ups at 1,000,000 customers on SQLite and PostgreSQL.

The stores encrypt personal data, as the service's do, so the directory keeps
its rows sealed (a blind index and sealed values, :mod:`threadline.store.directory_seal`).
The projection tables are bulk-loaded directly, rows sealed as the directory seals
them (``executemany`` on SQLite, ``COPY`` on PostgreSQL), with three identifiers per
customer (phone, email, member id), 3,000,000 links in all, because folding a million customers'
events through the log would measure the fold, not the look-up. A few
customers are then merged through the real log so look-ups also follow merges.
Each run times ``IdentityDirectory.lookup`` (one indexed query through the
store's own read path, awaited one at a time) for random existing identifiers
of all kinds; the table reports the median over runs of each run's p50 and
p99, and the spread (min-max) of the run p99s.

    .venv/bin/python -m bench.identity_lookup [--customers N] [--runs R] [--lookups L]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from threadline.core.events import Actor
from threadline.identity.directory import IdentityDirectory
from threadline.identity.identifiers import Identifier
from threadline.identity.service import Identity
from threadline.security.master_key import LocalKeyProvider
from threadline.store import open_directory
from threadline.store.directory_seal import DirectoryCipher, directory_cipher
from threadline.store.sqlite import SQLiteStore, open_sqlite

if TYPE_CHECKING:
    from threadline.store.postgres import PostgresStore

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
KEYS = LocalKeyProvider(os.urandom(32))


def identifiers(n: int) -> tuple[str, list[Identifier]]:
    customer = f"cus-{n:07d}"
    return customer, [
        Identifier("phone", f"+1{2000000000 + n}"),
        Identifier("email", f"customer{n}@example.com"),
        Identifier("member", f"NW-{n:07d}"),
    ]


def rows(start: int, stop: int, cipher: DirectoryCipher) -> list[tuple[Any, ...]]:
    out = []
    for n in range(start, stop):
        customer, ids = identifiers(n)
        for i in ids:
            index = cipher.index(i.key)
            out.append((index, i.kind, cipher.seal(i.value, index), customer, 1, "seed",
                        "bench", 0))  # fmt: skip
    return out


async def load_sqlite(store: SQLiteStore, count: int, cipher: DirectoryCipher) -> None:
    # Straight into the table, as work on the store's writer thread, 50,000 customers a commit.
    batch = 50_000
    for start in range(0, count, batch):
        chunk = rows(start, min(count, start + batch), cipher)

        def work(conn: Any, now: str, chunk: list[tuple[Any, ...]] = chunk) -> None:
            conn.executemany("INSERT INTO identity_links VALUES (?,?,?,?,?,?,?,?)", chunk)

        await store.transact(work)
    await store.transact(lambda conn, now: conn.execute("ANALYZE"))


async def load_postgres(store: PostgresStore, count: int, cipher: DirectoryCipher) -> None:
    async with store.connection() as conn:
        buffer = io.StringIO()
        for key, kind, value, customer, _, method, by, pos in rows(0, count, cipher):
            buffer.write(f"{key}\t{kind}\t{value}\t{customer}\tt\t{method}\t{by}\t{pos}\n")
        async with conn.cursor() as cur:
            async with cur.copy("COPY identity_links FROM STDIN") as copy:
                await copy.write(buffer.getvalue())
            await cur.execute("ANALYZE identity_links")


async def merge_some(store: Any, count: int) -> None:
    identity = Identity(store, await open_directory(store))
    await identity.projection.catch_up()
    sam = Actor("human", "sup-sam")
    for n in range(10):
        absorbed = f"cus-dup-{n}"
        dup = Identifier("email", f"dup{n}@example.com")
        await identity.link(absorbed, dup, verified=False, method="typed", linked_by="bench",
                            reason="bench", actor=sam)  # fmt: skip
        await identity.merge(absorbed, f"cus-{n:07d}", reason="bench", by="sup-sam", actor=sam)


async def measure(directory: IdentityDirectory, count: int, lookups: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    times = []
    for _ in range(lookups):
        _, ids = identifiers(rng.randrange(count))
        target = ids[rng.randrange(3)]
        start = time.perf_counter()
        link = await directory.lookup(target)
        times.append(time.perf_counter() - start)
        assert link is not None
    return times


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def bench(name: str, store: Any, load: Any, args: argparse.Namespace) -> str:
    await (await open_directory(store)).checkpoint()  # the directory takes its key first
    started = time.perf_counter()
    await load(store, args.customers, await directory_cipher(store))
    loaded = time.perf_counter() - started
    await merge_some(store, args.customers)
    directory = await open_directory(store)
    await measure(directory, args.customers, 1000, 0)  # warm up
    p50s, p99s = [], []
    for run in range(args.runs):
        times = await measure(directory, args.customers, args.lookups, run + 1)
        p50s.append(pct(times, 0.50))
        p99s.append(pct(times, 0.99))
    merged = await directory.lookup(Identifier("email", "dup3@example.com"))
    assert merged is not None and merged.customer_id == "cus-0000003"
    return (f"| {name} | {args.customers:,} | {3 * args.customers:,} | {loaded:.0f} s |"
            f" {statistics.median(p50s):.3f} | {statistics.median(p99s):.3f} |"
            f" {min(p99s):.3f}–{max(p99s):.3f} |")  # fmt: skip


async def main(args: argparse.Namespace) -> None:
    lines = ["| store | customers | links | bulk load | p50 ms (median) | p99 ms (median) |"
             " p99 spread ms |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        store = await open_sqlite(Path(tmp) / "identity.db", keys=KEYS)
        try:
            lines.append(await bench("SQLite", store, load_sqlite, args))
        finally:
            await store.close()
    from threadline.store.postgres import open_postgres

    schema = "bench_identity_" + uuid.uuid4().hex[:8]
    postgres = await open_postgres(POSTGRES_URL, schema=schema, keys=KEYS)
    try:
        lines.append(await bench("PostgreSQL", postgres, load_postgres, args))
    finally:
        async with postgres.connection() as conn:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await postgres.close()
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lookups", type=int, default=5000)
    asyncio.run(main(parser.parse_args()))

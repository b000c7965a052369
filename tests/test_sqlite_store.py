"""SQLite specifics: group commit, a responsive event loop, and a clean refusal of bad files."""

from __future__ import annotations

import asyncio
import time

import pytest

from threadline.core.errors import PersistenceError
from threadline.store.sqlite import open_sqlite
from threadline.testing.factories import record


async def test_concurrent_appends_share_commits(sqlite_store) -> None:
    before = sqlite_store.commits
    await asyncio.gather(*(sqlite_store.append(f"c{n}", [record(f"c{n}")]) for n in range(64)))
    used = sqlite_store.commits - before
    assert used < 16, f"64 concurrent appends took {used} commits"
    assert len(await sqlite_store.read_all(limit=100)) == 64


async def test_a_lone_append_is_committed_without_waiting_for_company(sqlite_store) -> None:
    start = time.perf_counter()
    for i in range(20):
        await sqlite_store.append("c", [record("c", f"turn {i}")])
    assert (time.perf_counter() - start) / 20 < 0.05
    assert sqlite_store.commits >= 20


async def test_the_event_loop_keeps_ticking_while_appends_commit(sqlite_store) -> None:
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())

    async def writer(n: int) -> None:
        for i in range(50):
            await sqlite_store.append(f"c{n}", [record(f"c{n}", f"turn {i}")])

    await asyncio.gather(*(writer(n) for n in range(16)))
    stop.set()
    await tick
    assert len(gaps) > 10
    assert max(gaps) < 0.1, f"the loop stalled for {max(gaps) * 1000:.0f} ms"


async def test_a_file_that_is_not_a_database_is_refused_cleanly(tmp_path) -> None:
    path = tmp_path / "not-a-db.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(PersistenceError):
        await open_sqlite(path)

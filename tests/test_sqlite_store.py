"""SQLite specifics: group commit, a responsive event loop, writers of one file taking
turns, work run in the writer's transaction, and a clean refusal of bad files."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from threadline.core.errors import PersistenceError, ProgrammingError
from threadline.store.sqlite import open_sqlite
from threadline.store.sqlite_lock import TurnLock
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


async def test_a_writer_waits_for_its_turn_and_writes_as_soon_as_the_other_is_done(
    tmp_path,
) -> None:
    path = tmp_path / "shared.db"
    store = await open_sqlite(path)
    other = TurnLock(str(path))  # the writer of another process, in the middle of a commit
    try:
        with other:
            pending = asyncio.create_task(store.append("c", [record("c")]))
            await asyncio.sleep(0.2)
            assert not pending.done()
        start = time.perf_counter()
        result = await asyncio.wait_for(pending, 5)
        assert result.seqs == (1,)
        assert time.perf_counter() - start < 0.5
    finally:
        other.close()
        await store.close()


async def test_two_stores_on_one_file_interleave_appends_without_gaps(tmp_path) -> None:
    path = tmp_path / "shared.db"
    first, second = await open_sqlite(path), await open_sqlite(path)
    try:
        stores = (first, second)
        await asyncio.gather(
            *(stores[n % 2].append(f"c{n % 3}", [record(f"c{n % 3}", f"m{n}")]) for n in range(90))
        )
        for c in ("c0", "c1", "c2"):
            assert [r.seq for r in await first.read(c)] == list(range(1, 31))
        positions = [r.position for r in await second.read_all(limit=200)]
        assert positions == sorted(positions) and len(set(positions)) == 90
    finally:
        await first.close()
        await second.close()


async def test_a_file_that_is_not_a_database_is_refused_cleanly(tmp_path) -> None:
    path = tmp_path / "not-a-db.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(PersistenceError):
        await open_sqlite(path)


async def test_a_follower_gets_every_commit_in_order_as_a_read_returns_it(tmp_path) -> None:
    path = tmp_path / "fed.db"
    store, other = await open_sqlite(path), await open_sqlite(path)
    pages: list[tuple[int, list]] = []
    try:
        await store.append("before", [record("before")])  # before following: not fed
        await store.follow(lambda after, page: pages.append((after, list(page))))
        await asyncio.gather(*(store.append(f"c{n}", [record(f"c{n}")]) for n in range(20)))
        await other.append("elsewhere", [record("elsewhere")])  # another writer, in between
        await store.append("c0", [record("c0", "again", key="again")])
        await store.save_checkpoint("group", 1)  # no events: nothing fed
        fed = [r for _, page in pages for r in page]
        assert fed == (await store.read_all(0, 100))[1:]  # same records, field for field
        assert pages[0][0] == 1
        for (_, before), (after, _) in itertools.pairwise(pages):
            assert after == before[-1].position  # each page starts where the last ended
        assert "elsewhere" in [r.conversation_id for r in pages[-1][1]]
    finally:
        await store.close()
        await other.close()


def _checkpoint(group: str, position: int, *, then_fail: bool = False):
    def work(conn, now: str) -> int:
        conn.execute("INSERT INTO consumer_checkpoints VALUES (?, ?)", (group, position))
        if then_fail:
            raise ValueError("a bug in the work")
        return position

    return work


async def test_transacted_work_is_committed_and_returns_its_result(sqlite_store) -> None:
    assert await sqlite_store.transact(_checkpoint("g", 7)) == 7
    assert await sqlite_store.load_checkpoint("g") == 7


async def test_work_that_raises_is_undone_alone_and_the_writer_carries_on(sqlite_store) -> None:
    failed, appended, saved = await asyncio.wait_for(
        asyncio.gather(
            sqlite_store.transact(_checkpoint("half", 1, then_fail=True)),
            sqlite_store.append("c", [record("c")]),
            sqlite_store.transact(_checkpoint("whole", 2)),
            return_exceptions=True,
        ),
        timeout=5,
    )
    assert isinstance(failed, ValueError)
    assert appended.seqs == (1,) and saved == 2
    assert await sqlite_store.load_checkpoint("half") == 0
    assert await sqlite_store.load_checkpoint("whole") == 2
    result = await asyncio.wait_for(sqlite_store.append("c", [record("c", "later")]), 5)
    assert result.seqs == (2,)


async def test_work_the_database_refuses_raises_a_persistence_error(sqlite_store) -> None:
    def refused(conn, now: str) -> None:
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    with pytest.raises(ProgrammingError):
        await sqlite_store.transact(refused)
    assert (await sqlite_store.append("c", [record("c")])).seqs == (1,)

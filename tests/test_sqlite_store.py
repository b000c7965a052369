"""SQLite specifics: group commit, a responsive event loop, writers of one file taking
turns, work run in the writer's transaction, and a clean refusal of bad files."""

from __future__ import annotations

import asyncio
import itertools
import os
import stat
import struct
import time
from pathlib import Path

import pytest

from threadline.core.errors import PersistenceError, ProgrammingError
from threadline.core.ports import Snapshot
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


# -- faults in one job ------------------------------------------------------------------


class Crash(BaseException):
    """A fault that is not even an Exception: it must still fail only its own job."""


async def _in_one_group(path, *writes):
    """Run ``writes`` while another process holds the file, so they queue up and the
    writer commits them as one group; their outcomes, errors included."""
    other = TurnLock(str(path))
    try:
        with other:
            tasks = [asyncio.ensure_future(write) for write in writes]
            await asyncio.sleep(0.2)
        return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    finally:
        other.close()


async def test_a_job_that_raises_fails_alone_and_its_group_commits(tmp_path) -> None:
    path = tmp_path / "faults.db"
    store = await open_sqlite(path)
    commits = store.commits

    def crash(conn, now):
        conn.execute("INSERT INTO handled (group_name, key) VALUES ('crash', 'half-done')")
        raise Crash("a bug in a job")

    try:
        results = await _in_one_group(
            path,
            *(store.append(f"c{n}", [record(f"c{n}")]) for n in range(4)),
            store._write(crash),
            store.save_snapshot(Snapshot("c\ud800", 1, 1, b"state")),  # cannot be encoded
            *(store.append(f"c{n}", [record(f"c{n}")]) for n in range(4, 8)),
        )
        assert store.commits == commits + 1  # one group, one transaction
        assert isinstance(results[4], Crash) and isinstance(results[5], UnicodeEncodeError)
        assert [r.seqs for r in results[:4] + results[6:]] == [(1,)] * 8
        assert not await store.was_handled("crash", "half-done")  # its part rolled back
        assert (await asyncio.wait_for(store.append("c0", [record("c0")]), 10)).seqs == (2,)
    finally:
        await store.close()
    store = await open_sqlite(path)  # durable
    try:
        assert len(await store.read_all(limit=100)) == 9
    finally:
        await store.close()


async def test_a_follower_that_raises_never_holds_up_the_appends(tmp_path) -> None:
    store = await open_sqlite(tmp_path / "fed.db")
    fed: list[int] = []

    def feed(after, page) -> None:
        fed.append(len(page))
        raise Crash("a bug in the follower")

    try:
        await store.follow(feed)
        for n in range(3):
            result = await asyncio.wait_for(store.append("c", [record("c", f"turn {n}")]), 10)
            assert result.seqs == (n + 1,)
        assert fed == [1, 1, 1]  # it is fed on, page after page
    finally:
        await store.close()


async def test_a_page_for_the_follower_that_cannot_be_read_leaves_the_writer_serving(
    tmp_path,
) -> None:
    path = tmp_path / "fed.db"
    store, other = await open_sqlite(path), await open_sqlite(path)
    loop = asyncio.get_running_loop()

    def page(conn, after):
        raise ValueError("a row the follower cannot decode")

    try:
        await store._write(store._writer.follow(loop, lambda after, page: None, page))
        for n in range(3):
            # Another writer committed since the last page: the next commit reads one.
            await other.append("elsewhere", [record("elsewhere", f"turn {n}")])
            result = await asyncio.wait_for(store.append("c", [record("c", f"turn {n}")]), 10)
            assert result.seqs == (n + 1,)
    finally:
        await store.close()
        await other.close()


async def test_a_query_that_raises_fails_alone_and_the_reader_goes_on(tmp_path) -> None:
    store = await open_sqlite(tmp_path / "read.db", readers=1)
    loop = asyncio.get_running_loop()

    def crash(conn):
        raise Crash("a bug in a query")

    try:
        await store.append("c", [record("c")])
        failing: asyncio.Future[object] = loop.create_future()
        store._readers.submit((loop, failing, crash))
        with pytest.raises(Crash):
            await asyncio.wait_for(failing, 10)
        assert len(await asyncio.wait_for(store.read("c"), 10)) == 1
    finally:
        await store.close()


async def test_the_database_and_its_log_are_readable_by_this_user_only(tmp_path) -> None:
    old = os.umask(0o022)  # the usual umask: files 0644 unless the store says otherwise
    try:
        store = await open_sqlite(tmp_path / "var" / "threadline.db")
        await store.append("c", [record("c", "my card is on its way")])
    finally:
        os.umask(old)
    try:
        folder = tmp_path / "var"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        files = sorted(p.name for p in folder.iterdir())
        assert files == ["threadline.db", "threadline.db-shm", "threadline.db-wal",
                         "threadline.db-writer"]  # fmt: skip
        assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {
            name: 0o600 for name in files
        }
    finally:
        await store.close()


async def test_a_database_made_readable_to_others_before_is_made_private(tmp_path) -> None:
    path = tmp_path / "old.db"
    first = await open_sqlite(path)
    await first.close()
    path.chmod(0o644)
    again = await open_sqlite(path)
    await again.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _log_copied(path: Path) -> tuple[int, int]:
    """Pages in the file's WAL, and how many of them are copied into the database file (the
    WAL index's ``mxFrame`` and ``nBackfill``, in the machine's byte order)."""
    shm = Path(f"{path}-shm").read_bytes()
    (frames,) = struct.unpack_from("=I", shm, 16)
    (copied,) = struct.unpack_from("=I", shm, 96)
    return frames, copied


async def test_the_log_is_copied_into_the_file_off_the_commits(tmp_path) -> None:
    """SQLite copies the log in the commit that takes it past 1,000 pages, and every append
    queued behind that commit waits; the checkpoint thread copies it long before."""
    path = tmp_path / "log.db"
    store = await open_sqlite(path)
    try:
        for i in range(80):
            await store.append("c", [record("c", f"turn {i}")])
        for _ in range(150):  # every 16 commits, and a second after the last one
            frames, copied = _log_copied(path)
            if copied == frames:
                break
            await asyncio.sleep(0.02)
        assert 0 < frames < 1000 and copied == frames
    finally:
        await store.close()


async def test_the_log_stays_short_however_long_the_writes_go_on(tmp_path) -> None:
    store = await open_sqlite(tmp_path / "log.db")
    wal = tmp_path / "log.db-wal"
    try:
        text = "x" * 3000
        largest = 0
        for i in range(1500):  # a page or more each, back to back: several times 1,000 pages
            await store.append("c", [record("c", f"{text} {i}")])
            largest = max(largest, wal.stat().st_size)
        assert largest < 8 * 1024 * 1024, f"the log grew to {largest:,} bytes"
        assert len(await store.read("c")) == 1500
    finally:
        await store.close()

"""PostgreSQL specifics: global order without skips, group commit, lent connections,
migrations, failures.

The contract every backend shares lives in :mod:`threadline.testing.store_contract`;
these tests pin what only this backend does, on the real server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.conftest import POSTGRES_URL, drop_schema, require_service
from threadline.core.errors import (
    ConfigurationError,
    ConflictError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
)
from threadline.core.events import EventRecord
from threadline.core.ports import ANY, NO_STREAM
from threadline.store.migrations import migrations
from threadline.store.postgres import PostgresStore, _rows, open_postgres
from threadline.store.postgres_writer import APPEND_BATCH, Pending, _batch_params
from threadline.testing.factories import record, records

pytestmark = pytest.mark.postgres

Append = tuple[str, int, Sequence[EventRecord]]


@pytest.fixture
async def schema(pg_schema: str) -> AsyncIterator[str]:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    yield pg_schema
    await drop_schema(pg_schema)


@pytest.fixture
async def store(schema: str) -> AsyncIterator[PostgresStore]:
    store = await open_postgres(POSTGRES_URL, schema=schema)
    yield store
    await store.close()


async def connect(schema: str) -> psycopg.AsyncConnection[Any]:
    """A plain connection into ``schema``, outside the store."""
    return await psycopg.AsyncConnection.connect(
        POSTGRES_URL, autocommit=True, options=f"-c search_path={schema}"
    )


async def append_batch(conn: psycopg.AsyncConnection[Any], *appends: Append) -> list[tuple]:
    """Call threadline_append_batch as the store does, in ``conn``'s current transaction."""
    loop = asyncio.get_running_loop()
    batch = [Pending(c, exp, _rows(c, recs), loop.create_future()) for c, exp, recs in appends]
    cursor = await conn.execute(APPEND_BATCH, _batch_params(batch), binary=True)
    return await cursor.fetchall()


# -- global order -----------------------------------------------------------------------


async def test_read_all_never_returns_an_event_while_a_lower_position_may_commit(
    store: PostgresStore, schema: str
) -> None:
    a, b = await connect(schema), await connect(schema)
    try:
        async with a.transaction():
            # A writes first, so its transaction id, and so its position, is lower.
            ((status, _, _, a_position),) = await append_batch(
                a, ("conv-a", ANY, [record("conv-a")])
            )
            assert status == "o"
            async with b.transaction():
                ((status, _, _, b_position),) = await append_batch(
                    b, ("conv-b", ANY, [record("conv-b")])
                )
            assert a_position < b_position
            # B has committed: a reader that ignored A would see B now, and skip A for good.
            cursor = await b.execute("SELECT position FROM events")
            assert await cursor.fetchall() == [(b_position,)]
            assert await store.read_all() == []
        # A has committed: both come back, A first.
        assert [r.position for r in await store.read_all()] == [a_position, b_position]
    finally:
        await a.close()
        await b.close()


async def test_an_append_that_loses_the_race_for_transaction_order_is_sent_again(
    store: PostgresStore, schema: str
) -> None:
    a = await connect(schema)
    try:
        async with a.transaction():
            await a.execute("SELECT pg_current_xact_id()")  # A takes the lower id
            later = await store.append("conv-a", [record("conv-a")])
            outcome = await append_batch(a, ("conv-a", ANY, [record("conv-a")]))
            # Appending after `later` with a lower id would break seq order in read_all.
            assert [row[0] for row in outcome] == ["r"]
        assert [r.position for r in await store.read("conv-a")] == list(later.positions)
    finally:
        await a.close()


async def test_recorded_at_is_store_time_in_utc(store: PostgresStore) -> None:
    await store.append("conv-a", [record("conv-a")])
    (stored,) = await store.read("conv-a")
    assert stored.recorded_at is not None
    assert stored.recorded_at.utcoffset() == timedelta(0)
    assert stored.occurred_at.utcoffset() == timedelta(0)


# -- group commit -----------------------------------------------------------------------


async def test_concurrent_appends_share_transactions(store: PostgresStore) -> None:
    before = store.commit_stats
    results = await asyncio.gather(
        *(store.append(f"conv-{n}", [record(f"conv-{n}")]) for n in range(64))
    )
    after = store.commit_stats
    assert after.appends - before.appends == 64
    transactions = after.transactions - before.transactions
    assert transactions <= 8, f"64 concurrent appends took {transactions} transactions"
    # The server's own record agrees: position >> 20 is the writing transaction's id.
    assert len({r.positions[0] >> 20 for r in results}) <= min(transactions, 8)


async def test_a_lone_appender_sends_each_append_at_once(store: PostgresStore) -> None:
    before = store.commits
    for i in range(20):
        await store.append("conv-a", [record("conv-a", f"turn {i}")])
    assert store.commits - before == 20


async def test_a_stale_append_in_a_batch_does_not_fail_the_others(
    store: PostgresStore, schema: str
) -> None:
    await store.append("conv-x", records("conv-x", 1, "seed"))
    conn = await connect(schema)
    try:
        outcome = await append_batch(
            conn,
            ("conv-1", ANY, [record("conv-1")]),
            ("conv-x", 5, [record("conv-x")]),
            ("conv-2", NO_STREAM, records("conv-2", 2)),
        )
    finally:
        await conn.close()
    assert [(status, head) for status, head, _, _ in outcome] == [("o", 0), ("c", 1), ("o", 0)]
    assert outcome[0][3] >> 20 == outcome[2][3] >> 20  # one transaction
    assert [r.seq for r in await store.read("conv-2")] == [1, 2]
    assert [r.seq for r in await store.read("conv-x")] == [1]


async def test_a_stale_append_fails_alone_when_batched_by_the_store(store: PostgresStore) -> None:
    await store.append("conv-x", records("conv-x", 1, "seed"))
    before = store.commits
    results = await asyncio.gather(
        *(store.append(f"conv-{n}", [record(f"conv-{n}")]) for n in range(20)),
        store.append("conv-x", [record("conv-x")], expected_seq=5),
        return_exceptions=True,
    )
    assert isinstance(results[-1], ConflictError) and results[-1].actual == 1
    assert not any(isinstance(r, BaseException) for r in results[:-1])
    assert store.commits - before <= 6


async def test_a_batch_naming_a_conversation_twice_is_refused_whole(
    store: PostgresStore, schema: str
) -> None:
    conn = await connect(schema)
    try:
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            await append_batch(
                conn, ("conv-a", ANY, [record("conv-a")]), ("conv-a", ANY, [record("conv-a")])
            )
    finally:
        await conn.close()
    assert await store.read_all() == []


async def test_a_reused_event_id_fails_only_its_own_append(store: PostgresStore) -> None:
    first = record("conv-0")
    await store.append("conv-0", [first])
    clash = record("conv-9")._replace(event_id=first.event_id)
    results = await asyncio.gather(
        *(store.append(f"conv-{n}", [record(f"conv-{n}")]) for n in range(1, 9)),
        store.append("conv-9", [clash]),
        return_exceptions=True,
    )
    assert isinstance(results[-1], IntegrityError)
    assert not any(isinstance(r, BaseException) for r in results[:-1])
    assert len(await store.read_all()) == 9


async def test_an_append_cancelled_before_it_was_sent_is_never_written(
    store: PostgresStore,
) -> None:
    first = asyncio.create_task(store.append("conv-a", [record("conv-a", "first")]))
    second = asyncio.create_task(store.append("conv-a", [record("conv-a", "second")]))
    await asyncio.sleep(0)  # the first is in flight, the second waits behind it
    second.cancel()
    await first
    with pytest.raises(asyncio.CancelledError):
        await second
    assert [r.seq for r in await store.read("conv-a")] == [1]
    assert (await store.append("conv-a", [record("conv-a", "third")], 1)).seqs == (2,)


async def test_close_finishes_the_appends_in_hand(schema: str) -> None:
    store = await open_postgres(POSTGRES_URL, schema=schema)
    pending = [
        asyncio.create_task(store.append(f"conv-{n}", [record(f"conv-{n}")])) for n in range(40)
    ]
    await asyncio.sleep(0)  # let them queue
    await store.close()
    assert all(not t.cancelled() and t.exception() is None for t in pending)
    reopened = await open_postgres(POSTGRES_URL, schema=schema)
    try:
        assert len(await reopened.read_all()) == 40
    finally:
        await reopened.close()


async def test_a_lost_connection_fails_loudly_and_the_next_call_reconnects(schema: str) -> None:
    name = f"tl-{schema}"  # ends this store's own sessions and no others
    url = make_conninfo(POSTGRES_URL, application_name=name)
    store = await open_postgres(url, schema=schema, writers=1, readers=1)
    try:
        await store.append("conv-a", [record("conv-a")])
        await store.read("conv-a")
        conn = await connect(schema)
        try:
            cursor = await conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (name,),
            )
            assert await cursor.fetchone() == (2,)
        finally:
            await conn.close()
        with pytest.raises(OperationalError) as caught:
            await store.append("conv-a", [record("conv-a", "lost")])
        assert caught.value.retryable
        with pytest.raises(OperationalError):
            await store.read("conv-a")
        await store.append("conv-a", [record("conv-a", "again")])
        assert [r.seq for r in await store.read("conv-a")][-1] >= 2
    finally:
        await store.close()


# -- connections for tables beside the log ---------------------------------------------


async def test_a_store_connection_works_in_the_store_schema(
    store: PostgresStore, schema: str
) -> None:
    async with store.connection() as conn:
        cursor = await conn.execute("SELECT current_schema()")
        assert await cursor.fetchone() == (schema,)


async def test_a_driver_error_on_a_store_connection_is_a_threadline_error(
    store: PostgresStore,
) -> None:
    with pytest.raises(ProgrammingError, match="no_such_table"):
        async with store.connection() as conn:
            await conn.execute("SELECT * FROM no_such_table")


async def test_a_closed_store_lends_no_connection(schema: str) -> None:
    store = await open_postgres(POSTGRES_URL, schema=schema)
    await store.close()
    with pytest.raises(ProgrammingError, match="closed"):
        async with store.connection():
            pass


# -- migrations and opening ------------------------------------------------------------


async def _versions(schema: str) -> list[int]:
    conn = await connect(schema)
    try:
        cursor = await conn.execute("SELECT version FROM schema_migrations ORDER BY version")
        return [v for (v,) in await cursor.fetchall()]
    finally:
        await conn.close()


async def test_opening_twice_applies_each_migration_once(schema: str) -> None:
    first = await open_postgres(POSTGRES_URL, schema=schema)
    result = await first.append("conv-a", [record("conv-a")])
    await first.close()
    second = await open_postgres(POSTGRES_URL, schema=schema)
    try:
        assert [r.position for r in await second.read("conv-a")] == list(result.positions)
    finally:
        await second.close()
    assert await _versions(schema) == [v for v, _ in migrations("postgres")]


async def test_processes_starting_together_migrate_once(schema: str) -> None:
    stores = await asyncio.gather(*(open_postgres(POSTGRES_URL, schema=schema) for _ in range(4)))
    for store in stores:
        await store.close()
    assert await _versions(schema) == [v for v, _ in migrations("postgres")]


async def test_a_schema_that_is_not_a_plain_identifier_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        await open_postgres(POSTGRES_URL, schema='x"; DROP TABLE events; --')


async def test_an_unreachable_server_is_a_retryable_operational_error() -> None:
    with pytest.raises(OperationalError) as caught:
        await open_postgres("postgresql://postgres@127.0.0.1:1/test", connect_timeout=1)
    assert caught.value.retryable

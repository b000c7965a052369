"""The identity-directory contract, run against every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import POSTGRES_URL, drop_schema, require_service
from threadline.core.ports import EventStore
from threadline.identity.directory import IdentityProjection
from threadline.security.master_key import LocalKeyProvider
from threadline.store import encrypt, open_directory
from threadline.store.sealing import TamperedPayload
from threadline.store.sqlite import SQLiteStore, open_sqlite
from threadline.testing.identity_contract import (
    ADA_EMAIL,
    ADA_PHONE,
    GATEWAY,
    IdentityContract,
    claim,
    service,
)


class TestSQLiteIdentity(IdentityContract):
    #: The key provider the store encrypts with (None: it keeps personal data in clear).
    keys: LocalKeyProvider | None = None

    @pytest.fixture
    async def store(self, tmp_path) -> AsyncIterator[EventStore]:
        self.opened: list[EventStore] = []
        self.path = tmp_path / "threadline.db"
        store = await open_sqlite(self.path, keys=self.keys)
        self.opened.append(store)
        yield store
        for opened in self.opened:
            await opened.close()

    @pytest.fixture
    def reopen(self):
        async def reopen(store: EventStore) -> EventStore:
            await store.close()
            fresh = await open_sqlite(self.path, keys=self.keys)
            self.opened.append(fresh)
            return fresh

        return reopen


@pytest.mark.postgres
class TestPostgresIdentity(IdentityContract):
    keys: LocalKeyProvider | None = None

    @pytest.fixture
    async def store(self, pg_schema) -> AsyncIterator[EventStore]:
        require_service("PostgreSQL", "127.0.0.1", 5432)
        from threadline.store.postgres import open_postgres

        self.schema = pg_schema
        self.opened: list[EventStore] = []
        store = await open_postgres(POSTGRES_URL, schema=pg_schema, keys=self.keys)
        self.opened.append(store)
        yield store
        for opened in self.opened:
            await opened.close()
        await drop_schema(pg_schema)

    @pytest.fixture
    def reopen(self):
        from threadline.store.postgres import open_postgres

        async def reopen(store: EventStore) -> EventStore:
            await store.close()
            fresh = await open_postgres(POSTGRES_URL, schema=self.schema, keys=self.keys)
            self.opened.append(fresh)
            return fresh

        return reopen


# -- sealed at rest ------------------------------------------------------------------------

KEYS = LocalKeyProvider(bytes(range(32)))


class TestSealedSQLiteIdentity(TestSQLiteIdentity):
    """The contract again, on a store that encrypts personal data."""

    keys = KEYS


@pytest.mark.postgres
class TestSealedPostgresIdentity(TestPostgresIdentity):
    keys = KEYS


async def test_the_directory_keeps_no_identifier_or_reason_in_clear(
    any_store: Any, pg_schema: str
) -> None:
    encrypt(any_store, KEYS)
    identity = await service(any_store)
    await claim(identity, "cus-ada", ADA_PHONE, verified=True)
    await claim(identity, "cus-ada", ADA_EMAIL)
    held = await identity.link("cus-bo", ADA_EMAIL, verified=False, method="caller_id",
                               linked_by="test", reason="says she is Ada Lovelace",
                               actor=GATEWAY)  # fmt: skip
    assert held.status == "conflict"
    directory = identity.directory
    rows = await _directory_rows(any_store)
    for clear in ("+13125550147", "ada.l@example.com", "Ada Lovelace", "phone:", "email:"):
        assert clear not in rows, clear
    found = await directory.lookup(ADA_PHONE)
    assert found is not None and (found.key, found.customer_id) == ("phone:+13125550147", "cus-ada")
    assert [x.key for x in await directory.identifiers("cus-ada")] == [
        "email:ada.l@example.com", "phone:+13125550147",
    ]  # fmt: skip
    (conflict,) = await directory.conflicts()
    assert (conflict.key, conflict.reason) == (
        "email:ada.l@example.com",
        "says she is Ada Lovelace",
    )
    # A value moved into another row does not open.
    await _swap_values(any_store)
    with pytest.raises(TamperedPayload):
        await directory.identifiers("cus-ada")


async def test_a_directory_kept_in_clear_is_rebuilt_sealed(tmp_path) -> None:
    path = tmp_path / "threadline.db"
    store = await open_sqlite(path)  # a store from before encryption
    identity = await service(store)
    await claim(identity, "cus-ada", ADA_PHONE, verified=True)
    assert "+13125550147" in await _directory_rows(store)
    await store.close()
    store = await open_sqlite(path, keys=KEYS)
    try:
        directory = await open_directory(store)
        assert await directory.checkpoint() == 0  # dropped: the projection folds the log again
        await IdentityProjection(store, directory).catch_up()
        found = await directory.lookup(ADA_PHONE)
        assert found is not None and found.customer_id == "cus-ada" and found.verified
        assert "+13125550147" not in await _directory_rows(store)
    finally:
        await store.close()


async def _directory_rows(store: Any) -> str:
    """Every row of the directory's tables, as text."""
    out = []
    for table in ("identity_links", "identity_conflicts"):
        rows = await _query(store, f"SELECT * FROM {table}")
        out.extend(repr(row) for row in rows)
    return "\n".join(out)


async def _swap_values(store: Any) -> None:
    rows = await _query(store, "SELECT identifier, value FROM identity_links ORDER BY identifier")
    (a, va), (b, vb) = rows[:2]
    sql = "UPDATE identity_links SET value = {p} WHERE identifier = {p}"
    for value, index in ((vb, a), (va, b)):
        await _query(store, sql, (value, index), write=True)


async def _query(store: Any, sql: str, params: tuple[Any, ...] = (), write: bool = False) -> Any:
    if isinstance(store, SQLiteStore):
        sql = sql.replace("{p}", "?")
        if write:
            return await store.transact(lambda conn, now: conn.execute(sql, params).rowcount)
        return await store._read(sql, params)
    sql = sql.replace("{p}", "%s")
    async with store.connection() as conn:
        cursor = await conn.execute(sql, params)
        return None if write else await cursor.fetchall()

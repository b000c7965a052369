"""The identity-directory contract, run against every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import POSTGRES_URL, drop_schema, require_service
from threadline.core.ports import EventStore
from threadline.store.sqlite import open_sqlite
from threadline.testing.identity_contract import IdentityContract


class TestSQLiteIdentity(IdentityContract):
    @pytest.fixture
    async def store(self, tmp_path) -> AsyncIterator[EventStore]:
        self.opened: list[EventStore] = []
        self.path = tmp_path / "threadline.db"
        store = await open_sqlite(self.path)
        self.opened.append(store)
        yield store
        for opened in self.opened:
            await opened.close()

    @pytest.fixture
    def reopen(self):
        async def reopen(store: EventStore) -> EventStore:
            await store.close()
            fresh = await open_sqlite(self.path)
            self.opened.append(fresh)
            return fresh

        return reopen


@pytest.mark.postgres
class TestPostgresIdentity(IdentityContract):
    @pytest.fixture
    async def store(self, pg_schema) -> AsyncIterator[EventStore]:
        require_service("PostgreSQL", "127.0.0.1", 5432)
        from threadline.store.postgres import open_postgres

        self.schema = pg_schema
        self.opened: list[EventStore] = []
        store = await open_postgres(POSTGRES_URL, schema=pg_schema)
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
            fresh = await open_postgres(POSTGRES_URL, schema=self.schema)
            self.opened.append(fresh)
            return fresh

        return reopen

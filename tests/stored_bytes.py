"""Every byte a store holds, for tests that prove something is never stored: the SQLite
database with its WAL and shared-memory files, or every value of every PostgreSQL table
(bytea columns as their bytes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tests.conftest import POSTGRES_URL
from threadline.store.sqlite import SQLiteStore


async def stored_bytes(store: Any, schema: str) -> bytes:
    """What ``store`` holds on disk; ``schema`` is a PostgreSQL store's (the ``pg_schema``
    fixture)."""
    if isinstance(store, SQLiteStore):
        database = Path(store.path)
        files = sorted(database.parent.glob(database.name + "*"))
        assert files, f"no database files beside {database}"
        return b"".join(path.read_bytes() for path in files)
    dumped: list[bytes] = []
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL) as conn:
        tables = await conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        )
        for (table,) in await tables.fetchall():
            query = sql.SQL("SELECT * FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            for row in await (await conn.execute(query)).fetchall():
                # bytea columns (payloads, snapshots, keys) as the bytes they hold
                dumped.extend(v if isinstance(v, bytes) else str(v).encode() for v in row)
    assert dumped, f"schema {schema} holds nothing"
    return b"\n".join(dumped)

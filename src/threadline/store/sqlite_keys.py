"""The SQLite store's data keys (migration 0004), and what erasure leaves in its files.

Look-ups run on the store's reader threads (or, for the commit feed, on the writer's own
connection), new keys on its writer. Every connection runs with ``secure_delete`` on, so
a deleted row (a destroyed key, a purged snapshot or directory row), and a row that moved
when its page was rebalanced, is overwritten with zeros. :func:`shred` deletes, then
checkpoints the WAL into the database and truncates it, so no copy is left in
``<db>-wal`` either.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any, Final

import orjson

from threadline.core.errors import OperationalError
from threadline.core.ports import WrappedKey
from threadline.store.sealing import KeyTable, Shredded, StoredKey

if TYPE_CHECKING:
    from threadline.store.sqlite import SQLiteStore

_COLUMNS: Final = "key_id, owner, wrapped_by, wrapped"
_BY_ID: Final = f"SELECT {_COLUMNS} FROM data_keys WHERE key_id IN (SELECT value FROM json_each(?))"
_BY_OWNER: Final = (
    f"SELECT {_COLUMNS} FROM data_keys WHERE owner IN (SELECT value FROM json_each(?))"
    " ORDER BY created_at, key_id"
)
#: Tries at truncating the WAL while readers finish (each waits the busy timeout).
TRUNCATE_TRIES: Final = 5


def _json(items: Collection[str]) -> str:
    return orjson.dumps(sorted(items)).decode()


def _stored(row: Sequence[Any]) -> StoredKey:
    return StoredKey(row[0], row[1], WrappedKey(row[2], bytes(row[3])))


def keys_by_id(conn: sqlite3.Connection, key_ids: Collection[str]) -> list[StoredKey]:
    """The keys among ``key_ids`` that exist, read on ``conn`` (a thread that may block)."""
    return [_stored(row) for row in conn.execute(_BY_ID, (_json(key_ids),))]


class SQLiteKeyTable(KeyTable):
    """``data_keys`` in the store's file."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    async def by_id(self, key_ids: Collection[str]) -> list[StoredKey]:
        return [_stored(row) for row in await self._store._read(_BY_ID, (_json(key_ids),))]

    async def by_owner(self, owners: Collection[str]) -> list[StoredKey]:
        return [_stored(row) for row in await self._store._read(_BY_OWNER, (_json(owners),))]

    async def add(self, keys: Sequence[StoredKey]) -> None:
        rows = [(k.key_id, k.owner, k.wrapped.master_key_id, k.wrapped.ciphertext) for k in keys]

        def work(conn: sqlite3.Connection, now: str) -> None:
            conn.executemany(
                "INSERT INTO data_keys (key_id, owner, wrapped_by, wrapped, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [(*row, now) for row in rows],
            )

        await self._store.transact(work)


def truncate_wal(path: str) -> None:
    """Checkpoint the whole WAL into the database and truncate it to nothing (blocking)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=2.0)
    try:
        for _ in range(TRUNCATE_TRIES):
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return
            time.sleep(0.05)
    finally:
        conn.close()
    raise OperationalError(
        f"{path}-wal is in use and could not be truncated: the keys are destroyed, but copies"
        " may remain in it until the next checkpoint; erase again to finish"
    )


async def shred(
    store: SQLiteStore, owners: Collection[str], conversation_ids: Collection[str]
) -> Shredded:
    """Delete the keys of ``owners`` and the snapshots of ``conversation_ids``, then
    truncate the WAL."""

    def work(conn: sqlite3.Connection, now: str) -> Shredded:
        keys = conn.execute(
            "DELETE FROM data_keys WHERE owner IN (SELECT value FROM json_each(?))",
            (_json(owners),),
        ).rowcount
        snapshots = conn.execute(
            "DELETE FROM snapshots WHERE conversation_id IN (SELECT value FROM json_each(?))",
            (_json(conversation_ids),),
        ).rowcount
        return Shredded(keys, snapshots)

    shredded: Shredded = await store.transact(work)
    if store.path != ":memory:":
        await asyncio.to_thread(truncate_wal, store.path)
    return shredded

"""The PostgreSQL store's data keys (migration 0004), and what erasure leaves in its tables.

:func:`shred` deletes an owner's keys and their conversations' snapshots, then vacuums
outside a transaction: ``VACUUM FULL`` rewrites ``data_keys`` into new files (a small
table, locked for as long as that takes), so no copy of a destroyed wrapped key is left in
the table's files; the other tables erasure touches (snapshots, the identity directory)
get a plain ``VACUUM``, which frees their dead rows for reuse. Copies in the server's
write-ahead log and in backups age out with them: keep both on the retention the
erasure policy promises.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any, Final

from threadline.core.ports import WrappedKey
from threadline.store.sealing import KeyTable, Shredded, StoredKey

if TYPE_CHECKING:
    from threadline.store.postgres import PostgresStore

_COLUMNS: Final = "key_id, owner, wrapped_by, wrapped"
#: Tables erasure deletes from, besides ``data_keys``: vacuumed after it.
VACUUMED: Final = ("snapshots", "identity_links", "identity_merges", "identity_conflicts")


def _stored(row: Sequence[Any]) -> StoredKey:
    return StoredKey(row[0], row[1], WrappedKey(row[2], bytes(row[3])))


class PostgresKeyTable(KeyTable):
    """``data_keys`` in the store's schema."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def _select(self, where: str, values: Collection[str]) -> list[StoredKey]:
        async with self._store.connection() as conn:
            cursor = await conn.execute(
                f"SELECT {_COLUMNS} FROM data_keys WHERE {where} = ANY(%s)"
                " ORDER BY created_at, key_id",
                (sorted(values),),
            )
            return [_stored(row) for row in await cursor.fetchall()]

    async def by_id(self, key_ids: Collection[str]) -> list[StoredKey]:
        return await self._select("key_id", key_ids)

    async def by_owner(self, owners: Collection[str]) -> list[StoredKey]:
        return await self._select("owner", owners)

    async def add(self, keys: Sequence[StoredKey]) -> None:
        async with self._store.connection() as conn, conn.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO data_keys (key_id, owner, wrapped_by, wrapped)"
                " VALUES (%s, %s, %s, %s)",
                [(k.key_id, k.owner, k.wrapped.master_key_id, k.wrapped.ciphertext) for k in keys],
            )


async def shred(
    store: PostgresStore, owners: Collection[str], conversation_ids: Collection[str]
) -> Shredded:
    """Delete the keys of ``owners`` and the snapshots of ``conversation_ids``, then vacuum."""
    async with store.connection() as conn:
        async with conn.transaction():
            keys = await conn.execute(
                "DELETE FROM data_keys WHERE owner = ANY(%s)", (sorted(owners),)
            )
            snapshots = await conn.execute(
                "DELETE FROM snapshots WHERE conversation_id = ANY(%s)", (sorted(conversation_ids),)
            )
            shredded = Shredded(keys.rowcount, snapshots.rowcount)
        # Outside the transaction (VACUUM refuses to run in one); the connection autocommits.
        await conn.execute("VACUUM FULL data_keys")
        for table in VACUUMED:
            await conn.execute(f"VACUUM {table}")
    return shredded

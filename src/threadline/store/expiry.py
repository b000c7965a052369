"""Erasing the personal data of chosen events in place, on both backends (retention).

The events stay where they are, with their envelope; each personal-data field is replaced
in the stored payload by the tombstone its schema accepts (``[erased]``, ``{}``, ``[]``),
written in plain (the sealer passes plain values through), so every stream still replays.
The conversation's snapshots go too (they were folded from what the events held), and no
copy is left in the files: SQLite deletes with ``secure_delete`` and truncates its WAL;
PostgreSQL vacuums the tables touched.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

import orjson

from threadline.store.sealed_fields import Sealed, sealed_fields
from threadline.store.sqlite_keys import truncate_wal

if TYPE_CHECKING:
    from threadline.store.postgres import PostgresStore
    from threadline.store.sqlite import SQLiteStore


@cache
def _sealed() -> dict[tuple[str, int], Sealed]:
    return sealed_fields()


def tombstoned(type_: str, version: int, payload: bytes) -> bytes | None:
    """``payload`` with its personal fields as tombstones; None when there is none left."""
    sealed = _sealed().get((type_, version))
    if sealed is None:
        return None
    data: dict[str, Any] = orjson.loads(payload)
    changed = False
    for name in sealed.fields:
        stone = sealed.tombstones[name]
        if data.get(name) not in (None, stone):
            data[name] = stone
            changed = True
    return orjson.dumps(data) if changed else None


async def expire_sqlite(store: SQLiteStore, conversation_id: str, seqs: Sequence[int]) -> int:
    """Erase the personal fields of events ``seqs`` of ``conversation_id``; how many changed."""

    def work(conn: sqlite3.Connection, now: str) -> int:
        rows = conn.execute(
            "SELECT seq, type, version, payload FROM events WHERE conversation_id = ?"
            " AND seq IN (SELECT value FROM json_each(?))",
            (conversation_id, orjson.dumps(list(seqs)).decode()),
        ).fetchall()
        changed = 0
        for seq, type_, version, payload in rows:
            erased = tombstoned(type_, version, bytes(payload))
            if erased is not None:
                conn.execute("UPDATE events SET payload = ? WHERE conversation_id = ? AND seq = ?",
                             (erased, conversation_id, seq))  # fmt: skip
                changed += 1
        conn.execute("DELETE FROM snapshots WHERE conversation_id = ?", (conversation_id,))
        return changed

    changed: int = await store.transact(work)
    if changed and store.path != ":memory:":
        await asyncio.to_thread(truncate_wal, store.path)
    return changed


async def expire_postgres(store: PostgresStore, conversation_id: str, seqs: Sequence[int]) -> int:
    """Erase the personal fields of events ``seqs`` of ``conversation_id``; how many changed."""
    changed = 0
    async with store.connection() as conn:
        async with conn.transaction():
            cursor = await conn.execute(
                "SELECT seq, type, version, payload FROM events WHERE conversation_id = %s"
                " AND seq = ANY(%s) FOR UPDATE",
                (conversation_id, list(seqs)),
            )
            for seq, type_, version, payload in await cursor.fetchall():
                erased = tombstoned(type_, version, bytes(payload))
                if erased is not None:
                    await conn.execute(
                        "UPDATE events SET payload = %s WHERE conversation_id = %s AND seq = %s",
                        (erased, conversation_id, seq),
                    )
                    changed += 1
            await conn.execute("DELETE FROM snapshots WHERE conversation_id = %s",
                               (conversation_id,))  # fmt: skip
        if changed:  # outside the transaction: VACUUM refuses to run in one
            await conn.execute("VACUUM events")
            await conn.execute("VACUUM snapshots")
    return changed

"""The audit log (:class:`~threadline.audit.AuditLog`) in the PostgreSQL store's schema.

It shares the store's connection pool (:meth:`PostgresStore.connection`). An
append is one transaction that first locks the one ``audit_head`` row
(``SELECT … FOR UPDATE``): appenders in every process take turns on it, each
chains onto the head the last one committed, and the new head is written in
the same transaction. ``seq`` is the primary key, so even a writer that skipped
the lock could not store a second entry under a seq.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from threadline.audit.chain import GENESIS, Checkpoint, Head, StoredEntry, chain_hash
from threadline.audit.entry import AuditEntry, stamp
from threadline.audit.log import AuditLog
from threadline.store.postgres import PostgresStore


def _checkpoint(row: Sequence[Any]) -> Checkpoint:
    seq, hash_, at, signature = row
    return Checkpoint(int(seq), bytes(hash_), datetime.fromisoformat(at), bytes(signature))


class PostgresAuditLog(AuditLog):
    """Audit tables in the store's schema (migration 0003)."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def _rows(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        async with self._store.connection() as conn:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall()

    async def append(self, entries: Sequence[AuditEntry]) -> list[StoredEntry]:
        if not entries:
            return []
        async with self._store.connection() as conn, conn.transaction():
            cursor = await conn.execute("SELECT seq, hash FROM audit_head FOR UPDATE")
            row = await cursor.fetchone()
            assert row is not None, "migration 0003 writes the head row"
            seq, previous = int(row[0]), bytes(row[1]) if row[1] is not None else GENESIS
            rows = []
            for entry in entries:
                seq += 1
                data = entry.numbered(seq).to_bytes()
                previous = chain_hash(previous, data)
                rows.append(StoredEntry(seq, data, previous))
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO audit_entries (seq, entry, hash) VALUES (%s, %s, %s)", rows
                )
            await conn.execute("UPDATE audit_head SET seq = %s, hash = %s", (seq, previous))
        return rows

    async def read(self, from_seq: int = 1, limit: int | None = None) -> list[StoredEntry]:
        rows = await self._rows(
            "SELECT seq, entry, hash FROM audit_entries WHERE seq >= %s ORDER BY seq LIMIT %s",
            (from_seq, limit),
        )
        return [StoredEntry(int(seq), bytes(data), bytes(hash_)) for seq, data, hash_ in rows]

    async def head(self) -> Head:
        rows = await self._rows("SELECT seq, hash FROM audit_head", ())
        if not rows:
            return Head(0, GENESIS)
        seq, hash_ = rows[0]
        return Head(int(seq), bytes(hash_) if hash_ is not None else GENESIS)

    async def add_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        async with self._store.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO audit_checkpoints (seq, hash, at, signature) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (seq) DO NOTHING",
                (checkpoint.seq, checkpoint.hash, stamp(checkpoint.at), checkpoint.signature),
            )
            cursor = await conn.execute(
                "SELECT seq, hash, at, signature FROM audit_checkpoints WHERE seq = %s",
                (checkpoint.seq,),
            )
            row = await cursor.fetchone()
        assert row is not None
        return _checkpoint(row)

    async def checkpoints(self) -> list[Checkpoint]:
        rows = await self._rows(
            "SELECT seq, hash, at, signature FROM audit_checkpoints ORDER BY seq", ()
        )
        return [_checkpoint(row) for row in rows]

"""The audit log (:class:`~threadline.audit.AuditLog`) in the SQLite store's own file.

An append is work on the store's writer thread (:meth:`SQLiteStore.transact`):
it reads the head, chains the entries and writes them and the new head in the
writer's transaction. SQLite admits one writer at a time, in this process
(the writer thread) and across processes (its file lock), so every append sees
the head the last one left and the chain never forks. Reads run on the
store's reader threads; nothing blocks the event loop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from threadline.audit.chain import GENESIS, Checkpoint, Head, StoredEntry, chain_hash
from threadline.audit.entry import AuditEntry, stamp
from threadline.audit.log import AuditLog
from threadline.store.sqlite import SQLiteStore


def _checkpoint(row: Sequence[Any]) -> Checkpoint:
    seq, hash_, at, signature = row
    return Checkpoint(int(seq), bytes(hash_), datetime.fromisoformat(at), bytes(signature))


class SQLiteAuditLog(AuditLog):
    """Audit tables beside the log in one SQLite file (migration 0003)."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    async def append(self, entries: Sequence[AuditEntry]) -> list[StoredEntry]:
        if not entries:
            return []

        def work(conn: sqlite3.Connection, now: str) -> list[StoredEntry]:
            seq, previous = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
            previous = bytes(previous) if previous is not None else GENESIS
            rows = []
            for entry in entries:
                seq += 1
                data = entry.numbered(seq).to_bytes()
                previous = chain_hash(previous, data)
                rows.append(StoredEntry(seq, data, previous))
            conn.executemany("INSERT INTO audit_entries (seq, entry, hash) VALUES (?, ?, ?)", rows)
            conn.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (seq, previous))
            return rows

        rows: list[StoredEntry] = await self._store.transact(work)
        return rows

    async def read(self, from_seq: int = 1, limit: int | None = None) -> list[StoredEntry]:
        rows = await self._store._read(
            "SELECT seq, entry, hash FROM audit_entries WHERE seq >= ? ORDER BY seq LIMIT ?",
            (from_seq, -1 if limit is None else limit),
        )
        return [StoredEntry(seq, bytes(data), bytes(hash_)) for seq, data, hash_ in rows]

    async def head(self) -> Head:
        rows = await self._store._read("SELECT seq, hash FROM audit_head WHERE id = 1", ())
        if not rows:
            return Head(0, GENESIS)
        seq, hash_ = rows[0]
        return Head(int(seq), bytes(hash_) if hash_ is not None else GENESIS)

    async def add_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        def work(conn: sqlite3.Connection, now: str) -> Checkpoint:
            conn.execute(
                "INSERT OR IGNORE INTO audit_checkpoints (seq, hash, at, signature)"
                " VALUES (?, ?, ?, ?)",
                (checkpoint.seq, checkpoint.hash, stamp(checkpoint.at), checkpoint.signature),
            )
            row = conn.execute(
                "SELECT seq, hash, at, signature FROM audit_checkpoints WHERE seq = ?",
                (checkpoint.seq,),
            ).fetchone()
            return _checkpoint(row)

        kept: Checkpoint = await self._store.transact(work)
        return kept

    async def checkpoints(self) -> list[Checkpoint]:
        rows = await self._store._read(
            "SELECT seq, hash, at, signature FROM audit_checkpoints ORDER BY seq", ()
        )
        return [_checkpoint(row) for row in rows]

"""An external system for delivery tests: a SQLite file that records side effects.

``attempts`` counts every time an effect ran; ``effects`` keeps one row per
idempotency key, as a receiver that deduplicates would.
"""

from __future__ import annotations

import asyncio
import sqlite3

from threadline.core.events import EventRecord
from threadline.core.ports import CheckpointStore, Handler
from threadline.engine.effects import idempotent


class EffectsLedger:
    def __init__(self, path: str) -> None:
        self.path = path
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY, position INT)")
            conn.execute("CREATE TABLE IF NOT EXISTS attempts (key TEXT, position INT)")

    def _write(self, key: str, position: int) -> None:
        with sqlite3.connect(self.path) as conn:
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("INSERT INTO attempts VALUES (?, ?)", (key, position))
            conn.execute("INSERT OR IGNORE INTO effects VALUES (?, ?)", (key, position))

    async def perform(self, record: EventRecord, key: str) -> None:
        await asyncio.to_thread(self._write, key, record.position)

    def counts(self) -> tuple[dict[str, int], int]:
        """Effects by key (each 1 if deduplicated) and the number of attempts."""
        with sqlite3.connect(self.path) as conn:
            effects = dict(conn.execute("SELECT key, count(*) FROM effects GROUP BY key"))
            (attempts,) = conn.execute("SELECT count(*) FROM attempts").fetchone()
        return effects, attempts


def consumer(checkpoints: CheckpointStore, ledger: EffectsLedger, group: str = "mailer") -> Handler:
    return idempotent(checkpoints, group, ledger.perform)

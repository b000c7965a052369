"""The audit log port, and the backend kept in the store's own database.

Each backend keeps the entries, the head and the checkpoints in tables beside
the event log (migration ``0003_audit``): :mod:`threadline.store.sqlite_audit`
and :mod:`threadline.store.postgres_audit`; :func:`open_audit_log` picks one.
Appends are serialised, so concurrent appenders, in one process or many,
never fork the chain.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from threadline.audit.chain import Checkpoint, Head, StoredEntry
from threadline.audit.entry import AuditEntry
from threadline.core.ports import EventStore


class AuditLog(ABC):
    """An append-only, hash-chained log of audit entries and their signed checkpoints."""

    @abstractmethod
    async def append(self, entries: Sequence[AuditEntry]) -> list[StoredEntry]:
        """Number ``entries`` after the head, chain and store them atomically; the rows
        written. When this returns, they are durable."""

    @abstractmethod
    async def read(self, from_seq: int = 1, limit: int | None = None) -> list[StoredEntry]:
        """Stored rows with ``seq >= from_seq``, in seq order, as stored (unchecked)."""

    @abstractmethod
    async def head(self) -> Head:
        """The last entry's seq and hash as the log recorded them."""

    @abstractmethod
    async def add_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        """Keep ``checkpoint``; the one kept at its seq (the first one made there wins)."""

    @abstractmethod
    async def checkpoints(self) -> list[Checkpoint]:
        """Every kept checkpoint, by seq."""


def open_audit_log(store: EventStore) -> AuditLog:
    """The audit log kept in ``store``'s own database."""
    from threadline.store.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        from threadline.store.sqlite_audit import SQLiteAuditLog

        return SQLiteAuditLog(store)
    from threadline.store.postgres import PostgresStore

    if isinstance(store, PostgresStore):
        from threadline.store.postgres_audit import PostgresAuditLog

        return PostgresAuditLog(store)
    raise TypeError(f"no audit log for {type(store).__name__}")

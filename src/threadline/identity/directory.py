"""The identity directory port and the consumer that keeps it current from the log.

:class:`IdentityDirectory` is an indexed projection of the customer streams:
identifier → customer (following merges) and customer → identifiers. Each
backend keeps it in tables of its store's own database
(:mod:`threadline.store.sqlite_identity`, :mod:`threadline.store.postgres_identity`;
:func:`threadline.store.open_directory` picks one), folded by :mod:`.fold` and
checkpointed in the same transaction, so it survives restarts and is rebuilt from
the log when empty. :class:`IdentityProjection` walks ``read_all`` from the checkpoint.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from typing import Final

from threadline.core.events import Event, EventCodec, EventRecord
from threadline.core.ports import EventStore
from threadline.identity.fold import Conflict, Link, Merge, relevant
from threadline.identity.identifiers import Identifier

PAGE: Final = 1000
#: Merge chains longer than this are cut short (merges only ever point to a survivor).
MAX_HOPS: Final = 16


class IdentityDirectory(ABC):
    """Look-ups over the identity projection; :meth:`apply` folds log records into it."""

    @abstractmethod
    async def lookup(self, identifier: Identifier) -> Link | None:
        """The link of ``identifier``, its ``customer_id`` being the merge survivor."""

    @abstractmethod
    async def identifiers(self, customer_id: str) -> list[Link]:
        """The identifiers ``customer_id`` holds, by key."""

    @abstractmethod
    async def apply(self, records: Sequence[EventRecord]) -> int:
        """Fold ``records`` (in log order) and move the checkpoint past them, atomically.

        Records at or below the checkpoint and records of other streams are
        skipped, so applying twice changes nothing. Returns the new checkpoint.
        """

    @abstractmethod
    async def checkpoint(self) -> int:
        """The last log position folded in, or 0 when the projection is empty."""

    @abstractmethod
    async def survivor(self, customer_id: str) -> str:
        """Where ``customer_id`` lives now: itself, or the customer it was merged into."""

    @abstractmethod
    async def merge_of(self, customer_id: str) -> Merge | None:
        """The merge that absorbed ``customer_id``, if it is merged."""

    @abstractmethod
    async def conflicts(self, status: str | None = "open") -> list[Conflict]:
        """Conflicts in ``status`` (all when None), oldest first."""

    @abstractmethod
    async def conflict(self, conflict_id: str) -> Conflict | None:
        """One conflict."""

    @abstractmethod
    async def clear(self) -> None:
        """Forget everything, checkpoint included (the next catch-up rebuilds)."""

    @abstractmethod
    async def absorbed(self, customer_id: str) -> list[str]:
        """The customers merged into ``customer_id``, directly or through others, by id."""

    @abstractmethod
    async def forget(self, customer_ids: Collection[str]) -> int:
        """Delete every row about ``customer_ids`` (their links, merges and conflicts), as
        erasing them does; the rows deleted. Their events, read again, fold to nothing."""


def decode_relevant(codec: EventCodec, records: Sequence[EventRecord], after: int) -> list[Event]:
    """The identity events among ``records`` past position ``after``, decoded."""
    return [
        codec.decode(r)
        for r in records
        if r.position > after and relevant(r.conversation_id, r.type)
    ]


class IdentityProjection:
    """Keeps an :class:`IdentityDirectory` current by catching up from ``read_all``."""

    def __init__(self, store: EventStore, directory: IdentityDirectory) -> None:
        self.store = store
        self.directory = directory
        self._after: int | None = None
        self._lock = asyncio.Lock()

    async def catch_up(self) -> int:
        """Fold everything the log holds past the checkpoint; returns the position reached.

        Pages without identity events are not written unless full, so a busy
        log of conversations costs a read, not a write, per catch-up.
        """
        async with self._lock:
            if self._after is None:
                self._after = await self.directory.checkpoint()
            while page := await self.store.read_all(self._after, PAGE):
                wanted = any(relevant(r.conversation_id, r.type) for r in page)
                if wanted or len(page) >= PAGE:
                    await self.directory.apply(page)
                self._after = page[-1].position
                if len(page) < PAGE:
                    break
            return self._after

    async def rebuild(self) -> int:
        """Drop the projection and fold the whole log again."""
        async with self._lock:
            await self.directory.clear()
            self._after = None
        return await self.catch_up()

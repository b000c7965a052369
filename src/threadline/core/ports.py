"""Ports: the small abstract interfaces that backends implement.

Core depends on these and never on a backend. Each port has one contract
suite in :mod:`threadline.testing` that every backend passes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

from threadline.core.events import EventRecord

#: ``expected_seq`` that skips the concurrency check.
ANY: Final = -1
#: ``expected_seq`` that requires the conversation to have no events yet.
NO_STREAM: Final = 0


class AppendResult(NamedTuple):
    """Where an append landed. ``duplicate`` is true when an idempotency key
    matched an earlier append, whose result this is; nothing was written."""

    conversation_id: str
    seqs: tuple[int, ...]
    positions: tuple[int, ...]
    duplicate: bool = False

    @property
    def last_seq(self) -> int:
        return self.seqs[-1]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Folded conversation state as of ``seq``, in the state schema ``schema_version``."""

    conversation_id: str
    seq: int
    schema_version: int
    state: bytes


class EventStore(ABC):
    """The append-only log: per-conversation streams with a global order."""

    @abstractmethod
    async def append(
        self, conversation_id: str, records: Sequence[EventRecord], expected_seq: int = ANY
    ) -> AppendResult:
        """Append ``records`` atomically after ``expected_seq`` (or ``ANY``/``NO_STREAM``).

        Raises ConflictError when the stream is elsewhere, IdempotencyError when
        an idempotency key was used for a different append. A repeated append
        (same keys) returns the first result and writes nothing. When this
        returns, the events are durable.
        """

    @abstractmethod
    async def read(
        self, conversation_id: str, from_seq: int = 1, limit: int | None = None
    ) -> list[EventRecord]:
        """Events of one conversation with ``seq >= from_seq``, in seq order."""

    @abstractmethod
    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[EventRecord]:
        """Events of all conversations with ``position > after_position`` in global order.

        Never returns an event while an event with a lower position may still
        commit, so a reader that resumes from the last position it saw never
        skips anything.
        """

    @abstractmethod
    async def close(self) -> None:
        """Finish pending writes and release connections."""


class SnapshotStore(ABC):
    """Latest folded state per conversation, so rehydration reads only the tail."""

    @abstractmethod
    async def save_snapshot(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` unless a newer one (higher seq) is already kept."""

    @abstractmethod
    async def load_snapshot(self, conversation_id: str, schema_version: int) -> Snapshot | None:
        """The latest snapshot in ``schema_version``; snapshots in other versions are ignored."""


class CheckpointStore(ABC):
    """Durable progress of consumer groups, and the ledger of handled events."""

    @abstractmethod
    async def load_checkpoint(self, group: str) -> int:
        """The last position ``group`` finished, or 0."""

    @abstractmethod
    async def save_checkpoint(self, group: str, position: int) -> None:
        """Record that ``group`` finished everything up to ``position``."""

    @abstractmethod
    async def mark_handled(self, group: str, key: str) -> bool:
        """Record that ``group`` handled ``key``; false if it already had."""

    @abstractmethod
    async def was_handled(self, group: str, key: str) -> bool:
        """Whether ``group`` recorded ``key`` as handled."""


class Storage(EventStore, SnapshotStore, CheckpointStore):
    """A backend that keeps the log, snapshots and consumer progress together."""


Handler = Callable[[EventRecord], Awaitable[None]]


class Bus(ABC):
    """Delivers appended events to consumer groups, at least once.

    Within a conversation, a group sees events in seq order. Each group has
    its own durable progress; a handler that raises gets the event again.
    ``durable`` says whether the bus itself keeps published events across a
    restart; when it does not, the relay republishes from the slowest group's
    checkpoint instead.
    """

    durable: bool = True

    def groups(self) -> list[str]:
        """Names of the groups subscribed through this bus."""
        return []

    @abstractmethod
    async def publish(self, records: Sequence[EventRecord]) -> None:
        """Hand events to the bus; when this returns the bus has them durably."""

    @abstractmethod
    async def subscribe(self, group: str, handler: Handler, *, concurrency: int = 1) -> None:
        """Start delivering to ``group`` through ``handler`` from its checkpoint.

        With ``concurrency`` above 1, up to that many conversations are handled
        at once, each still strictly in seq order; a failing event holds back
        only its own conversation.
        """

    @abstractmethod
    async def close(self) -> None:
        """Stop delivery after the events in hand are settled."""

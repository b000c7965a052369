"""Threadline: one canonical conversation across voice, chat and in-person channels.

The public API is re-exported here; everything else is internal.
"""

from threadline.core.catalogue import CATALOGUE, Catalogue, Payload, Pii
from threadline.core.conversation import (
    ConversationState,
    Policy,
    check,
    decide,
    fold,
    initial,
)
from threadline.core.errors import (
    ConfigurationError,
    ConflictError,
    DomainError,
    IdempotencyError,
    IllegalTransition,
    IntegrityError,
    NotFound,
    OperationalError,
    PersistenceError,
    ProgrammingError,
    ThreadlineError,
    UnknownEventType,
    ValidationError,
)
from threadline.core.events import Actor, Event, EventCodec, EventRecord, Lineage, new_id
from threadline.core.ports import (
    ANY,
    NO_STREAM,
    AppendResult,
    Bus,
    CheckpointStore,
    EventStore,
    Snapshot,
    SnapshotStore,
    Storage,
)
from threadline.engine.conversations import Conversations
from threadline.settings import Settings, load_settings
from threadline.store import open_store

__version__ = "0.1.0"

__all__ = [
    "ANY",
    "CATALOGUE",
    "NO_STREAM",
    "Actor",
    "AppendResult",
    "Bus",
    "Catalogue",
    "CheckpointStore",
    "ConfigurationError",
    "ConflictError",
    "ConversationState",
    "Conversations",
    "DomainError",
    "Event",
    "EventCodec",
    "EventRecord",
    "EventStore",
    "IdempotencyError",
    "IllegalTransition",
    "IntegrityError",
    "Lineage",
    "NotFound",
    "OperationalError",
    "Payload",
    "PersistenceError",
    "Pii",
    "Policy",
    "ProgrammingError",
    "Settings",
    "Snapshot",
    "SnapshotStore",
    "Storage",
    "ThreadlineError",
    "UnknownEventType",
    "ValidationError",
    "check",
    "decide",
    "fold",
    "initial",
    "load_settings",
    "new_id",
    "open_store",
]

"""The public API is what ``threadline`` exports, no more and no less."""

from __future__ import annotations

import threadline

PINNED = {
    "ANY", "CATALOGUE", "NO_STREAM", "Actor", "AppendResult", "Bus", "Catalogue",
    "CheckpointStore", "ConfigurationError", "ConflictError", "ConversationState",
    "Conversations", "DomainError", "Event", "EventCodec", "EventRecord", "EventStore",
    "IdempotencyError", "IllegalTransition", "IntegrityError", "Lineage", "NotFound",
    "OperationalError", "Payload", "PersistenceError", "Pii", "Policy", "ProgrammingError",
    "Settings", "Snapshot", "SnapshotStore", "Storage", "ThreadlineError", "UnknownEventType",
    "ValidationError", "check", "decide", "fold", "initial", "load_settings", "new_id",
    "open_store",
}  # fmt: skip


def test_the_exports_are_pinned() -> None:
    assert set(threadline.__all__) == PINNED


def test_every_export_resolves() -> None:
    for name in threadline.__all__:
        assert getattr(threadline, name) is not None, name


def test_every_error_says_whether_a_retry_can_help() -> None:
    errors = [getattr(threadline, n) for n in PINNED if n.endswith("Error")]
    assert {e.__name__ for e in errors if e.retryable} == {"ConflictError", "OperationalError"}

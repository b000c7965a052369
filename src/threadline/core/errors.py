"""One error hierarchy for Threadline.

Every error says whether retrying the same call can succeed (``retryable``).
Persistence errors mirror PEP 249 so backends translate driver errors into
the same few classes.
"""

from __future__ import annotations


class ThreadlineError(Exception):
    """Base of every error Threadline raises on purpose."""

    retryable: bool = False


class ValidationError(ThreadlineError):
    """Input does not fit its schema; ``errors`` lists each field and why."""

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.errors: list[dict[str, str]] = errors or []


class UnknownEventType(ValidationError):
    """An event type or version that the catalogue does not know."""


class DomainError(ThreadlineError):
    """A command that the conversation's current state does not allow."""


class IllegalTransition(DomainError):
    """The event would move the conversation along a transition that does not exist."""

    def __init__(self, event_type: str, status: str, detail: str = "") -> None:
        message = f"{event_type} is not allowed while the conversation is {status}"
        super().__init__(f"{message}: {detail}" if detail else message)
        self.event_type = event_type
        self.status = status


class ConflictError(ThreadlineError):
    """The stream moved on since it was read (stale expected sequence).

    Retryable: re-read the stream, decide again, append again.
    """

    retryable = True

    def __init__(self, conversation_id: str, expected: int | str, actual: int) -> None:
        super().__init__(f"conversation {conversation_id} is at seq {actual}, expected {expected}")
        self.conversation_id = conversation_id
        self.expected = expected
        self.actual = actual


class IdempotencyError(ThreadlineError):
    """An idempotency key was reused for a different append."""


class NotFound(ThreadlineError):
    """The named thing does not exist."""


class PersistenceError(ThreadlineError):
    """Base of storage errors (PEP 249 ``DatabaseError``)."""


class OperationalError(PersistenceError):
    """The backend is unreachable, busy or failed mid-flight; retry later."""

    retryable = True


class IntegrityError(PersistenceError):
    """The backend refused the write because it breaks a constraint."""


class ProgrammingError(PersistenceError):
    """The backend was used wrongly (schema missing, closed store, bad SQL)."""


class ConfigurationError(ThreadlineError):
    """A setting is missing, unknown or malformed."""


class ModelError(ThreadlineError):
    """Base of what a model provider fails with."""


class ModelUnavailable(ModelError):
    """The provider gave no answer: down, timing out, rate limiting or erroring past the
    retries, or its circuit is open. The agent falls back (the embedded engine, a person)."""

    retryable = True

    def __init__(self, message: str, *, attempts: int = 0, status: int | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.status = status


class ModelRefused(ModelError):
    """The provider refused the request itself (bad request, key, model): retrying the same
    request cannot succeed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

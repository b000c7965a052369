"""Token revocation: ``token.revoked`` events on the ``system:tokens`` stream.

The log is the truth: revoking a token appends an event, and a
:class:`RevocationList` is the projection that verification consults, folded
from that stream at start-up and kept current with :meth:`RevocationList.note`
(events from the bus) or :meth:`RevocationList.catch_up` (the stream's tail).
An entry is forgotten once the token it names could no longer be accepted
anyway: after its ``expires_at`` plus the verifier's leeway.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from threadline.core.errors import ValidationError
from threadline.core.events import Actor, Event, EventCodec, EventRecord, Lineage, utcnow
from threadline.core.ports import ANY, AppendResult, EventStore
from threadline.security.principal import BadClaims, identifier
from threadline.security.tokens import LEEWAY

#: The system stream that holds every revocation.
REVOCATIONS: Final = "system:tokens"
REVOKED: Final = "token.revoked"
LINEAGE: Final = Lineage("threadline-security", "0.1.0")


def latest_expiry(max_ttl: timedelta, now: datetime | None = None) -> datetime:
    """The latest moment a token accepted now can still be accepted.

    Verification refuses lifetimes over ``max_ttl`` and issue times beyond the
    leeway, so a revocation that lasts until then covers a token whose expiry
    the revoker does not know.
    """
    return (now or utcnow()) + max_ttl + 2 * LEEWAY


def revocation(
    token_id: str,
    *,
    reason: str,
    revoked_by: str,
    expires_at: datetime,
    actor: Actor | None = None,
) -> Event:
    """The ``token.revoked`` event for ``token_id``; its idempotency key is ``revoke:<jti>``."""
    try:
        token_id = identifier(token_id, "the token id")
    except BadClaims as exc:
        raise ValidationError(str(exc), [{"field": "payload.jti", "reason": str(exc)}]) from None
    return Event(
        conversation_id=REVOCATIONS,
        type=REVOKED,
        payload={
            "jti": token_id,
            "reason": reason,
            "revoked_by": revoked_by,
            "expires_at": expires_at,
        },
        channel="system",
        actor=actor or Actor("system", "threadline"),
        idempotency_key=f"revoke:{token_id}",
        lineage=LINEAGE,
    )


async def revoke(
    store: EventStore,
    token_id: str,
    *,
    reason: str,
    revoked_by: str,
    expires_at: datetime,
    actor: Actor | None = None,
    codec: EventCodec | None = None,
) -> AppendResult:
    """Append the revocation of ``token_id``; revoking it again changes nothing.

    A repeat returns the first append's result with ``duplicate`` set, keeping
    the first reason and expiry.
    """
    event = revocation(
        token_id, reason=reason, revoked_by=revoked_by, expires_at=expires_at, actor=actor
    )
    record = (codec or EventCodec()).encode(event)
    # Revocations commute, so no expected seq; the idempotency key dedupes repeats.
    return await store.append(REVOCATIONS, [record], ANY)


class RevocationList:
    """The ids of revoked tokens that could still be presented, folded from the log."""

    def __init__(
        self, *, grace: timedelta = LEEWAY, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.grace = grace
        self._clock = clock
        self._until: dict[str, datetime] = {}
        self._seq = 0

    @classmethod
    async def load(
        cls,
        store: EventStore,
        codec: EventCodec | None = None,
        *,
        grace: timedelta = LEEWAY,
        clock: Callable[[], datetime] = utcnow,
    ) -> RevocationList:
        """The revocation list as ``store`` holds it now."""
        revocations = cls(grace=grace, clock=clock)
        await revocations.catch_up(store, codec)
        return revocations

    @property
    def seq(self) -> int:
        """The last seq of ``system:tokens`` folded in."""
        return self._seq

    async def catch_up(self, store: EventStore, codec: EventCodec | None = None) -> int:
        """Fold the revocations appended since the last one seen; how many were read."""
        decode = (codec or EventCodec()).decode
        records = await store.read(REVOCATIONS, from_seq=self._seq + 1)
        for record in records:
            self.note(decode(record))
        self._forget_expired()
        return len(records)

    def note(self, event: Event) -> None:
        """Fold one event; anything but a revocation on ``system:tokens`` is ignored."""
        if event.conversation_id != REVOCATIONS or event.type != REVOKED:
            return
        self._seq = max(self._seq, event.seq)
        expires_at = event.payload["expires_at"]
        if isinstance(expires_at, str):
            expires_at = datetime.fromisoformat(expires_at)
        until = expires_at + self.grace
        if until <= self._clock():
            return
        token_id = event.payload["jti"]
        self._until[token_id] = max(until, self._until.get(token_id, until))

    def follower(self, codec: EventCodec) -> Callable[[EventRecord], None]:
        """A listener for every appended event that keeps this list current."""

        def follow(record: EventRecord) -> None:
            if record.conversation_id == REVOCATIONS and record.type == REVOKED:
                self.note(codec.decode(record))

        return follow

    def is_revoked(self, token_id: str) -> bool:
        """Whether ``token_id`` is revoked (and could still be presented)."""
        until = self._until.get(token_id)
        if until is None:
            return False
        if until <= self._clock():
            del self._until[token_id]
            return False
        return True

    def __contains__(self, token_id: object) -> bool:
        return isinstance(token_id, str) and self.is_revoked(token_id)

    def __len__(self) -> int:
        self._forget_expired()
        return len(self._until)

    def _forget_expired(self) -> None:
        now = self._clock()
        for token_id in [t for t, until in self._until.items() if until <= now]:
            del self._until[token_id]

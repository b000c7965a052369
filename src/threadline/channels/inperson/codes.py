"""Check-in codes: a signed QR token and six digits that stand for it.

The QR code holds an ordinary signed token of this service with its own
audience, ``<token_audience>:checkin``, so the API refuses it and the
check-in refuses API tokens. It is a customer token bound to the customer and
the conversation, and lives :data:`CODE_TTL`.

The six digits map to that token server-side: ``checkin.code_issued`` on the
``system:checkin`` stream keeps only an HMAC of the digits (keyed by the
token key), the token id and the conversation, so any process sharing the
store can redeem them and nobody can read them back from the log.

Single use is a revocation, as for voice stream tokens: redeeming appends
``token.revoked`` (reason ``checked-in``) with the idempotency key
``revoke:<jti>``; the store admits that key once, so a second redemption of
the QR token or of the digits is refused on every process and after a
restart. Wrong digits count against the caller (:class:`Attempts`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from threadline.core.errors import ConfigurationError, ThreadlineError
from threadline.core.events import Actor, Event, EventCodec, Lineage, utcnow
from threadline.core.ports import ANY, EventStore
from threadline.security import (
    REVOCATIONS,
    ExpiredToken,
    RevocationList,
    RevokedToken,
    TokenIssuer,
    TokenKey,
    TokenVerifier,
    Unauthenticated,
    revocation,
)

CODE_TTL: Final = timedelta(minutes=10)
CODES: Final = "system:checkin"
ISSUED: Final = "checkin.code_issued"
AUDIENCE_SUFFIX: Final = ":checkin"
USED: Final = "checked-in"
DIGITS: Final = 6
LINEAGE: Final = Lineage("threadline.inperson", "0.1.0")


class CheckinRefused(ThreadlineError):
    """The check-in code is not one this service issued, or no longer valid (422)."""

    reason = "invalid"


class OtherStore(CheckinRefused):
    """The check-in code was issued for another store than the one checking it (422)."""

    reason = "other_store"


class ExpiredCode(CheckinRefused):
    """The check-in code was valid once but has expired."""

    reason = "expired"


class UsedCode(CheckinRefused):
    """The check-in code was already used to check in (409)."""

    reason = "used"


class TooManyAttempts(ThreadlineError):
    """Too many wrong codes from one caller; wait before trying again (429)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


@dataclass(frozen=True, slots=True)
class IssuedCode:
    """A fresh check-in code as the customer gets it."""

    token: str
    digits: str
    token_id: str
    conversation_id: str
    customer_id: str
    store_id: str | None
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class CheckinGrant:
    """What a redeemed code admits: one visit on one conversation."""

    token_id: str
    conversation_id: str
    customer_id: str
    store_id: str | None
    expires_at: datetime


def pepper(key: TokenKey) -> bytes:
    """A secret for hashing the digits, derived from the token key (never stored)."""
    return hashlib.sha256(b"threadline:checkin-digits:" + key_material(key)).digest()


def key_material(key: TokenKey) -> bytes:
    """The token key's secret bytes, for deriving the check-in secrets from."""
    if key.algorithm == "HS256":
        material = bytes(key.verifying)
    elif key.signing is not None:
        from cryptography.hazmat.primitives import serialization

        material = key.signing.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    else:
        raise ConfigurationError("check-in codes need a token key that can sign")
    return material


class Attempts:
    """Wrong-code counts per caller in a sliding window; refuses callers over the limit."""

    def __init__(
        self,
        limit: int = 5,
        window: timedelta = timedelta(minutes=10),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._failures: dict[str, deque[datetime]] = {}

    def _recent(self, who: str) -> deque[datetime]:
        failures = self._failures.setdefault(who, deque())
        cutoff = self._clock() - self.window
        while failures and failures[0] <= cutoff:
            failures.popleft()
        return failures

    def check(self, *who: str) -> None:
        """Raise TooManyAttempts if any of ``who`` has used up its wrong guesses."""
        for name in who:
            failures = self._recent(name)
            if len(failures) >= self.limit:
                wait = failures[0] + self.window - self._clock()
                raise TooManyAttempts(
                    f"too many wrong check-in codes; try again in {int(wait.total_seconds()) + 1}s",
                    int(wait.total_seconds()) + 1,
                )

    def fail(self, *who: str) -> None:
        for name in who:
            self._recent(name).append(self._clock())


class CheckinCodes:
    """Issues check-in codes and redeems each at most once, by QR token or digits."""

    def __init__(
        self,
        key: TokenKey,
        store: EventStore,
        revocations: RevocationList,
        *,
        issuer: str,
        audience: str,
        ttl: timedelta = CODE_TTL,
        attempts: Attempts | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.audience = audience + AUDIENCE_SUFFIX
        self.ttl = ttl
        self.attempts = attempts or Attempts(clock=clock)
        self._store = store
        self._revocations = revocations
        self._clock = clock
        self._codec = EventCodec()
        self._pepper = pepper(key)
        self._issuer = TokenIssuer(
            key, issuer=issuer, audience=self.audience, max_ttl=ttl, clock=clock
        )
        self._verifier = TokenVerifier(
            key,
            issuer=issuer,
            audience=self.audience,
            revocations=revocations,
            max_ttl=ttl,
            leeway=timedelta(seconds=5),
            clock=clock,
        )
        self._by_hash: dict[str, CheckinGrant] = {}
        self._seq = 0

    def _hash(self, digits: str) -> str:
        return hmac.new(self._pepper, digits.encode(), hashlib.sha256).hexdigest()

    async def catch_up(self) -> None:
        """Fold the codes issued since the last one seen (by any process)."""
        for record in await self._store.read(CODES, from_seq=self._seq + 1):
            self._seq = record.seq
            if record.type == ISSUED:
                self._note(self._codec.decode(record).payload)
        now = self._clock()
        for code_hash in [h for h, g in self._by_hash.items() if g.expires_at <= now]:
            del self._by_hash[code_hash]

    def _note(self, payload: Mapping[str, Any]) -> None:
        expires_at = payload["expires_at"]
        if isinstance(expires_at, str):
            expires_at = datetime.fromisoformat(expires_at)
        self._by_hash[payload["code_hash"]] = CheckinGrant(
            payload["token_id"],
            payload["conversation_id"],
            payload["customer_id"],
            payload.get("store_id"),
            expires_at,
        )

    async def issue(
        self, conversation_id: str, customer_id: str, store_id: str | None = None
    ) -> IssuedCode:
        """A new code for the customer's conversation, recorded on ``system:checkin``."""
        claims = {"customer": customer_id, "conversation": conversation_id}
        issued = self._issuer.issue(customer_id, ["customer"], self.ttl, claims)
        await self.catch_up()
        while True:
            digits = f"{secrets.randbelow(10**DIGITS):0{DIGITS}d}"
            if self._hash(digits) not in self._by_hash:
                break  # two live codes never share their digits
        principal = issued.principal
        payload = {
            "token_id": principal.token_id,
            "code_hash": self._hash(digits),
            "conversation_id": conversation_id,
            "customer_id": customer_id,
            "store_id": store_id,
            "expires_at": principal.expires_at,
        }
        event = Event(
            conversation_id=CODES,
            type=ISSUED,
            payload=payload,
            channel="system",
            actor=Actor("system", "checkin"),
            idempotency_key=f"checkin:{principal.token_id}",
            lineage=LINEAGE,
        )
        await self._store.append(CODES, [self._codec.encode(event)], ANY)
        await self.catch_up()
        return IssuedCode(
            issued.token,
            digits,
            principal.token_id,
            conversation_id,
            customer_id,
            store_id,
            principal.expires_at,
        )

    def check_token(self, token: str) -> CheckinGrant:
        """What a QR token admits, without using it up; raises CheckinRefused."""
        try:
            principal = self._verifier.verify(token.strip())
        except ExpiredToken:
            raise ExpiredCode("the check-in code has expired") from None
        except RevokedToken:
            raise UsedCode("the check-in code has already been used") from None
        except Unauthenticated:
            raise CheckinRefused("not a check-in code of this service") from None
        if principal.kind != "customer" or principal.conversation_id is None:
            raise CheckinRefused("not a check-in code of this service")
        assert principal.customer_id is not None
        grant = self._by_hash_for(principal.token_id)
        return CheckinGrant(
            principal.token_id,
            principal.conversation_id,
            principal.customer_id,
            grant.store_id if grant else None,
            principal.expires_at,
        )

    def _by_hash_for(self, token_id: str) -> CheckinGrant | None:
        return next((g for g in self._by_hash.values() if g.token_id == token_id), None)

    async def check_digits(self, digits: str, *who: str) -> CheckinGrant:
        """What six digits admit, without using them up.

        Raises TooManyAttempts once any of ``who`` (the caller) has
        guessed wrong too often, and CheckinRefused (counted) for wrong digits.
        """
        self.attempts.check(*who)
        digits = "".join(c for c in digits if not c.isspace())
        await self.catch_up()
        grant = self._by_hash.get(self._hash(digits)) if len(digits) == DIGITS else None
        if grant is None or not digits.isdigit():
            self.attempts.fail(*who)
            raise CheckinRefused("no such check-in code (or it has expired)")
        if grant.expires_at <= self._clock():
            raise ExpiredCode("the check-in code has expired")
        if self._revocations.is_revoked(grant.token_id):
            raise UsedCode("the check-in code has already been used")
        return grant

    async def use(self, grant: CheckinGrant, used_by: str) -> None:
        """Use the code up; raises UsedCode if anyone used it before."""
        event = revocation(
            grant.token_id, reason=USED, revoked_by=used_by, expires_at=grant.expires_at
        )
        result = await self._store.append(REVOCATIONS, [self._codec.encode(event)], ANY)
        if result.duplicate:
            raise UsedCode("the check-in code has already been used")
        self._revocations.note(event)


def qr_data_url(text: str) -> str:
    """``text`` as a QR code in a PNG data URL (pure Python, via segno)."""
    import io

    import segno

    buffer = io.BytesIO()
    segno.make_qr(text, error="m").save(buffer, kind="png", scale=6, border=4)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()

"""Single-use, short-lived tokens for a call's media stream.

A media WebSocket cannot carry a bearer header, so the signed incoming-call
webhook puts one of these into the TwiML's ``<Parameter>`` list and the
stream's ``start`` message must hand it back.

They are ordinary signed tokens of this service (same key, algorithm and
issuer) with their own audience, ``<token_audience>:voice-stream``, so the
API refuses them and the stream refuses API tokens. Each is a customer token
whose subject is the call id and whose binding claims are the caller's
customer id and conversation; it lives 60 seconds.

Single use is a revocation: redeeming a token appends ``token.revoked``
(reason ``stream-started``) to ``system:tokens`` with the idempotency key
``revoke:<jti>``. The store admits that key once, so a second redemption is
refused on every process sharing the store and after a restart, and the log
records when each stream was admitted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from threadline.core.events import EventCodec, utcnow
from threadline.core.ports import ANY, EventStore
from threadline.security.errors import InvalidClaims, Unauthenticated, WrongAudience
from threadline.security.keys import TokenKey
from threadline.security.revocation import REVOCATIONS, RevocationList, revocation
from threadline.security.tokens import TokenIssuer, TokenVerifier

STREAM_TTL: Final = timedelta(seconds=60)
#: Clock skew allowed on a stream token: the webhook and the stream hit the same service.
STREAM_LEEWAY: Final = timedelta(seconds=5)
AUDIENCE_SUFFIX: Final = ":voice-stream"
USED: Final = "stream-started"


class UsedStreamToken(Unauthenticated):
    """The stream token was already redeemed by another stream."""


class ForeignStreamToken(Unauthenticated):
    """The stream token was issued for another call or conversation."""


@dataclass(frozen=True, slots=True)
class StreamGrant:
    """What a redeemed stream token admits: one call on one conversation."""

    token_id: str
    call_id: str
    conversation_id: str
    customer_id: str
    expires_at: datetime


class StreamTokens:
    """Issues stream tokens and redeems each at most once."""

    def __init__(
        self,
        key: TokenKey,
        store: EventStore,
        revocations: RevocationList,
        *,
        issuer: str,
        audience: str,
        ttl: timedelta = STREAM_TTL,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.audience = audience + AUDIENCE_SUFFIX
        self.ttl = ttl
        self._store = store
        self._revocations = revocations
        self._codec = EventCodec()
        self._issuer = TokenIssuer(
            key, issuer=issuer, audience=self.audience, max_ttl=ttl, clock=clock
        )
        self._verifier = TokenVerifier(
            key,
            issuer=issuer,
            audience=self.audience,
            revocations=revocations,
            max_ttl=ttl,
            leeway=STREAM_LEEWAY,
            clock=clock,
        )

    def issue(self, call_id: str, conversation_id: str, customer_id: str) -> str:
        """A token that admits one stream of ``call_id`` on ``conversation_id``.

        Every token of a call has the call's token id, so once one stream used one, a
        token minted again for that call (a replayed webhook) admits nothing: one stream
        per call, whichever process answers.
        """
        claims = {"customer": customer_id, "conversation": conversation_id}
        return self._issuer.issue(call_id, ["customer"], self.ttl, claims,
                                  token_id=f"stream-{call_id}").token  # fmt: skip

    def check(self, token: str, call_id: str, conversation_id: str | None) -> StreamGrant:
        """What ``token`` admits, if it is a live stream token for this call (and
        conversation, when given); does not use it up.

        Raises an Unauthenticated subclass: expired, forged, revoked or used
        (as far as this process knows), or for another call (ForeignStreamToken).
        """
        try:
            principal = self._verifier.verify(token)
        except WrongAudience:
            raise WrongAudience("not a stream token") from None
        if principal.kind != "customer" or principal.conversation_id is None:
            raise InvalidClaims("not a stream token")
        if principal.subject != call_id:
            raise ForeignStreamToken("the stream token was issued for another call")
        if conversation_id is not None and principal.conversation_id != conversation_id:
            raise ForeignStreamToken("the stream token was issued for another conversation")
        assert principal.customer_id is not None  # a customer token always binds one
        return StreamGrant(
            principal.token_id,
            call_id,
            principal.conversation_id,
            principal.customer_id,
            principal.expires_at,
        )

    async def use(self, grant: StreamGrant) -> None:
        """Use the token up; raises UsedStreamToken if any stream used it before."""
        event = revocation(
            grant.token_id, reason=USED, revoked_by="voice-stream", expires_at=grant.expires_at
        )
        result = await self._store.append(REVOCATIONS, [self._codec.encode(event)], ANY)
        if result.duplicate:
            raise UsedStreamToken("the stream token has already been used")
        # seq stays 0: noting it must not move the list past revocations it has not read.
        self._revocations.note(event)

    async def redeem(self, token: str, call_id: str, conversation_id: str | None) -> StreamGrant:
        """:meth:`check` the token, then :meth:`use` it."""
        grant = self.check(token, call_id, conversation_id)
        await self.use(grant)
        return grant

"""Signed bearer tokens: issue them, verify them into a :class:`Principal`.

Tokens are JWTs of type ``at+jwt`` (RFC 9068). Verification pins the one
configured algorithm before anything else, so ``alg: none`` and algorithm
confusion (an HS256 token "signed" with a public key) never reach a key. It
then requires and checks ``iss``, ``aud``, ``exp``, ``iat``, ``nbf`` (with a
small leeway), ``sub``, ``jti`` and ``scope``, the scope's binding claims,
and finally the revocation list. Every refusal is a precise
:class:`~threadline.security.errors.Unauthenticated` subclass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import jwt

from threadline.core.errors import ConfigurationError, ValidationError
from threadline.core.events import new_id, utcnow
from threadline.security.errors import (
    BadSignature,
    ExpiredToken,
    ImmatureToken,
    InvalidClaims,
    MalformedToken,
    MissingToken,
    RefusedAlgorithm,
    RevokedToken,
    WrongAudience,
    WrongIssuer,
)
from threadline.security.keys import TokenKey, key_from_settings
from threadline.security.principal import (
    BINDING_CLAIMS,
    BadClaims,
    Principal,
    bindings,
    identifier,
    kind_of,
    parse_scopes,
)
from threadline.settings import Settings

if TYPE_CHECKING:
    from threadline.security.revocation import RevocationList

#: Allowed clock skew between the issuer, the verifier and the revoker.
LEEWAY: Final = timedelta(seconds=30)
DEFAULT_MAX_TTL: Final = timedelta(days=7)
TOKEN_TYPE: Final = "at+jwt"
MAX_TOKEN_CHARS: Final = 8192
REGISTERED: Final = ("iss", "aud", "sub", "exp", "nbf", "iat", "jti", "scope")
_TYPES: Final = frozenset({TOKEN_TYPE, "application/" + TOKEN_TYPE})


def _moment(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def span(duration: timedelta) -> str:
    """A duration as people write it: ``7d``, ``8h``, ``1h30m``, ``-5s``."""
    seconds = int(duration.total_seconds())
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return sign + ("".join(parts) or "0s")


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly signed token and the principal it stands for."""

    token: str
    principal: Principal


class TokenIssuer:
    """Signs least-privilege tokens: one kind of principal each, bounded lifetime."""

    def __init__(
        self,
        key: TokenKey,
        *,
        issuer: str,
        audience: str,
        max_ttl: timedelta = DEFAULT_MAX_TTL,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if not key.can_sign:
            raise ConfigurationError("this token key can only verify: configure the private key")
        self.key = key
        self.issuer = issuer
        self.audience = audience
        self.max_ttl = max_ttl
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenIssuer:
        return cls(
            key_from_settings(settings),
            issuer=settings.token_issuer,
            audience=settings.token_audience,
            max_ttl=settings.token_max_ttl,
        )

    def issue(
        self,
        subject: str,
        scopes: str | Iterable[str],
        ttl: timedelta,
        claims: Mapping[str, Any] | None = None,
        *,
        token_id: str | None = None,
    ) -> IssuedToken:
        """A token for ``subject`` with ``scopes`` and their binding ``claims``; its id is
        ``token_id`` when given (tokens that share an id are revoked, or used up, together).

        Raises ValidationError for a bad subject, unknown or mixed scopes, missing
        or foreign binding claims, or a ``ttl`` outside (0, max_ttl].
        """
        extra = dict(claims or {})
        try:
            subject = identifier(subject, "subject")
            scope_set = parse_scopes(scopes)
            kind = kind_of(scope_set)
            for name in sorted(extra.keys() - BINDING_CLAIMS):
                raise BadClaims(f"claim {name!r} cannot be set; binding claims are "
                                f"{', '.join(sorted(BINDING_CLAIMS))}")  # fmt: skip
            bound = bindings(kind, extra)
            token_id = identifier(token_id, "token_id") if token_id is not None else new_id()
        except BadClaims as exc:
            raise ValidationError(str(exc), [{"field": "token", "reason": str(exc)}]) from None
        seconds = math.ceil(ttl.total_seconds())
        if seconds <= 0 or ttl > self.max_ttl:
            reason = f"ttl must be more than 0s and at most {span(self.max_ttl)}, not {span(ttl)}"
            raise ValidationError(reason, [{"field": "ttl", "reason": reason}])
        issued_at = int(self._clock().timestamp())
        expires_at = issued_at + seconds
        payload = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": issued_at,
            "nbf": issued_at,
            "exp": expires_at,
            "jti": token_id,
            "scope": " ".join(sorted(scope_set)),
            **bound,
        }
        signing: Any = self.key.signing  # checked in __init__
        token = jwt.encode(
            payload, signing, algorithm=self.key.algorithm, headers={"typ": TOKEN_TYPE}
        )
        principal = Principal(
            subject=subject,
            kind=kind,
            scopes=scope_set,
            token_id=token_id,
            issued_at=_moment(issued_at),
            expires_at=_moment(expires_at),
            customer_id=bound.get("customer"),
            conversation_id=bound.get("conversation"),
            queues=frozenset(bound.get("queues", ())),
            store_id=bound.get("store"),
        )
        return IssuedToken(token, principal)


class TokenVerifier:
    """Turns a bearer token into a :class:`Principal`, or refuses it precisely."""

    def __init__(
        self,
        key: TokenKey,
        *,
        issuer: str,
        audience: str,
        revocations: RevocationList,
        max_ttl: timedelta = DEFAULT_MAX_TTL,
        leeway: timedelta = LEEWAY,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.key = key
        self.issuer = issuer
        self.audience = audience
        self.revocations = revocations
        self.max_ttl = max_ttl
        self.leeway = leeway
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, revocations: RevocationList) -> TokenVerifier:
        return cls(
            key_from_settings(settings),
            issuer=settings.token_issuer,
            audience=settings.token_audience,
            revocations=revocations,
            max_ttl=settings.token_max_ttl,
        )

    def verify(self, token: str) -> Principal:
        """The principal ``token`` proves; raises an Unauthenticated subclass otherwise."""
        self._check_header(token)
        claims = self._decode(token)
        self._check_times(claims)
        principal = self._principal(claims)
        if self.revocations.is_revoked(principal.token_id):
            raise RevokedToken(f"token {principal.token_id} has been revoked")
        return principal

    def _check_header(self, token: str) -> None:
        if not isinstance(token, str) or not token:
            raise MalformedToken("the token is empty")
        if len(token) > MAX_TOKEN_CHARS:
            raise MalformedToken(f"the token is longer than {MAX_TOKEN_CHARS} characters")
        if token.count(".") != 2:
            raise MalformedToken("a token has three dot-separated parts")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise MalformedToken("the token header is not base64url-encoded JSON") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or not alg or alg.lower() == "none":
            raise RefusedAlgorithm("unsigned tokens (alg none) are refused")
        if alg != self.key.algorithm:
            raise RefusedAlgorithm(
                f"algorithm {alg[:16]!r} is refused; tokens here are signed with "
                f"{self.key.algorithm}"
            )
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in _TYPES:
            raise MalformedToken(f"not an access token: the header's typ must be {TOKEN_TYPE}")

    def _decode(self, token: str) -> dict[str, Any]:
        options: Any = {
            "require": list(REGISTERED),
            # Times are checked against our own clock in _check_times.
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            "strict_aud": False,
            "enforce_minimum_key_length": True,
        }
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.key.verifying,
                algorithms=[self.key.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options=options,
            )
        except jwt.InvalidSignatureError:
            raise BadSignature("the token's signature does not match its contents") from None
        except jwt.InvalidAlgorithmError:
            raise RefusedAlgorithm(f"only {self.key.algorithm} tokens are accepted") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidClaims(f"the token has no {exc.claim!r} claim") from None
        except jwt.InvalidIssuerError:
            raise WrongIssuer(f"the token was not issued by {self.issuer!r}") from None
        except jwt.InvalidAudienceError:
            raise WrongAudience(f"the token is not meant for {self.audience!r}") from None
        except jwt.InvalidKeyError as exc:
            raise ConfigurationError(f"the token key is unusable: {exc}") from None
        except jwt.DecodeError as exc:
            raise MalformedToken(f"the token is malformed: {exc}") from None
        except jwt.PyJWTError as exc:
            raise InvalidClaims(f"the token's claims are invalid: {exc}") from None
        return claims

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        expires, not_before, issued = (_numeric(claims, n) for n in ("exp", "nbf", "iat"))
        now = self._clock().timestamp()
        leeway = self.leeway.total_seconds()
        if expires <= now - leeway:
            raise ExpiredToken(f"the token expired at {_moment(expires).isoformat()}")
        if not_before > now + leeway:
            raise ImmatureToken(f"the token is not valid before {_moment(not_before).isoformat()}")
        if issued > now + leeway:
            raise ImmatureToken(f"the token claims to be issued at {_moment(issued).isoformat()}")
        if expires - issued > (self.max_ttl + self.leeway).total_seconds():
            raise InvalidClaims(f"the token lives longer than the maximum of {span(self.max_ttl)}")

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        for name in sorted(claims.keys() - set(REGISTERED) - BINDING_CLAIMS):
            raise InvalidClaims(f"the token has an unexpected claim {name[:40]!r}")
        try:
            subject = identifier(claims["sub"], "sub")
            token_id = identifier(claims["jti"], "jti")
            scope = claims["scope"]
            if not isinstance(scope, str):
                raise BadClaims("scope must be a space-separated string")
            scopes = parse_scopes(scope)
            kind = kind_of(scopes)
            bound = bindings(kind, claims)
        except BadClaims as exc:
            raise InvalidClaims(f"the token's claims are invalid: {exc}") from None
        return Principal(
            subject=subject,
            kind=kind,
            scopes=scopes,
            token_id=token_id,
            issued_at=_moment(claims["iat"]),
            expires_at=_moment(claims["exp"]),
            customer_id=bound.get("customer"),
            conversation_id=bound.get("conversation"),
            queues=frozenset(bound.get("queues", ())),
            store_id=bound.get("store"),
        )


def _numeric(claims: Mapping[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidClaims(f"the token's {name} claim must be a number of seconds")
    # Far outside what datetime can hold: refuse rather than overflow later.
    if not 0 <= value < 253402300800:
        raise InvalidClaims(f"the token's {name} claim is out of range")
    return float(value)


def bearer_token(authorization: str | None) -> str:
    """The token in an ``Authorization: Bearer <token>`` header value."""
    if not authorization or not authorization.strip():
        raise MissingToken("a bearer token is required")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise MalformedToken("the Authorization header must read 'Bearer <token>'")
    return token.strip()

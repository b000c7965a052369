"""Why a request was refused: not authenticated (401) or not allowed (403).

Each refusal of a bearer token has its own class with a stable ``code``, so
callers and problem documents can tell an expired token from a forged one
without parsing messages. ``headers`` carries the RFC 6750 challenge the HTTP
layer should send back.
"""

from __future__ import annotations

from typing import Final

from threadline.core.errors import ThreadlineError

REALM: Final = "threadline"


def _quoted(text: str) -> str:
    # RFC 6750 error_description: printable ASCII without '"' and '\'.
    return "".join(c for c in text if 0x20 <= ord(c) <= 0x7E and c not in '"\\')


class Unauthenticated(ThreadlineError):
    """The caller did not prove who it is: no token, or a token that is refused (HTTP 401)."""

    code: str = "invalid_token"
    status: int = 401

    @property
    def headers(self) -> dict[str, str]:
        challenge = (
            f'Bearer realm="{REALM}", error="invalid_token", '
            f'error_description="{_quoted(str(self))}"'
        )
        return {"WWW-Authenticate": challenge}


class MissingToken(Unauthenticated):
    """The request carries no bearer token at all."""

    code = "missing_token"

    @property
    def headers(self) -> dict[str, str]:
        # RFC 6750 §3.1: no error code when the request had no credentials.
        return {"WWW-Authenticate": f'Bearer realm="{REALM}"'}


class MalformedToken(Unauthenticated):
    """The token is not a well-formed signed JWT of the expected type."""

    code = "malformed"


class RefusedAlgorithm(Unauthenticated):
    """The token names an algorithm other than the one configured (including ``none``)."""

    code = "algorithm"


class BadSignature(Unauthenticated):
    """The signature does not match: forged, tampered with, or signed with another key."""

    code = "signature"


class ExpiredToken(Unauthenticated):
    """The token's ``exp`` has passed."""

    code = "expired"


class ImmatureToken(Unauthenticated):
    """The token's ``nbf`` or ``iat`` lies in the future."""

    code = "not_yet_valid"


class WrongIssuer(Unauthenticated):
    """The token was issued by someone this deployment does not trust."""

    code = "issuer"


class WrongAudience(Unauthenticated):
    """The token was issued for another service."""

    code = "audience"


class InvalidClaims(Unauthenticated):
    """A required claim is missing or has the wrong shape (sub, jti, scope, bindings…)."""

    code = "claims"


class RevokedToken(Unauthenticated):
    """The token was revoked before it expired."""

    code = "revoked"


class Forbidden(ThreadlineError):
    """The caller is known but may not do this (HTTP 403); ``reason`` says why."""

    code: str = "insufficient_scope"
    status: int = 403

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def headers(self) -> dict[str, str]:
        challenge = (
            f'Bearer realm="{REALM}", error="insufficient_scope", '
            f'error_description="{_quoted(self.reason)}"'
        )
        return {"WWW-Authenticate": challenge}


#: (class, HTTP status, problem slug, title) for the API's problem registry;
#: more specific classes first.
PROBLEMS: Final[tuple[tuple[type[ThreadlineError], int, str, str], ...]] = (
    (MissingToken, 401, "missing-token", "A bearer token is required"),
    (MalformedToken, 401, "malformed-token", "The token is malformed"),
    (RefusedAlgorithm, 401, "token-algorithm", "The token's algorithm is refused"),
    (BadSignature, 401, "token-signature", "The token's signature is invalid"),
    (ExpiredToken, 401, "token-expired", "The token has expired"),
    (ImmatureToken, 401, "token-not-yet-valid", "The token is not valid yet"),
    (WrongIssuer, 401, "token-issuer", "The token's issuer is not trusted"),
    (WrongAudience, 401, "token-audience", "The token is for another audience"),
    (InvalidClaims, 401, "token-claims", "The token's claims are invalid"),
    (RevokedToken, 401, "token-revoked", "The token has been revoked"),
    (Unauthenticated, 401, "unauthenticated", "Not authenticated"),
    (Forbidden, 403, "forbidden", "Not allowed"),
)

"""Least-privilege bearer tokens and authorization.

Issue and verify signed tokens (:mod:`.tokens`), revoke them through the log
(:mod:`.revocation`), and decide what a verified :class:`Principal` may do
(:mod:`.authz`).
"""

from threadline.security.authz import (
    allows,
    can_append,
    can_manage_tokens,
    can_read_conversation,
    can_read_queue,
)
from threadline.security.errors import (
    PROBLEMS,
    BadSignature,
    ExpiredToken,
    Forbidden,
    ImmatureToken,
    InvalidClaims,
    MalformedToken,
    MissingToken,
    RefusedAlgorithm,
    RevokedToken,
    Unauthenticated,
    WrongAudience,
    WrongIssuer,
)
from threadline.security.keys import TokenKey, key_from_settings, load_or_create_secret
from threadline.security.principal import SCOPES, Kind, Principal
from threadline.security.revocation import (
    REVOCATIONS,
    RevocationList,
    latest_expiry,
    revocation,
    revoke,
)
from threadline.security.tokens import (
    LEEWAY,
    IssuedToken,
    TokenIssuer,
    TokenVerifier,
    bearer_token,
)

__all__ = [
    "LEEWAY",
    "PROBLEMS",
    "REVOCATIONS",
    "SCOPES",
    "BadSignature",
    "ExpiredToken",
    "Forbidden",
    "ImmatureToken",
    "InvalidClaims",
    "IssuedToken",
    "Kind",
    "MalformedToken",
    "MissingToken",
    "Principal",
    "RefusedAlgorithm",
    "RevocationList",
    "RevokedToken",
    "TokenIssuer",
    "TokenKey",
    "TokenVerifier",
    "Unauthenticated",
    "WrongAudience",
    "WrongIssuer",
    "allows",
    "bearer_token",
    "can_append",
    "can_manage_tokens",
    "can_read_conversation",
    "can_read_queue",
    "key_from_settings",
    "latest_expiry",
    "load_or_create_secret",
    "revocation",
    "revoke",
]

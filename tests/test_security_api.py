"""The public API of ``threadline.security`` is what it exports, no more and no less."""

from __future__ import annotations

import threadline.security as security

PINNED = {
    "LEEWAY", "PROBLEMS", "REVOCATIONS", "SCOPES", "BadSignature", "ExpiredToken", "Forbidden",
    "ImmatureToken", "InvalidClaims", "IssuedToken", "Kind", "MalformedToken", "MissingToken",
    "Principal", "RefusedAlgorithm", "RevocationList", "RevokedToken", "TokenIssuer", "TokenKey",
    "TokenVerifier", "Unauthenticated", "WrongAudience", "WrongIssuer", "allows", "bearer_token",
    "can_append", "can_manage_tokens", "can_read_conversation", "can_read_queue",
    "key_from_settings", "latest_expiry", "load_or_create_secret", "revocation", "revoke",
}  # fmt: skip


def test_the_exports_are_pinned() -> None:
    assert set(security.__all__) == PINNED


def test_every_export_resolves() -> None:
    for name in security.__all__:
        assert getattr(security, name) is not None, name


def test_every_refusal_class_has_a_problem_mapping() -> None:
    refusals = {
        getattr(security, n)
        for n in PINNED
        if isinstance(getattr(security, n), type)
        and issubclass(getattr(security, n), security.Unauthenticated | security.Forbidden)
    }
    assert refusals == {cls for cls, *_ in security.PROBLEMS}

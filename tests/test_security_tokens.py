"""Bearer tokens: issuing, verifying, and refusing every kind of bad token precisely.

Bad tokens are forged with PyJWT directly (or by hand, where PyJWT rightly
refuses to make them), as an attacker would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import timedelta
from typing import Any

import jwt
import pytest

from threadline.core.errors import ConfigurationError, ThreadlineError, ValidationError
from threadline.core.events import utcnow
from threadline.security import (
    PROBLEMS,
    BadSignature,
    ExpiredToken,
    Forbidden,
    ImmatureToken,
    InvalidClaims,
    MalformedToken,
    MissingToken,
    RefusedAlgorithm,
    RevocationList,
    RevokedToken,
    TokenIssuer,
    TokenKey,
    TokenVerifier,
    Unauthenticated,
    WrongAudience,
    WrongIssuer,
    bearer_token,
    revocation,
)
from threadline.security.tokens import REGISTERED, span

SECRET = "kq3J8v0pXh2cN6yT1wLr9sZ4bF7eA5dGmU0iKoPqRs"
ISS = "threadline"
AUD = "threadline-api"
KEY = TokenKey.hs256(SECRET)


def make_issuer(key: TokenKey = KEY, **kw: Any) -> TokenIssuer:
    return TokenIssuer(key, issuer=ISS, audience=AUD, **kw)


def make_verifier(key: TokenKey = KEY, revocations: RevocationList | None = None) -> TokenVerifier:
    return TokenVerifier(key, issuer=ISS, audience=AUD, revocations=revocations or RevocationList())


def claims(**changes: Any) -> dict[str, Any]:
    """A complete, valid claim set for an agent; ``name=None`` removes a claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISS, "aud": AUD, "sub": "agent-ana", "iat": now, "nbf": now, "exp": now + 600,
        "jti": "jti-1", "scope": "agent", "queues": ["orders"],
    }  # fmt: skip
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def forge(payload: dict[str, Any], *, key: Any = SECRET, alg: str = "HS256", **header: Any) -> str:
    return jwt.encode(payload, key, algorithm=alg, headers={"typ": "at+jwt", **header})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(message: bytes) -> bytes:
    return hmac.new(SECRET.encode(), message, hashlib.sha256).digest()


def hs512(message: bytes) -> bytes:
    return hmac.new(SECRET.encode(), message, hashlib.sha512).digest()


def signed(header: str, payload: bytes) -> str:
    """A token with a valid HS256 signature over an arbitrary payload segment."""
    signing_input = f"{b64(header.encode())}.{b64(payload)}"
    return f"{signing_input}.{b64(hs256(signing_input.encode()))}"


def by_hand(header: dict[str, Any], payload: Any, sign: Any = None) -> str:
    """A compact JWS built without PyJWT; ``sign(signing_input) -> bytes``."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = sign(signing_input.encode()) if sign else b""
    return f"{signing_input}.{b64(signature)}"


# -- the happy path ----------------------------------------------------------------------


def test_an_issued_token_verifies_into_its_principal() -> None:
    issued = make_issuer().issue(
        "agent-ana", ["agent"], timedelta(hours=8), {"queues": ["orders", "billing"]}
    )
    principal = make_verifier().verify(issued.token)
    assert principal == issued.principal
    assert principal.kind == "agent"
    assert principal.subject == "agent-ana"
    assert principal.queues == {"orders", "billing"}
    assert principal.expires_at - principal.issued_at == timedelta(hours=8)


def test_a_token_is_an_hs256_access_jwt_with_every_required_claim() -> None:
    token = make_issuer().issue("sup-sam", "supervisor", timedelta(minutes=5)).token
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "at+jwt"}
    body = jwt.decode(token, options={"verify_signature": False})
    assert set(body) == set(REGISTERED)
    assert body["nbf"] == body["iat"] and body["exp"] - body["iat"] == 300


def test_each_token_gets_its_own_id() -> None:
    issuer = make_issuer()
    ids = {issuer.issue("admin-1", "admin", timedelta(minutes=1)).principal.token_id for _ in "ab"}
    assert len(ids) == 2


def test_a_customer_token_is_bound_to_the_customer_and_optionally_a_conversation() -> None:
    issued = make_issuer().issue(
        "cus-maya", "customer", timedelta(hours=1), {"customer": "cus-maya", "conversation": "c-1"}
    )
    principal = make_verifier().verify(issued.token)
    assert (principal.customer_id, principal.conversation_id) == ("cus-maya", "c-1")


def test_an_adapter_token_may_cover_several_channels() -> None:
    issued = make_issuer().issue("gateway", "adapter:chat adapter:voice", timedelta(hours=1))
    assert make_verifier().verify(issued.token).channels == {"chat", "voice"}


def test_a_token_whose_audience_list_includes_ours_is_accepted() -> None:
    token = forge(claims(aud=["billing-api", AUD]))
    assert make_verifier().verify(token).subject == "agent-ana"


def test_a_token_a_little_past_its_expiry_is_within_the_leeway() -> None:
    now = int(time.time())
    assert make_verifier().verify(forge(claims(iat=now - 600, nbf=now - 600, exp=now - 10)))


# -- algorithms ----------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_an_unsigned_token_is_refused(alg: str) -> None:
    token = by_hand({"alg": alg, "typ": "at+jwt"}, claims())
    with pytest.raises(RefusedAlgorithm, match="alg none"):
        make_verifier().verify(token)


def test_a_token_without_an_algorithm_is_refused() -> None:
    with pytest.raises(RefusedAlgorithm):
        make_verifier().verify(by_hand({"typ": "at+jwt"}, claims(), lambda m: b"x" * 32))


def test_another_hmac_algorithm_with_the_right_secret_is_refused() -> None:
    with pytest.raises(
        RefusedAlgorithm, match="'HS512' is refused; tokens here are signed with HS256"
    ):
        make_verifier().verify(by_hand({"alg": "HS512", "typ": "at+jwt"}, claims(), hs512))


@pytest.mark.parametrize("alg", ["RS256", "EdDSA", "ES256", "PS256"])
def test_an_asymmetric_algorithm_is_refused_when_hs256_is_configured(alg: str) -> None:
    token = by_hand({"alg": alg, "typ": "at+jwt"}, claims(), lambda m: b"\x01" * 64)
    with pytest.raises(RefusedAlgorithm, match=f"'{alg}' is refused"):
        make_verifier().verify(token)


def test_a_token_signed_with_another_secret_has_a_bad_signature() -> None:
    with pytest.raises(BadSignature, match="signature does not match"):
        make_verifier().verify(forge(claims(), key="another-secret-of-at-least-32-bytes!!"))


def test_a_tampered_payload_has_a_bad_signature() -> None:
    header, _, signature = forge(claims()).split(".")
    escalated = b64(json.dumps(claims(scope="admin", queues=None)).encode())
    with pytest.raises(BadSignature):
        make_verifier().verify(f"{header}.{escalated}.{signature}")


# -- asymmetric keys and algorithm confusion ----------------------------------------------


def pem_pair(kind: str) -> tuple[bytes, bytes]:
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    private: Any = (
        ed25519.Ed25519PrivateKey.generate()
        if kind == "EdDSA"
        else ec.generate_private_key(ec.SECP256R1())
    )
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_an_asymmetric_key_signs_and_its_public_half_verifies(alg: str) -> None:
    private_pem, public_pem = pem_pair(alg)
    issued = make_issuer(TokenKey.from_pem(private_pem)).issue(
        "sup-sam", "supervisor", timedelta(hours=1)
    )
    assert jwt.get_unverified_header(issued.token)["alg"] == alg
    public = TokenKey.from_pem(public_pem)
    assert not public.can_sign
    assert make_verifier(public).verify(issued.token).subject == "sup-sam"


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_an_hs256_token_signed_with_the_public_key_as_secret_is_refused(alg: str) -> None:
    _, public_pem = pem_pair(alg)
    # The classic confusion attack: HMAC over the token, keyed with the (public) PEM.
    token = by_hand(
        {"alg": "HS256", "typ": "at+jwt"},
        claims(scope="admin", queues=None),
        lambda m: hmac.new(public_pem, m, hashlib.sha256).digest(),
    )
    with pytest.raises(
        RefusedAlgorithm, match=f"'HS256' is refused; tokens here are signed with {alg}"
    ):
        make_verifier(TokenKey.from_pem(public_pem)).verify(token)


def test_a_token_signed_by_another_eddsa_key_has_a_bad_signature() -> None:
    mine, theirs = pem_pair("EdDSA"), pem_pair("EdDSA")
    token = (
        make_issuer(TokenKey.from_pem(theirs[0])).issue("x", "admin", timedelta(minutes=5)).token
    )
    with pytest.raises(BadSignature):
        make_verifier(TokenKey.from_pem(mine[1])).verify(token)


def test_a_public_key_cannot_issue_tokens() -> None:
    _, public_pem = pem_pair("EdDSA")
    with pytest.raises(ConfigurationError, match="can only verify"):
        make_issuer(TokenKey.from_pem(public_pem))


def test_an_rsa_key_is_not_a_supported_token_key() -> None:
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ConfigurationError, match="Ed25519"):
        TokenKey.from_pem(pem)


def test_a_file_that_is_no_pem_key_is_refused() -> None:
    pytest.importorskip("cryptography")
    with pytest.raises(ConfigurationError, match="not a PEM"):
        TokenKey.from_pem(b"-----BEGIN NONSENSE-----\nAAAA\n-----END NONSENSE-----\n")


def test_an_hs256_secret_shorter_than_32_bytes_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="at least 32"):
        TokenKey.hs256("too-short")


def test_a_key_never_shows_its_material() -> None:
    assert SECRET not in repr(KEY) and SECRET not in str(KEY)


# -- issuer, audience and times ------------------------------------------------------------


def test_a_token_from_another_issuer_is_refused() -> None:
    with pytest.raises(WrongIssuer, match="not issued by 'threadline'"):
        make_verifier().verify(forge(claims(iss="https://evil.example")))


def test_a_token_for_another_audience_is_refused() -> None:
    with pytest.raises(WrongAudience, match="not meant for 'threadline-api'"):
        make_verifier().verify(forge(claims(aud="billing-api")))


def test_an_expired_token_is_refused() -> None:
    now = int(time.time())
    token = forge(claims(iat=now - 3600, nbf=now - 3600, exp=now - 120))
    with pytest.raises(ExpiredToken, match="expired at"):
        make_verifier().verify(token)


def test_a_token_issued_by_a_clock_in_the_past_expires_on_time() -> None:
    past = make_issuer(clock=lambda: utcnow() - timedelta(hours=2))
    with pytest.raises(ExpiredToken):
        make_verifier().verify(past.issue("a", "admin", timedelta(hours=1)).token)


def test_a_token_not_valid_yet_is_refused() -> None:
    with pytest.raises(ImmatureToken, match="not valid before"):
        make_verifier().verify(forge(claims(nbf=int(time.time()) + 300)))


def test_a_token_issued_in_the_future_is_refused() -> None:
    now = int(time.time())
    with pytest.raises(ImmatureToken, match="issued at"):
        make_verifier().verify(forge(claims(iat=now + 300, exp=now + 900)))


def test_a_token_living_longer_than_the_maximum_is_refused() -> None:
    now = int(time.time())
    with pytest.raises(InvalidClaims, match="maximum of 7d"):
        make_verifier().verify(forge(claims(exp=now + 8 * 86400)))


# -- claims -----------------------------------------------------------------------------------


@pytest.mark.parametrize("claim", REGISTERED)
def test_a_token_missing_a_required_claim_is_refused(claim: str) -> None:
    with pytest.raises(InvalidClaims, match=f"no '{claim}' claim"):
        make_verifier().verify(forge(claims(**{claim: None})))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"exp": "9999999999"}, "exp claim must be a number"),
        ({"iat": True}, "iat claim must be a number"),
        ({"nbf": 1e300}, "nbf claim is out of range"),
        ({"sub": 42}, "Subject must be a string"),
        ({"sub": "agent ana"}, "sub must be"),
        ({"jti": ""}, "jti must be"),
        ({"scope": ["agent"]}, "space-separated string"),
        ({"scope": "agent root"}, "unknown scope 'root'"),
        ({"scope": "agent admin"}, "mix kinds"),
        ({"scope": "customer", "queues": None}, "needs a 'customer' claim"),
        ({"customer": "cus-maya"}, "agent token cannot carry a 'customer' claim"),
        ({"queues": "orders"}, "queues must be a list"),
        ({"queues": None}, "needs a 'queues' claim"),
        ({"role": "admin"}, "unexpected claim 'role'"),
    ],
)
def test_a_token_with_invalid_claims_is_refused(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidClaims, match=reason):
        make_verifier().verify(forge(claims(**changes)))


HS256_HEADER = '{"alg":"HS256","typ":"at+jwt"}'
GARBAGE = {
    "empty": "",
    "word": "garbage",
    "two-parts": "a.b",
    "four-parts": "a.b.c.d",
    "bad-base64": "!!!.e30.",
    "header-array": b64(b"[1]") + ".e30.",
    "payload-not-json": signed(HS256_HEADER, b"not json"),
    "payload-array": signed(HS256_HEADER, b"[1, 2]"),
    "huge": "x" * 9000,
}


@pytest.mark.parametrize("token", list(GARBAGE.values()), ids=list(GARBAGE))
def test_garbage_is_a_malformed_token(token: str) -> None:
    with pytest.raises(MalformedToken):
        make_verifier().verify(token)


@pytest.mark.parametrize("typ", [None, "JWT", "id_token+jwt"])
def test_a_token_that_is_not_an_access_token_is_refused(typ: str | None) -> None:
    header = {"alg": "HS256"} if typ is None else {"alg": "HS256", "typ": typ}
    token = by_hand(header, claims(), hs256)
    with pytest.raises(MalformedToken, match="typ must be at\\+jwt"):
        make_verifier().verify(token)


def test_a_revoked_token_is_refused() -> None:
    issued = make_issuer().issue("a", "admin", timedelta(minutes=5))
    revocations = RevocationList()
    jti = issued.principal.token_id
    event = revocation(
        jti, reason="leaked", revoked_by="sup-sam", expires_at=issued.principal.expires_at
    )
    revocations.note(event)
    with pytest.raises(RevokedToken, match=f"token {jti} has been revoked"):
        make_verifier(revocations=revocations).verify(issued.token)


# -- issuing refuses bad requests ----------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "scopes", "ttl", "extra", "reason"),
    [
        ("a", "root", timedelta(hours=1), None, "unknown scope"),
        ("a", "", timedelta(hours=1), None, "no scope"),
        ("a", ["agent", "admin"], timedelta(hours=1), {"queues": []}, "mix kinds"),
        ("a", "customer", timedelta(hours=1), None, "needs a 'customer' claim"),
        ("a", "admin", timedelta(hours=1), {"queues": ["orders"]}, "cannot carry a 'queues'"),
        ("a", "admin", timedelta(hours=1), {"exp": 1}, "claim 'exp' cannot be set"),
        ("a b", "admin", timedelta(hours=1), None, "subject must be"),
        ("a", "admin", timedelta(0), None, "ttl must be more than 0s and at most 7d, not 0s"),
        ("a", "admin", timedelta(days=8), None, "not 8d"),
    ],
)
def test_issuing_refuses_a_bad_request(
    subject: str, scopes: Any, ttl: timedelta, extra: Any, reason: str
) -> None:
    with pytest.raises(ValidationError, match=reason):
        make_issuer().issue(subject, scopes, ttl, extra)


def test_durations_read_as_people_write_them() -> None:
    assert [span(timedelta(seconds=s)) for s in (0, 59, 5400, 90061, -5)] == [
        "0s", "59s", "1h30m", "1d1h1m1s", "-5s",
    ]  # fmt: skip


# -- the Authorization header and what errors tell the HTTP layer ---------------------------


def test_the_bearer_token_is_read_from_the_authorization_header() -> None:
    assert bearer_token("Bearer abc.def.ghi") == "abc.def.ghi"
    assert bearer_token("bearer  abc.def.ghi ") == "abc.def.ghi"


@pytest.mark.parametrize(
    ("header", "error"),
    [(None, MissingToken), ("", MissingToken), ("Basic dXNlcjpwdw==", MalformedToken),
     ("Bearer", MalformedToken)],
)  # fmt: skip
def test_a_missing_or_foreign_authorization_header_is_refused(header: Any, error: type) -> None:
    with pytest.raises(error):
        bearer_token(header)


def test_refusals_carry_the_rfc_6750_challenge() -> None:
    assert MissingToken("x").headers == {"WWW-Authenticate": 'Bearer realm="threadline"'}
    expired = ExpiredToken('the token "expired"').headers["WWW-Authenticate"]
    assert 'error="invalid_token"' in expired and '"expired"' not in expired
    assert 'error="insufficient_scope"' in Forbidden("nope").headers["WWW-Authenticate"]


def test_every_refusal_maps_to_401_or_403_and_none_is_retryable() -> None:
    for cls, status, slug, _title in PROBLEMS:
        assert issubclass(cls, ThreadlineError) and not cls.retryable, slug
        assert status == (403 if issubclass(cls, Forbidden) else 401), slug
        assert issubclass(cls, Unauthenticated | Forbidden)
    assert len({slug for _, _, slug, _ in PROBLEMS}) == len(PROBLEMS)

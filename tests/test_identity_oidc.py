"""ID tokens checked against a JWKS served on loopback, with keys made in the test."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from threadline.identity.oidc import (
    IdTokenAlgorithm,
    IdTokenAudience,
    IdTokenExpired,
    IdTokenIssuer,
    IdTokenNonce,
    IdTokenSignature,
    OidcVerifier,
)

ISSUER = "https://login.northwind.example"
AUDIENCE = "northwind-chat"
NONCE = "n-0S6_WzA2Mj"


class IdentityProvider:
    """An RSA and an EC signing key and a JWKS server for them on 127.0.0.1."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        keys = [
            {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa.public_key())),
             "kid": "rsa-1", "use": "sig", "alg": "RS256"},
            {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.ec.public_key())),
             "kid": "ec-1", "use": "sig", "alg": "ES256"},
        ]  # fmt: skip
        body = json.dumps({"keys": keys}).encode()
        self.fetches = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-42", "iat": now,
                  "exp": now + 300, "nonce": NONCE, "email": "maya.chen@example.com",
                  "email_verified": True}  # fmt: skip
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, alg: str = "RS256", kid: str = "rsa-1", **overrides: Any) -> str:
        key = self.rsa if alg == "RS256" else self.ec
        return jwt.encode(self.claims(**overrides), key, algorithm=alg, headers={"kid": kid})

    def public_pem(self) -> bytes:
        return self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    yield provider
    provider.close()


@pytest.fixture
def verifier(idp: IdentityProvider) -> OidcVerifier:
    return OidcVerifier(ISSUER, AUDIENCE, idp.url, leeway=0)


def _unsigned(claims: dict[str, Any], header: dict[str, Any]) -> str:
    def b64(data: dict[str, Any]) -> str:
        return jwt.utils.base64url_encode(json.dumps(data).encode()).decode()

    return f"{b64(header)}.{b64(claims)}."


async def test_a_valid_rs256_token_gives_its_claims(idp, verifier) -> None:
    claims = await verifier.verify(idp.token(), NONCE)
    assert claims["sub"] == "user-42" and claims["iss"] == ISSUER


async def test_a_valid_es256_token_gives_its_claims(idp, verifier) -> None:
    claims = await verifier.verify(idp.token("ES256", "ec-1"), NONCE)
    assert claims["sub"] == "user-42"


async def test_keys_are_cached_between_tokens(idp, verifier) -> None:
    before = idp.fetches
    await verifier.verify(idp.token(), NONCE)
    await verifier.verify(idp.token("ES256", "ec-1"), NONCE)
    assert idp.fetches == before + 1


async def test_a_wrong_issuer_is_refused(idp, verifier) -> None:
    with pytest.raises(IdTokenIssuer):
        await verifier.verify(idp.token(iss="https://evil.example"), NONCE)


async def test_a_wrong_audience_is_refused(idp, verifier) -> None:
    with pytest.raises(IdTokenAudience):
        await verifier.verify(idp.token(aud="someone-else"), NONCE)


async def test_an_expired_token_is_refused(idp, verifier) -> None:
    past = int(time.time()) - 600
    with pytest.raises(IdTokenExpired):
        await verifier.verify(idp.token(iat=past - 300, exp=past), NONCE)


async def test_a_bad_nonce_is_refused(idp, verifier) -> None:
    with pytest.raises(IdTokenNonce):
        await verifier.verify(idp.token(nonce="another-session"), NONCE)
    with pytest.raises(IdTokenNonce):
        await verifier.verify(idp.token(nonce=None), NONCE)


async def test_alg_none_is_refused(idp, verifier) -> None:
    token = _unsigned(idp.claims(), {"alg": "none", "typ": "JWT", "kid": "rsa-1"})
    with pytest.raises(IdTokenAlgorithm):
        await verifier.verify(token, NONCE)


async def test_hs256_signed_with_the_rsa_public_key_is_refused(idp, verifier) -> None:
    # HS/RS confusion: the attacker signs with the public key as an HMAC secret.
    header = {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}
    signing = _unsigned(idp.claims(), header)[:-1].encode()
    import hashlib
    import hmac

    mac = hmac.new(idp.public_pem(), signing, hashlib.sha256).digest()
    token = signing.decode() + "." + jwt.utils.base64url_encode(mac).decode()
    with pytest.raises(IdTokenAlgorithm):
        await verifier.verify(token, NONCE)


async def test_an_rs256_header_on_an_ec_key_is_refused(idp, verifier) -> None:
    token = jwt.encode(idp.claims(), idp.rsa, algorithm="RS256", headers={"kid": "ec-1"})
    with pytest.raises(IdTokenAlgorithm):
        await verifier.verify(token, NONCE)


async def test_a_token_signed_by_another_key_is_refused(idp, verifier) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(idp.claims(), stranger, algorithm="RS256", headers={"kid": "rsa-1"})
    with pytest.raises(IdTokenSignature):
        await verifier.verify(token, NONCE)

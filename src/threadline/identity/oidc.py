"""Verifying OpenID Connect ID tokens (or JWT access tokens) from one trusted issuer.

The signing keys come from the issuer's JWKS, fetched with httpx (async) and
cached by ``kid``; an unknown ``kid`` refetches at most every
:data:`REFETCH_SECONDS`. Only RS256 and ES256 are accepted, each only with a
key of its own type, so ``alg: none`` and HS256 signed with the public key
(HS/RS confusion) are refused before any signature check. ``iss``, ``aud``,
``exp``, ``iat`` and ``sub`` are required; ``nonce`` must match when given.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Any, Final

import httpx
import jwt

from threadline.core.errors import ThreadlineError

ALGORITHMS: Final = {"RS256": "RSA", "ES256": "EC"}
REFETCH_SECONDS: Final = 10.0
CACHE_SECONDS: Final = 300.0


class IdTokenRefused(ThreadlineError):
    """An identity provider's token that does not prove who the customer is."""


class IdTokenMalformed(IdTokenRefused):
    """Not a well-formed signed JWT."""


class IdTokenAlgorithm(IdTokenRefused):
    """An algorithm other than RS256 or ES256 (``none``, HS256…), or a key of another type."""


class IdTokenSignature(IdTokenRefused):
    """The signature does not verify with the issuer's key, or the key is unknown."""


class IdTokenExpired(IdTokenRefused):
    """``exp`` has passed."""


class IdTokenIssuer(IdTokenRefused):
    """Issued by someone other than the configured issuer."""


class IdTokenAudience(IdTokenRefused):
    """Issued for another client."""


class IdTokenNonce(IdTokenRefused):
    """The ``nonce`` is missing or belongs to another session."""


class IdTokenClaims(IdTokenRefused):
    """A required claim is missing or malformed, or the token is not valid yet."""


class IdentityProviderUnavailable(ThreadlineError):
    """The JWKS could not be fetched; try again."""

    retryable = True


#: (class, HTTP status, problem slug, title) for the API's problem registry.
PROBLEMS: Final[tuple[tuple[type[ThreadlineError], int, str, str], ...]] = (
    (IdTokenMalformed, 401, "id-token-malformed", "The ID token is malformed"),
    (IdTokenAlgorithm, 401, "id-token-algorithm", "The ID token's algorithm is refused"),
    (IdTokenSignature, 401, "id-token-signature", "The ID token's signature is invalid"),
    (IdTokenExpired, 401, "id-token-expired", "The ID token has expired"),
    (IdTokenIssuer, 401, "id-token-issuer", "The ID token's issuer is not trusted"),
    (IdTokenAudience, 401, "id-token-audience", "The ID token is for another audience"),
    (IdTokenNonce, 401, "id-token-nonce", "The ID token's nonce does not match"),
    (IdTokenClaims, 401, "id-token-claims", "The ID token's claims are invalid"),
    (IdTokenRefused, 401, "id-token", "The ID token is refused"),
    (IdentityProviderUnavailable, 503, "idp-unavailable", "The identity provider is unreachable"),
)


class OidcVerifier:
    """Checks tokens of ``issuer`` for ``audience`` against the keys at ``jwks_url``."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        jwks_url: str,
        *,
        leeway: float = 30.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = jwks_url
        self.leeway = leeway
        self._client = client
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched = 0.0
        self._lock = asyncio.Lock()

    async def verify(self, token: str, nonce: str | None = None) -> dict[str, Any]:
        """The token's claims, or an :class:`IdTokenRefused` saying why not."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise IdTokenMalformed("the ID token is not a signed JWT") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise IdTokenAlgorithm(f"algorithm {alg!r} is refused; accepted: RS256, ES256")
        key = await self._key(header.get("kid"))
        if key.key_type != ALGORITHMS[alg]:
            raise IdTokenAlgorithm(f"{alg} needs an {ALGORITHMS[alg]} key, not {key.key_type}")
        claims = await asyncio.to_thread(self._decode, token, key, alg)
        if nonce is not None:
            given = claims.get("nonce")
            if not isinstance(given, str) or not hmac.compare_digest(given, nonce):
                raise IdTokenNonce("the ID token's nonce is not this session's")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise IdTokenClaims("sub must be a non-empty string")
        return claims

    def _decode(self, token: str, key: jwt.PyJWK, alg: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )  # fmt: skip
        except jwt.ExpiredSignatureError:
            raise IdTokenExpired("the ID token has expired") from None
        except jwt.InvalidIssuerError:
            raise IdTokenIssuer("the ID token was issued by another issuer") from None
        except jwt.InvalidAudienceError:
            raise IdTokenAudience("the ID token is for another audience") from None
        except jwt.InvalidSignatureError:
            raise IdTokenSignature("the ID token's signature does not verify") from None
        except jwt.InvalidAlgorithmError:
            raise IdTokenAlgorithm("the ID token's algorithm is refused") from None
        except (jwt.MissingRequiredClaimError, jwt.ImmatureSignatureError) as exc:
            raise IdTokenClaims(str(exc)) from None
        except jwt.DecodeError:
            raise IdTokenMalformed("the ID token cannot be decoded") from None
        except jwt.PyJWTError as exc:
            raise IdTokenClaims(str(exc)) from None
        return claims

    async def _key(self, kid: object) -> jwt.PyJWK:
        if not isinstance(kid, str) or not kid:
            raise IdTokenMalformed("the ID token names no key (kid)")
        async with self._lock:
            age = time.monotonic() - self._fetched
            stale = age > CACHE_SECONDS or (kid not in self._keys and age > REFETCH_SECONDS)
            if stale or not self._fetched:
                await self._fetch()
            key = self._keys.get(kid)
        if key is None:
            raise IdTokenSignature(f"the issuer has no key {kid!r}")
        return key

    async def _fetch(self) -> None:
        try:
            if self._client is not None:
                response = await self._client.get(self.jwks_url)
            else:
                async with httpx.AsyncClient(timeout=5.0) as client:
                    response = await client.get(self.jwks_url)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise IdentityProviderUnavailable(f"cannot fetch the JWKS: {exc}") from None
        keys: dict[str, jwt.PyJWK] = {}
        for data in document.get("keys", []) if isinstance(document, dict) else []:
            if not isinstance(data, dict) or data.get("kty") not in {"RSA", "EC"}:
                continue  # symmetric keys are never trusted from a JWKS
            if data.get("use", "sig") != "sig" or not isinstance(data.get("kid"), str):
                continue
            try:
                keys[data["kid"]] = jwt.PyJWK(data)
            except jwt.PyJWTError:
                continue
        self._keys = keys
        self._fetched = time.monotonic()

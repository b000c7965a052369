"""The key that signs and verifies tokens, and where it comes from.

HS256 with a shared secret of at least 32 bytes and 128 bits of estimated
entropy (:mod:`.strength`) is the default. When no secret is configured in
development, one is generated once and kept, readable by its owner only, in
``token-secret`` beside the SQLite store; production needs the secret (or a
key) configured. An Ed25519 (EdDSA) or P-256 (ES256) key in a PEM file can be
configured instead; a node that holds only the public key can verify tokens
but not issue them. These need the ``cryptography`` package.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from threadline.core.errors import ConfigurationError
from threadline.security.strength import weakness
from threadline.settings import Settings

Algorithm = Literal["HS256", "EdDSA", "ES256"]
MIN_SECRET_BYTES: Final = 32
SECRET_FILE: Final = "token-secret"


@dataclass(frozen=True, slots=True, repr=False)
class TokenKey:
    """One algorithm and its key material; ``signing`` is None on a verify-only key."""

    algorithm: Algorithm
    verifying: Any
    signing: Any | None

    def __repr__(self) -> str:
        # Never print key material.
        return f"TokenKey({self.algorithm}, can_sign={self.can_sign})"

    @property
    def can_sign(self) -> bool:
        return self.signing is not None

    @classmethod
    def hs256(cls, secret: str | bytes, source: str = "the token secret") -> TokenKey:
        """A shared-secret key; refuses secrets shorter than 32 bytes or easy to guess.

        ``source`` names where the secret came from in the refusal (never the secret).
        """
        raw = secret.encode() if isinstance(secret, str) else bytes(secret)
        if len(raw) < MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"{source} is {len(raw)} bytes; HS256 needs at least {MIN_SECRET_BYTES}"
            )
        problem = weakness(raw)
        if problem is not None:
            raise ConfigurationError(f"{source} {problem}")
        return cls("HS256", raw, raw)

    @classmethod
    def from_pem(cls, pem: bytes) -> TokenKey:
        """An EdDSA (Ed25519) or ES256 (P-256) key from a PEM private or public key."""
        try:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import ec, ed25519
        except ImportError:
            raise ConfigurationError(
                "EdDSA and ES256 token keys need the cryptography package: pip install cryptography"
            ) from None
        private: Any = None
        try:
            private = serialization.load_pem_private_key(pem, password=None)
            public: Any = private.public_key()
        except TypeError:
            raise ConfigurationError("encrypted PEM keys are not supported") from None
        except ValueError:
            try:
                public = serialization.load_pem_public_key(pem)
            except ValueError:
                raise ConfigurationError(
                    "the token key is not a PEM private or public key"
                ) from None
        algorithm: Algorithm
        if isinstance(public, ed25519.Ed25519PublicKey):
            algorithm = "EdDSA"
        elif isinstance(public, ec.EllipticCurvePublicKey) and isinstance(
            public.curve, ec.SECP256R1
        ):
            algorithm = "ES256"
        else:
            raise ConfigurationError("token keys must be Ed25519 (EdDSA) or P-256 (ES256)")
        return cls(algorithm, public, private)

    def secret_material(self) -> bytes | None:
        """Secret bytes to derive other keys from (the HS256 secret, or the private key's
        raw bytes); None for a verify-only key."""
        if self.signing is None:
            return None
        if self.algorithm == "HS256":
            return bytes(self.signing)
        from cryptography.hazmat.primitives import serialization

        raw: bytes = self.signing.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return raw

    def public(self) -> TokenKey:
        """The verify-only half of an asymmetric key (an HS256 secret has no such half)."""
        if self.algorithm == "HS256":
            raise ConfigurationError(
                "an HS256 secret both signs and verifies; it has no public half"
            )
        return TokenKey(self.algorithm, self.verifying, None)


def _read(path: Path) -> tuple[bytes, int]:
    """The file's bytes and permission bits, read through one open file."""
    fd = os.open(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as file:
        return file.read(), stat.S_IMODE(os.fstat(fd).st_mode)


def _read_private(path: Path) -> bytes:
    """The file's bytes, refusing a file that others may read."""
    data, mode = _read(path)
    _refuse_shared(path, mode)
    return data


def _refuse_shared(path: Path, mode: int) -> None:
    if os.name == "posix" and mode & 0o077:
        raise ConfigurationError(
            f"{path} is readable by others (mode {mode:04o}); run: chmod 600 {path}"
        )


def load_or_create_secret(path: Path) -> bytes:
    """The HS256 secret kept at ``path``, generated (mode 0600) on first use.

    Creation is atomic: the secret is written to a private temporary file and
    hard-linked into place, so concurrent first starts agree on one secret and
    nobody ever reads a half-written file.
    """
    try:
        secret = _read_private(path).strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_urlsafe(48) + "\n")
                file.flush()
                os.fsync(file.fileno())
            # A process that made it first wins; everyone then reads its secret.
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        secret = _read_private(path).strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"the token secret in {path} is shorter than {MIN_SECRET_BYTES} bytes"
        )
    return secret


def secret_path(store_url: str) -> Path:
    """Where the generated secret lives: ``token-secret`` beside the SQLite store."""
    if store_url.startswith("sqlite:///") and len(store_url) > len("sqlite:///"):
        return Path(store_url[len("sqlite:///") :]).parent / SECRET_FILE
    # A secret generated on one machine would not verify on the others.
    raise ConfigurationError(
        "with a shared store, set THREADLINE_TOKEN_SECRET (or THREADLINE_TOKEN_KEY_FILE) "
        "to the same value on every machine"
    )


def key_from_settings(settings: Settings) -> TokenKey:
    """The configured token key: a PEM key file, a secret, or (in development only) the
    generated secret."""
    if settings.token_key_file is not None and settings.token_secret is not None:
        raise ConfigurationError(
            "set THREADLINE_TOKEN_SECRET or THREADLINE_TOKEN_KEY_FILE, not both"
        )
    if settings.token_key_file is not None:
        pem, mode = _read(settings.token_key_file)
        key = TokenKey.from_pem(pem)
        if key.can_sign:
            _refuse_shared(settings.token_key_file, mode)
        return key
    if settings.token_secret is not None:
        return TokenKey.hs256(settings.token_secret.get_secret_value(), "THREADLINE_TOKEN_SECRET")
    if settings.env == "production":
        raise ConfigurationError(
            "THREADLINE_ENV=production needs THREADLINE_TOKEN_SECRET or THREADLINE_TOKEN_KEY_FILE"
            " set explicitly (no secret is generated); create a secret with: openssl rand -hex 32"
        )
    path = secret_path(settings.store)
    return TokenKey.hs256(load_or_create_secret(path), f"the token secret in {path}")

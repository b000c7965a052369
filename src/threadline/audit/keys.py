"""The Ed25519 key that signs audit checkpoints, and where it comes from.

``THREADLINE_AUDIT_KEY_FILE`` names a PEM file: an Ed25519 private key signs
(readable by its owner only), a public key only verifies (a verifying node,
an auditor's machine). Without it the key is derived with HKDF-SHA256 from
the token key's secret material (:meth:`TokenKey.secret_material`), so every
process sharing the token secret derives the same key and nothing more has to
be kept. Rotating that secret changes a derived key, and checkpoints signed
before no longer verify: production should set the key file. Without the file
and without secret material to derive from (a verify-only token key), the
service refuses to start.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from threadline.audit.chain import Checkpoint
from threadline.core.errors import ConfigurationError
from threadline.security.keys import TokenKey, key_from_settings
from threadline.settings import Settings

#: HKDF's salt and info for the derived key: a new label derives an unrelated key.
DERIVE_SALT: Final = b"threadline.audit"
DERIVE_INFO: Final = b"checkpoint signing key v1"


@dataclass(frozen=True, slots=True, repr=False)
class AuditKey:
    """The checkpoint key: ``private`` is None on a verify-only key."""

    public: Ed25519PublicKey
    private: Ed25519PrivateKey | None = None

    def __repr__(self) -> str:
        return f"AuditKey({self.key_id}, can_sign={self.can_sign})"  # never key material

    @property
    def can_sign(self) -> bool:
        return self.private is not None

    @property
    def key_id(self) -> str:
        """The first 16 hex digits of SHA-256 of the raw public key."""
        raw = self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return hashlib.sha256(raw).hexdigest()[:16]

    def sign(self, seq: int, hash_: bytes, at: datetime) -> Checkpoint:
        """The checkpoint stating that entry ``seq`` has ``hash_``, signed now."""
        if self.private is None:
            raise ConfigurationError(
                "the audit key is public only: checkpoints need the private key"
                " (THREADLINE_AUDIT_KEY_FILE)"
            )
        unsigned = Checkpoint(seq, hash_, at, b"")
        return replace(unsigned, signature=self.private.sign(unsigned.signed_bytes()))

    def signed(self, checkpoint: Checkpoint) -> bool:
        """Whether this key signed ``checkpoint`` as it reads."""
        try:
            self.public.verify(checkpoint.signature, checkpoint.signed_bytes())
        except InvalidSignature:
            return False
        return True

    def verifying(self) -> AuditKey:
        """The verify-only half."""
        return AuditKey(self.public)

    @classmethod
    def generate(cls) -> AuditKey:
        private = Ed25519PrivateKey.generate()
        return cls(private.public_key(), private)

    @classmethod
    def derived(cls, material: bytes) -> AuditKey:
        """The key HKDF-SHA256 derives from ``material`` (the same material, the same key)."""
        seed = HKDF(hashes.SHA256(), 32, salt=DERIVE_SALT, info=DERIVE_INFO).derive(material)
        private = Ed25519PrivateKey.from_private_bytes(seed)
        return cls(private.public_key(), private)

    @classmethod
    def from_pem(cls, pem: bytes) -> AuditKey:
        """An Ed25519 private or public key in PEM (unencrypted)."""
        loaded: object
        try:
            loaded = serialization.load_pem_private_key(pem, password=None)
        except TypeError:
            raise ConfigurationError("encrypted PEM audit keys are not supported") from None
        except ValueError:
            try:
                loaded = serialization.load_pem_public_key(pem)
            except ValueError:
                raise ConfigurationError("the audit key is no PEM private or public key") from None
        if isinstance(loaded, Ed25519PrivateKey):
            return cls(loaded.public_key(), loaded)
        if isinstance(loaded, Ed25519PublicKey):
            return cls(loaded)
        raise ConfigurationError("the audit key must be an Ed25519 key")

    def private_pem(self) -> bytes:
        if self.private is None:
            raise ConfigurationError("the audit key is public only")
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_pem(self) -> bytes:
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _read_key_file(path: Path) -> AuditKey:
    fd = os.open(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as file:
        pem = file.read()
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
    key = AuditKey.from_pem(pem)
    if key.can_sign and os.name == "posix" and mode & 0o077:
        raise ConfigurationError(
            f"{path} is readable by others (mode {mode:04o}); run: chmod 600 {path}"
        )
    return key


def audit_key_from_settings(settings: Settings, token_key: TokenKey | None = None) -> AuditKey:
    """The configured audit key: the key file, else derived from the token key's secret.

    ``token_key`` is the service's token key when the caller holds it already;
    otherwise it is read from the settings as the service would.
    """
    if settings.audit_key_file is not None:
        return _read_key_file(settings.audit_key_file)
    material = (token_key or key_from_settings(settings)).secret_material()
    if material is None:
        raise ConfigurationError(
            f"THREADLINE_ENV={settings.env}: audit checkpoints need a signing key, and the token"
            " key here is verify-only, so none can be derived: set THREADLINE_AUDIT_KEY_FILE to"
            " an Ed25519 PEM key (openssl genpkey -algorithm ed25519 -out audit-key.pem)"
        )
    return AuditKey.derived(material)

"""The master key that wraps per-customer data keys, and where it comes from.

:class:`LocalKeyProvider` is the embedded :class:`~threadline.core.ports.KeyProvider`:
AES-256-GCM key wrapping with a 32-byte master key held in this process.
``THREADLINE_MASTER_KEY_FILE`` names a file holding it (32 raw bytes, or their base64;
readable by its owner only), ``THREADLINE_MASTER_KEY`` holds its base64. In development
without either, it is derived with HKDF-SHA256 from the token key's secret material, so
the service and its bot worker derive the same key and nothing more has to be kept;
rotating that secret then makes every data key unreadable, so production must set one
explicitly and refuses to start without. A KMS or Vault backend implements the same port:
wrap and unwrap a data key, naming the master key and version that wrapped it.
"""

from __future__ import annotations

import binascii
import hashlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from threadline.core.errors import ConfigurationError, IntegrityError
from threadline.core.ports import KeyProvider, WrappedKey
from threadline.security.keys import TokenKey, key_from_settings
from threadline.settings import Settings

MASTER_KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
#: HKDF's salt and info for the development key: a new label derives an unrelated key.
DERIVE_SALT: Final = b"threadline.crypto"
DERIVE_INFO: Final = b"master key v1"
MAKE_ONE: Final = "create one with: openssl rand -base64 32"


def _key_id(master: bytes) -> str:
    return "local:" + hashlib.sha256(b"threadline master key id\x00" + master).hexdigest()[:16]


class LocalKeyProvider(KeyProvider):
    """Wraps data keys with a master key in memory; ``previous`` keys still unwrap (rotation:
    new data keys are wrapped with the first)."""

    def __init__(self, master: bytes, previous: Iterable[bytes] = ()) -> None:
        keys = [master, *previous]
        if any(len(k) != MASTER_KEY_BYTES for k in keys):
            raise ConfigurationError(f"a master key is {MASTER_KEY_BYTES} bytes")
        self._ciphers = {_key_id(k): AESGCM(k) for k in keys}
        self.key_id = _key_id(master)

    def __repr__(self) -> str:
        return f"LocalKeyProvider({self.key_id})"  # never key material

    def wrap(self, data_key: bytes, context: str) -> WrappedKey:
        nonce = os.urandom(NONCE_BYTES)
        secret = self._ciphers[self.key_id].encrypt(nonce, data_key, _aad(context, self.key_id))
        return WrappedKey(self.key_id, nonce + secret)

    def unwrap(self, wrapped: WrappedKey, context: str) -> bytes:
        cipher = self._ciphers.get(wrapped.master_key_id)
        if cipher is None:
            raise ConfigurationError(
                f"the data key of {context} was wrapped by master key {wrapped.master_key_id},"
                f" which this service does not hold (it has {self.key_id})"
            )
        raw = wrapped.ciphertext
        try:
            return cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:],
                                  _aad(context, wrapped.master_key_id))  # fmt: skip
        except InvalidTag:
            raise IntegrityError(
                f"the wrapped data key of {context} does not authenticate"
            ) from None

    @classmethod
    def derived(cls, material: bytes) -> LocalKeyProvider:
        """The provider whose key HKDF-SHA256 derives from ``material``."""
        key = HKDF(hashes.SHA256(), MASTER_KEY_BYTES, salt=DERIVE_SALT, info=DERIVE_INFO)
        return cls(key.derive(material))


def _aad(context: str, key_id: str) -> bytes:
    return f"threadline.data-key\x1f{context}\x1f{key_id}".encode()


def _decoded(text: bytes, source: str) -> bytes:
    if len(text) == MASTER_KEY_BYTES:
        return text
    try:
        raw = binascii.a2b_base64(text.strip())
    except binascii.Error:
        raw = b""
    if len(raw) != MASTER_KEY_BYTES:
        raise ConfigurationError(
            f"{source} is not {MASTER_KEY_BYTES} bytes or their base64; {MAKE_ONE}"
        )
    return raw


def _read_key_file(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ConfigurationError(
            f"THREADLINE_MASTER_KEY_FILE: cannot read {path} ({exc.strerror})"
        ) from None
    with os.fdopen(fd, "rb") as file:
        data = file.read()
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
    if os.name == "posix" and mode & 0o077:
        raise ConfigurationError(
            f"{path} is readable by others (mode {mode:04o}); run: chmod 600 {path}"
        )
    return _decoded(data, f"the master key in {path}")


def key_provider_from_settings(
    settings: Settings, token_key: TokenKey | None = None
) -> LocalKeyProvider:
    """The configured master key: the key file, the key, or (in development only) one
    derived from the token key's secret (``token_key``, else read as the service would)."""
    if settings.master_key_file is not None and settings.master_key is not None:
        raise ConfigurationError(
            "set THREADLINE_MASTER_KEY or THREADLINE_MASTER_KEY_FILE, not both"
        )
    if settings.master_key_file is not None:
        return LocalKeyProvider(_read_key_file(settings.master_key_file))
    if settings.master_key is not None:
        text = settings.master_key.get_secret_value().encode()
        return LocalKeyProvider(_decoded(text, "THREADLINE_MASTER_KEY"))
    if settings.env == "production":
        raise ConfigurationError(
            "THREADLINE_ENV=production needs THREADLINE_MASTER_KEY_FILE or THREADLINE_MASTER_KEY"
            f" (32 random bytes, base64) to encrypt personal data; {MAKE_ONE}"
        )
    material = (token_key or key_from_settings(settings)).secret_material()
    if material is None:
        raise ConfigurationError(
            "the token key here is verify-only, so no master key can be derived from it: set"
            f" THREADLINE_MASTER_KEY_FILE or THREADLINE_MASTER_KEY; {MAKE_ONE}"
        )
    return LocalKeyProvider.derived(material)

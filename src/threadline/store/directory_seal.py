"""The identity directory's personal data at rest: a blind index and sealed values.

The directory answers "whose is this phone number?" and "which identifiers does this
customer hold?".
When the store encrypts personal data, the directory's tables hold no identifier and no
typed reason in clear:

* a link's row is found by a blind index, ``hmac:`` and the HMAC-SHA256 of the
  identifier's key (``phone:`` and the number in E.164) under the directory's index key: the same
  identifier finds the same row, and the column reads as noise;
* a link's value, and a conflict's identifier and reason, are sealed with AES-256-GCM
  under the directory's value key, bound to the row (the link's index, the conflict's
  id), and opened as they are read.

Both keys are derived (HKDF-SHA256) from one data key of the owner ``directory``, wrapped
by the master key like every data key and made on first need. Erasing a customer deletes
their rows (and the store scrubs its files); the directory key stays, for everyone else.
A store that does not encrypt keeps the directory in clear (:data:`PLAIN`).
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import hmac
import secrets
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from threadline.core.ports import EventStore
from threadline.store.nonces import NONCE_BYTES, NONCES
from threadline.store.sealing import Encrypting, StoredKey, TamperedPayload

#: The owner of the directory's data key in ``data_keys``.
OWNER: Final = "directory"
INDEX: Final = "hmac:"
SEALED: Final = "enc:"
_INFO: Final = b"threadline identity directory v1"


class DirectoryCipher(Protocol):
    """How the directory stores identifiers: :class:`Sealing`, or :data:`PLAIN`."""

    @property
    def sealed(self) -> bool: ...

    def index(self, key: str) -> str:
        """The column a row of identifier ``key`` is found by."""

    def seal(self, text: str, row: str) -> str:
        """``text`` as stored in the row ``row``."""

    def open(self, stored: str, row: str) -> str:
        """What :meth:`seal` stored in the row ``row``."""


class _Plain:
    """The directory in clear (a store that does not encrypt)."""

    sealed = False

    def index(self, key: str) -> str:
        return key

    def seal(self, text: str, row: str) -> str:
        return text

    def open(self, stored: str, row: str) -> str:
        return stored


PLAIN: Final[DirectoryCipher] = _Plain()


class Sealing:
    """The directory's blind index and value cipher, from its data key."""

    sealed = True

    def __init__(self, key: bytes) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=_INFO).derive(key)
        self._index_key = derived[:32]
        self._cipher = AESGCM(derived[32:])

    def index(self, key: str) -> str:
        return INDEX + hmac.new(self._index_key, key.encode(), hashlib.sha256).hexdigest()

    def seal(self, text: str, row: str) -> str:
        nonce = NONCES()
        secret = self._cipher.encrypt(nonce, text.encode(), row.encode())
        return SEALED + binascii.b2a_base64(nonce + secret, newline=False).decode("ascii")

    def open(self, stored: str, row: str) -> str:
        if not stored.startswith(SEALED):
            raise TamperedPayload(f"identity directory row {row}: a value is not sealed")
        try:
            raw = binascii.a2b_base64(stored[len(SEALED) :])
            plain = self._cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], row.encode())
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise TamperedPayload(f"identity directory row {row}: a value does not open") from exc
        return plain.decode()


async def directory_cipher(store: EventStore) -> DirectoryCipher:
    """How the directory in ``store``'s database keeps identifiers: sealed under the
    directory's data key when the store encrypts (made on first need), else in clear."""
    if not isinstance(store, Encrypting) or store.sealer is None:
        return PLAIN
    sealer, table = store.sealer, store.key_table
    stored = await table.by_owner([OWNER])
    if not stored:
        raw = AESGCM.generate_key(bit_length=256)
        wrapped = await asyncio.to_thread(sealer.provider.wrap, raw, OWNER)
        await table.add([StoredKey(secrets.token_hex(8), OWNER, wrapped)])
        stored = await table.by_owner([OWNER])  # two processes at once: both take the oldest
    first = stored[0]
    return Sealing(await asyncio.to_thread(sealer.provider.unwrap, first.wrapped, first.owner))

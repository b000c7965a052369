"""Per-customer encryption of personal data at rest, shared by both store backends.

Every payload field the catalogue marks ``Pii`` (and every field holding a model that
has one, such as a merge's identifiers) is replaced in the stored bytes by an envelope::

    {"$enc": "<base64 of nonce | ciphertext>", "kid": "<data key id>"}

AES-256-GCM under the data key of the event's customer (``customer_id``), or of its
conversation (``conversation:<id>``) when it names none. The associated data binds the
conversation, the event id, the field and the key id: a ciphertext copied into another
event, field or key does not authenticate, and reading it raises :class:`TamperedPayload`
naming the event and field, rather than returning anything. Nonces are a per-process
random field and a counter (:mod:`threadline.store.nonces`). A field whose key was
destroyed (erasure: crypto-shredding) reads as its tombstone, a value its schema accepts
(:data:`~threadline.core.catalogue.ERASED` for text, ``{}`` or ``[]`` otherwise), so every
stream still replays. Fields that are null or empty are stored as they are.

Snapshots are encrypted whole under their conversation's key; one whose key is gone reads
as no snapshot, and the conversation is folded from its log again. Erasure destroys that
key and deletes the snapshots too.

Data keys are made on first need, wrapped by the :class:`~threadline.core.ports.KeyProvider`
and kept in the store's ``data_keys`` table (:class:`KeyTable`, one per backend); unwrapped
ones stay in a bounded LRU cache. Reads, the relay and every layer above the store see
plaintext: :class:`Sealer` sits at the backends' boundary, so the bot worker process, which
reads the same database, decrypts with the same keys, and the appends it forwards to the
service are encrypted there.
"""

from __future__ import annotations

import asyncio
import binascii
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from threadline.core.catalogue import CATALOGUE, Catalogue
from threadline.core.errors import IntegrityError
from threadline.core.events import EventRecord
from threadline.core.ports import KeyProvider, Snapshot, WrappedKey
from threadline.store.key_cache import DATA_KEY_CACHE, KeyCache
from threadline.store.nonces import NONCE_BYTES, NONCES
from threadline.store.sealed_fields import Sealed, sealed_fields

DATA_KEY_BYTES: Final = 32
#: Bytes every sealed payload holds, and only sealed ones (a cheap test before parsing).
MARK: Final = b'"$enc"'
CONVERSATION_OWNER: Final = "conversation:"


class TamperedPayload(IntegrityError):
    """A sealed field does not authenticate: it was altered, or copied from elsewhere."""


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A data key as the ``data_keys`` table keeps it."""

    key_id: str
    owner: str
    wrapped: WrappedKey


_PAYLOAD: Final = EventRecord._fields.index("payload")


def with_payload(record: EventRecord, payload: bytes) -> EventRecord:
    """``record`` with another payload (``_replace`` without its keyword plumbing)."""
    return tuple.__new__(EventRecord, (*record[:_PAYLOAD], payload, *record[_PAYLOAD + 1 :]))


def owner_of(record: EventRecord) -> str:
    """Whose key seals ``record``: its customer, else its conversation."""
    return record.customer_id or CONVERSATION_OWNER + record.conversation_id


def conversation_owner(conversation_id: str) -> str:
    return CONVERSATION_OWNER + conversation_id


# -- keys ---------------------------------------------------------------------------------


class KeyTable(ABC):
    """A backend's ``data_keys`` table: wrapped data keys by id and by owner."""

    @abstractmethod
    async def by_id(self, key_ids: Collection[str]) -> list[StoredKey]:
        """The keys among ``key_ids`` that still exist."""

    @abstractmethod
    async def by_owner(self, owners: Collection[str]) -> list[StoredKey]:
        """Every key of ``owners``, oldest first."""

    @abstractmethod
    async def add(self, keys: Sequence[StoredKey]) -> None:
        """Keep new keys; durable when this returns."""


class _Request:
    """Keys a batch needs: ``found`` (id or owner → key material), ``missing`` the rest;
    ``since``: when it began (a key read before its owner was erased is not cached)."""

    __slots__ = ("found", "missing", "since")

    def __init__(self) -> None:
        self.found: dict[str, Any] = {}
        self.missing: set[str] = set()
        self.since = time.monotonic()


# -- the sealer ---------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _field_aad(record: EventRecord, name: str, key_id: str) -> bytes:
    return f"{record.conversation_id}\x1f{record.event_id}\x1f{name}\x1f{key_id}".encode()


def _snapshot_aad(snapshot: Snapshot, key_id: str) -> bytes:
    return (f"snapshot\x1f{snapshot.conversation_id}\x1f{snapshot.schema_version}"
            f"\x1f{snapshot.seq}\x1f{key_id}").encode()  # fmt: skip


def _envelope(value: Any) -> tuple[str, str] | None:
    """(ciphertext, key id) of a sealed field's value; None for a plain value."""
    if type(value) is dict and "$enc" in value:
        return str(value["$enc"]), str(value.get("kid", ""))
    return None


@dataclass(slots=True)
class Opening:
    """Records to decrypt: the payloads parsed, and the keys they need."""

    records: Sequence[EventRecord]
    todo: list[tuple[int, dict[str, Any], Sealed]]
    keys: _Request = field(default_factory=_Request)


class Sealer:
    """Seals and opens payload fields and snapshots with per-customer data keys.

    Pure computation and a cache; the backend's :class:`KeyTable` fetches and keeps the
    wrapped keys. The ``provider`` is called off the event loop, and only for keys not
    in the cache.
    """

    def __init__(
        self,
        provider: KeyProvider,
        catalogue: Catalogue = CATALOGUE,
        *,
        cache_size: int = DATA_KEY_CACHE,
    ) -> None:
        self.provider = provider
        self.cache = KeyCache(cache_size)
        self._sealed = sealed_fields(catalogue)
        self._making: asyncio.Lock | None = None

    # -- keys ---------------------------------------------------------------------------

    def _take(self, request: _Request, keys: Iterable[StoredKey], *, by_owner: bool) -> None:
        """Unwrap ``keys`` (blocking: the provider may call out) into the cache and request."""
        for key in keys:
            cipher = AESGCM(self.provider.unwrap(key.wrapped, key.owner))
            self.cache.put(key.key_id, key.owner, cipher, seals=by_owner, since=request.since)
            if by_owner:
                request.found[key.owner] = (key.key_id, cipher)
                request.missing.discard(key.owner)
            else:
                request.found[key.key_id] = cipher
                request.missing.discard(key.key_id)

    def _make(self, owners: Collection[str]) -> list[tuple[StoredKey, AESGCM]]:
        """New data keys for ``owners``, wrapped (blocking: the provider may call out)."""
        made = []
        for owner in sorted(owners):
            raw = AESGCM.generate_key(bit_length=DATA_KEY_BYTES * 8)
            key = StoredKey(secrets.token_hex(8), owner, self.provider.wrap(raw, owner))
            made.append((key, AESGCM(raw)))
        return made

    async def _sealing_keys(self, owners: Collection[str], table: KeyTable) -> _Request:
        request = _Request()
        for owner in owners:
            hit = self.cache.sealing(owner)
            if hit is None:
                request.missing.add(owner)
            else:
                request.found[owner] = hit
        if not request.missing:
            return request
        if self._making is None:
            self._making = asyncio.Lock()
        async with self._making:  # one new key per owner, however many appends wait for it
            for owner in list(request.missing):
                hit = self.cache.sealing(owner)
                if hit is not None:
                    request.found[owner] = hit
                    request.missing.discard(owner)
            if request.missing:
                stored = await table.by_owner(sorted(request.missing))
                if stored:
                    await asyncio.to_thread(self._take, request, stored, by_owner=True)
            if request.missing:
                made = await asyncio.to_thread(self._make, request.missing)
                await table.add([key for key, _ in made])
                for key, cipher in made:
                    self.cache.put(key.key_id, key.owner, cipher, seals=True)
                    request.found[key.owner] = (key.key_id, cipher)
                request.missing.clear()
        return request

    def forget(self, owners: Collection[str]) -> None:
        """Drop the cached keys of ``owners`` (their rows were destroyed)."""
        self.cache.forget(owners)

    # -- records ------------------------------------------------------------------------

    async def seal(self, records: Sequence[EventRecord], table: KeyTable) -> list[EventRecord]:
        """``records`` with their personal data encrypted; unchanged records as they are."""
        sealed = self._sealed
        found: dict[str, tuple[str, AESGCM]] = {}
        missing = False
        for record in records:
            if (record.type, record.version) in sealed:
                owner = owner_of(record)
                if owner not in found:
                    hit = self.cache.sealing(owner)
                    if hit is None:
                        missing = True
                    else:
                        found[owner] = hit
        if missing:  # the cold path: read or make the keys
            owners = {owner_of(r) for r in records if (r.type, r.version) in sealed}
            found = (await self._sealing_keys(owners, table)).found
        elif not found:
            return list(records)
        return [self._seal(r, found) for r in records]

    def _seal(self, record: EventRecord, keys: dict[str, tuple[str, AESGCM]]) -> EventRecord:
        sealed = self._sealed.get((record.type, record.version))
        if sealed is None:
            return record
        payload = orjson.loads(record.payload)
        key_id, cipher = keys[owner_of(record)]
        changed = False
        for name in sealed.fields:
            value = payload.get(name)
            if not value or _envelope(value) is not None:
                continue  # null or empty says nothing; an envelope is sealed already
            nonce = NONCES()
            secret = cipher.encrypt(nonce, orjson.dumps(value), _field_aad(record, name, key_id))
            payload[name] = {"$enc": _b64(nonce + secret), "kid": key_id}
            changed = True
        return with_payload(record, orjson.dumps(payload)) if changed else record

    def opening(self, records: Sequence[EventRecord]) -> Opening | None:
        """What ``records`` need to be read in plaintext; None when none is sealed."""
        todo = []
        request = _Request()
        get = self._sealed.get
        for index, record in enumerate(records):
            sealed = get((record.type, record.version))
            if sealed is None or MARK not in record.payload:
                continue
            payload = orjson.loads(record.payload)
            todo.append((index, payload, sealed))
            for name in sealed.fields:
                envelope = _envelope(payload.get(name))
                if envelope is None or envelope[1] in request.found:
                    continue
                known, cipher = self.cache.cipher(envelope[1])
                if known:
                    request.found[envelope[1]] = cipher
                else:
                    request.missing.add(envelope[1])
        return Opening(records, todo, request) if todo else None

    def supply(self, opening: Opening, keys: Iterable[StoredKey]) -> None:
        """Unwrap the keys ``opening`` was missing (blocking); the ones not among ``keys``
        were destroyed, and are remembered so."""
        self._take(opening.keys, keys, by_owner=False)
        for key_id in opening.keys.missing:
            self.cache.put(key_id, "", None)
            opening.keys.found[key_id] = None
        opening.keys.missing.clear()

    def finish(self, opening: Opening) -> list[EventRecord]:
        """The records of ``opening`` in plaintext (once :meth:`supply` gave what it missed)."""
        out = list(opening.records)
        found = opening.keys.found
        for index, payload, sealed in opening.todo:
            record = out[index]
            for name in sealed.fields:
                envelope = _envelope(payload.get(name))
                if envelope is None:
                    continue
                cipher = found.get(envelope[1])
                if cipher is None:
                    payload[name] = sealed.tombstones[name]
                    continue
                payload[name] = orjson.loads(self._decrypt(cipher, envelope, record, name))
            out[index] = with_payload(record, orjson.dumps(payload))
        return out

    @staticmethod
    def _decrypt(
        cipher: AESGCM, envelope: tuple[str, str], record: EventRecord, name: str
    ) -> bytes:
        try:
            raw = binascii.a2b_base64(envelope[0])
            return cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:],
                                  _field_aad(record, name, envelope[1]))  # fmt: skip
        except (InvalidTag, binascii.Error, ValueError):
            raise TamperedPayload(
                f"payload.{name} of event {record.event_id} (conversation"
                f" {record.conversation_id}) does not authenticate under key {envelope[1]}:"
                " it was altered or copied from another event"
            ) from None

    async def open(self, records: Sequence[EventRecord], table: KeyTable) -> list[EventRecord]:
        """``records`` in plaintext: erased fields as tombstones."""
        opening = self.opening(records)
        if opening is None:
            return list(records)
        if opening.keys.missing:
            stored = await table.by_id(sorted(opening.keys.missing))
            await asyncio.to_thread(self.supply, opening, stored)
        return self.finish(opening)

    def open_with(
        self, records: Sequence[EventRecord], by_id: Callable[[list[str]], list[StoredKey]]
    ) -> list[EventRecord]:
        """:meth:`open` for a thread that may block: ``by_id`` fetches missing keys."""
        opening = self.opening(records)
        if opening is None:
            return list(records)
        if opening.keys.missing:
            self.supply(opening, by_id(sorted(opening.keys.missing)))
        return self.finish(opening)

    # -- snapshots ----------------------------------------------------------------------

    async def seal_snapshot(self, snapshot: Snapshot, table: KeyTable) -> Snapshot:
        """``snapshot`` with its state encrypted under its conversation's key."""
        owner = conversation_owner(snapshot.conversation_id)
        key_id, cipher = (await self._sealing_keys([owner], table)).found[owner]
        nonce = NONCES()
        secret = cipher.encrypt(nonce, snapshot.state, _snapshot_aad(snapshot, key_id))
        state = orjson.dumps({"$enc": _b64(nonce + secret), "kid": key_id})
        return Snapshot(snapshot.conversation_id, snapshot.seq, snapshot.schema_version, state)

    async def open_snapshot(self, snapshot: Snapshot, table: KeyTable) -> Snapshot | None:
        """The snapshot in plaintext; None when its key was destroyed (fold the log)."""
        if not snapshot.state.startswith(b'{"$enc"'):
            return snapshot  # written before encryption: as it is
        envelope = _envelope(orjson.loads(snapshot.state))
        assert envelope is not None
        known, cipher = self.cache.cipher(envelope[1])
        if not known:
            request = _Request()
            request.missing.add(envelope[1])
            stored = await table.by_id([envelope[1]])
            if stored:
                await asyncio.to_thread(self._take, request, stored, by_owner=False)
            cipher = request.found.get(envelope[1])
            if cipher is None:
                self.cache.put(envelope[1], "", None)
        if cipher is None:
            return None
        try:
            raw = binascii.a2b_base64(envelope[0])
            state = cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:],
                                   _snapshot_aad(snapshot, envelope[1]))  # fmt: skip
        except (InvalidTag, binascii.Error, ValueError):
            raise TamperedPayload(
                f"the snapshot of conversation {snapshot.conversation_id} at seq"
                f" {snapshot.seq} does not authenticate under key {envelope[1]}"
            ) from None
        return Snapshot(snapshot.conversation_id, snapshot.seq, snapshot.schema_version, state)


# -- erasure ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shredded:
    """What :meth:`Encrypting.shred` destroyed."""

    keys: int
    snapshots: int


@runtime_checkable
class Encrypting(Protocol):
    """A store that seals personal data with per-owner keys, and can destroy them."""

    @property
    def sealer(self) -> Sealer | None: ...

    @property
    def key_table(self) -> KeyTable:
        """The backend's ``data_keys`` table."""

    def use_keys(self, provider: KeyProvider) -> None:
        """Encrypt from now on, with data keys wrapped by ``provider``."""

    async def shred(self, owners: Collection[str], conversation_ids: Collection[str]) -> Shredded:
        """Destroy every data key of ``owners`` and the snapshots of ``conversation_ids``,
        then scrub the database so no copy of them is left in its files."""

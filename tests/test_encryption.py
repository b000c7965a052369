"""Personal data is encrypted per customer before it reaches storage; reads decrypt it.

Every field the catalogue marks ``Pii`` is stored as ciphertext under the data key of the
event's customer, bound to its conversation, event, field and key; snapshots are stored
encrypted too. Everything above the store reads plaintext, and a field whose key is gone
reads as a tombstone its schema accepts.
"""

from __future__ import annotations

import base64
import itertools
import os
import stat
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from tests.conftest import OTHER_TOKEN_SECRET, POSTGRES_URL, TOKEN_SECRET
from tests.serving import environment, refused
from tests.stored_bytes import stored_bytes
from threadline.core.catalogue import CATALOGUE, ERASED
from threadline.core.conversation import STATE_SCHEMA_VERSION
from threadline.core.errors import ConfigurationError, IntegrityError
from threadline.core.events import Actor, Event, EventCodec, EventRecord
from threadline.core.ports import KeyProvider, Snapshot, WrappedKey
from threadline.engine.conversations import Conversations
from threadline.security.master_key import LocalKeyProvider, key_provider_from_settings
from threadline.settings import Settings
from threadline.store import encrypt
from threadline.store.key_cache import KeyCache
from threadline.store.nonces import NONCE_BYTES, NONCES, Nonces
from threadline.store.sealed_fields import sealed_fields
from threadline.store.sealing import TamperedPayload
from threadline.store.sqlite import SQLiteStore

CODEC = EventCodec()
ADA = "cus-ada"
CUSTOMER = Actor("customer", ADA)


def canary(label: str) -> str:
    return f"canary-{label}-{uuid.uuid4().hex[:12]}"


def holds(written: bytes, secret: str | bytes) -> bool:
    """Whether ``written`` holds ``secret``, as bytes or as the hex a dump shows bytea in."""
    raw = secret.encode() if isinstance(secret, str) else secret
    return raw in written or raw.hex().encode() in written


class CountingProvider(LocalKeyProvider):
    """A local provider that counts how often it unwraps (the cache should spare it)."""

    def __init__(self, master: bytes) -> None:
        super().__init__(master)
        self.master = master
        self.unwrapped = 0

    def unwrap(self, wrapped: WrappedKey, context: str) -> bytes:
        self.unwrapped += 1
        return super().unwrap(wrapped, context)


@pytest.fixture
def provider() -> CountingProvider:
    return CountingProvider(os.urandom(32))


@pytest.fixture
def sealed(any_store: Any, provider: KeyProvider) -> Any:
    encrypt(any_store, provider)
    return any_store


def conversation(cid: str, said: dict[str, str], customer: str | None = ADA) -> list[Event]:
    """A chat and call of ``customer`` in which every personal-data field holds ``said``'s."""
    who = Actor("customer", customer or "visitor-x")
    return [
        Event(cid, "conversation.started", {"origin": "chat"}, channel="chat", actor=who,
              customer_id=customer),
        Event(cid, "leg.started", {"leg_id": "l1", "channel": "voice", "address": said["address"]},
              channel="voice", leg_id="l1", actor=who, customer_id=customer),
        Event(cid, "message.received", {"text": said["message"]}, channel="chat", actor=who,
              customer_id=customer),
        Event(cid, "utterance.transcribed", {"text": said["utterance"], "confidence": 0.9,
              "start_ms": 0, "end_ms": 900}, channel="voice", leg_id="l1", actor=who,
              customer_id=customer),
        Event(cid, "slot.filled", {"name": "order_number", "value": said["slot"]},
              actor=Actor("bot", "shop-bot"), customer_id=customer),
        Event(cid, "action.requested", {"action_id": "a1", "tool": "lookup_order",
              "arguments": {"order": said["argument"]}}, actor=Actor("bot", "shop-bot"),
              customer_id=customer),
        Event(cid, "note.added", {"author_id": "agent-ana", "text": said["note"]},
              actor=Actor("human", "agent-ana"), customer_id=customer),
    ]  # fmt: skip


def everything_said() -> dict[str, str]:
    labels = ("address", "message", "utterance", "slot", "argument", "note")
    return {label: canary(label) for label in labels}


async def record(store: Any, cid: str, events: list[Event]) -> list[EventRecord]:
    records = [CODEC.encode(e) for e in events]
    await store.append(cid, records)
    return records


def payloads(records: list[EventRecord]) -> dict[str, Any]:
    return {r.type: CODEC.decode(r).payload for r in records}


async def test_personal_data_is_stored_encrypted_and_read_in_plaintext(
    sealed: Any, pg_schema: str
) -> None:
    said = everything_said()
    await record(sealed, "c-1", conversation("c-1", said))
    for read in (await sealed.read("c-1"), await sealed.read_all(0, 100)):
        got = payloads(read)
        assert got["message.received"]["text"] == said["message"]
        assert got["utterance.transcribed"]["text"] == said["utterance"]
        assert got["slot.filled"]["value"] == said["slot"]
        assert got["note.added"]["text"] == said["note"]
        assert got["leg.started"]["address"] == said["address"]
        assert got["action.requested"]["arguments"] == {"order": said["argument"]}
    written = await stored_bytes(sealed, pg_schema)
    assert holds(written, b'"$enc"')
    assert [label for label, text in said.items() if holds(written, text)] == []


async def test_an_event_without_personal_data_is_stored_byte_for_byte(sealed: Any) -> None:
    started, message = [CODEC.encode(e) for e in conversation("c-1", everything_said())[:3:2]]
    await sealed.append("c-1", [started, message])
    stored_started, stored_message = await sealed.read("c-1")
    assert stored_started.payload == started.payload
    assert CODEC.decode(stored_message).payload == CODEC.decode(message).payload


async def test_the_commit_feed_hands_on_plaintext(provider: KeyProvider, tmp_path: Path) -> None:
    from threadline.store.sqlite import open_sqlite

    store = await open_sqlite(tmp_path / "feed.db", keys=provider)
    fed: list[EventRecord] = []
    try:
        await store.follow(lambda after, records: fed.extend(records))
        said = everything_said()
        await record(store, "c-1", conversation("c-1", said))
        assert payloads(fed)["message.received"]["text"] == said["message"]
    finally:
        await store.close()


async def test_snapshots_are_stored_encrypted(sealed: Any, pg_schema: str) -> None:
    secret = canary("snapshot")
    state = f'{{"slots": {{"order_number": "{secret}"}}}}'.encode()
    await sealed.save_snapshot(Snapshot("c-1", 7, 3, state))
    assert not holds(await stored_bytes(sealed, pg_schema), secret)
    assert await sealed.load_snapshot("c-1", 3) == Snapshot("c-1", 7, 3, state)


async def test_a_conversation_rehydrates_from_an_encrypted_snapshot(sealed: Any) -> None:
    said = everything_said()
    conversations = Conversations(sealed, snapshot_every=2)
    await conversations.record("c-1", conversation("c-1", said))
    snapshot = await sealed.load_snapshot("c-1", STATE_SCHEMA_VERSION)
    assert snapshot is not None and snapshot.seq == 7
    state = await Conversations(sealed).rehydrate("c-1")
    assert state.slots["order_number"]["value"] == said["slot"]


async def raw_payloads(store: Any, schema: str) -> dict[int, bytes]:
    """Payload bytes by seq, straight from the database."""
    if isinstance(store, SQLiteStore):
        import sqlite3

        with sqlite3.connect(store.path) as conn:
            rows = conn.execute("SELECT seq, payload FROM events ORDER BY seq").fetchall()
        return {seq: bytes(payload) for seq, payload in rows}
    async with await psycopg.AsyncConnection.connect(
        POSTGRES_URL, autocommit=True, options=f"-c search_path={schema}"
    ) as conn:
        cursor = await conn.execute("SELECT seq, payload FROM events ORDER BY seq")
        return {seq: bytes(payload) for seq, payload in await cursor.fetchall()}


async def overwrite_payload(store: Any, schema: str, seq: int, payload: bytes) -> None:
    if isinstance(store, SQLiteStore):
        import sqlite3

        with sqlite3.connect(store.path) as conn:
            conn.execute("UPDATE events SET payload = ? WHERE seq = ?", (payload, seq))
        return
    async with await psycopg.AsyncConnection.connect(
        POSTGRES_URL, autocommit=True, options=f"-c search_path={schema}"
    ) as conn:
        await conn.execute("UPDATE events SET payload = %s WHERE seq = %s", (payload, seq))


async def test_a_ciphertext_moved_to_another_event_does_not_decrypt(
    sealed: Any, pg_schema: str
) -> None:
    first, second = canary("first"), canary("second")
    events = conversation("c-1", everything_said())[:1] + [
        Event("c-1", "message.received", {"text": text}, channel="chat", actor=CUSTOMER,
              customer_id=ADA)
        for text in (first, second)
    ]  # fmt: skip
    await record(sealed, "c-1", events)
    stored = await raw_payloads(sealed, pg_schema)
    await overwrite_payload(sealed, pg_schema, 3, stored[2])  # the same customer's key
    with pytest.raises(TamperedPayload, match=r"payload\.text of event .* does not authenticate"):
        await sealed.read("c-1")
    read = await sealed.read("c-1", limit=2)  # the events before it read as they were
    assert CODEC.decode(read[1]).payload["text"] == first


async def test_a_ciphertext_moved_to_another_customer_does_not_decrypt(
    sealed: Any, pg_schema: str
) -> None:
    await record(sealed, "c-1", conversation("c-1", everything_said()))
    await record(sealed, "c-2", conversation("c-2", everything_said(), customer="cus-bo"))
    stored = await raw_payloads(sealed, pg_schema)
    await overwrite_payload(sealed, pg_schema, 3, stored[3])  # both hold message.received
    with pytest.raises(TamperedPayload) as raised:
        await sealed.read("c-1")
        await sealed.read("c-2")
    assert isinstance(raised.value, IntegrityError)


async def test_a_field_whose_key_is_destroyed_reads_as_its_tombstone(sealed: Any) -> None:
    said = everything_said()
    conversations = Conversations(sealed)
    await conversations.record("c-1", conversation("c-1", said))
    shredded = await sealed.shred([ADA], [])
    assert shredded.keys == 1
    got = payloads(await sealed.read("c-1"))
    assert got["message.received"]["text"] == ERASED
    assert got["utterance.transcribed"]["text"] == ERASED
    assert got["slot.filled"]["value"] == ERASED
    assert got["note.added"]["text"] == ERASED
    assert got["action.requested"]["arguments"] == {}
    assert got["leg.started"]["address"] == ERASED
    state = await Conversations(sealed).rehydrate("c-1")  # the stream still replays
    assert state.seq == 7 and state.slots["order_number"]["value"] == ERASED


def test_every_sealed_field_has_a_tombstone_its_schema_accepts() -> None:
    for (type_, version), sealed in sealed_fields().items():
        schema = CATALOGUE.spec(type_, version).schema
        for name in sealed.fields:
            info = schema.model_fields[name]
            shape: Any = info.annotation
            if info.metadata:
                from typing import Annotated

                shape = Annotated[(info.annotation, *info.metadata)]
            try:
                TypeAdapter(shape).validate_python(sealed.tombstones[name])
            except PydanticValidationError as exc:  # pragma: no cover - the failure message
                pytest.fail(f"{type_} v{version} {name}: {exc}")


def test_every_field_marked_pii_is_sealed() -> None:
    sealed = sealed_fields()
    for spec in CATALOGUE:
        fields = sealed[(spec.type, spec.version)].fields if spec.pii else ()
        assert spec.pii <= set(fields), spec
    assert sealed[("verification.failed", 2)].fields == ("value",)  # optional: value | None
    assert sealed[("customer.merged", 1)].tombstones == {"identifiers": []}  # nested models


async def test_records_written_before_encryption_read_as_they_were(
    any_store: Any, provider: KeyProvider
) -> None:
    said = everything_said()
    await record(any_store, "c-1", conversation("c-1", said))
    encrypt(any_store, provider)
    assert payloads(await any_store.read("c-1"))["note.added"]["text"] == said["note"]


async def test_data_keys_are_made_once_and_cached(sealed: Any, provider: CountingProvider) -> None:
    await record(sealed, "c-1", conversation("c-1", everything_said()))
    await record(sealed, "c-2", conversation("c-2", everything_said()))
    for _ in range(3):
        await sealed.read("c-1")
        await sealed.read_all(0, 100)
    assert provider.unwrapped == 0  # made here: never unwrapped, however often read
    cold = CountingProvider(provider.master)  # the same master key with an empty cache
    sealed.use_keys(LocalKeyProvider(os.urandom(32)))
    sealed.use_keys(cold)
    for _ in range(3):
        await sealed.read("c-1")
        await sealed.read("c-2")
    assert cold.unwrapped == 1  # one customer, one data key, unwrapped once


def test_the_key_cache_is_bounded() -> None:
    cache = KeyCache(size=2)
    for key_id in ("k1", "k2", "k3"):
        cache.put(key_id, "cus-ada", None)
    assert len(cache) == 2 and cache.cipher("k1") == (False, None)
    cache.forget(["cus-ada"])
    assert len(cache) == 0


def test_a_key_read_before_its_owner_was_erased_is_not_cached() -> None:
    cache = KeyCache()
    cipher = AESGCM(os.urandom(32))
    fetched = time.monotonic()  # a read fetched the key, then the erasure forgot its owner
    cache.forget(["cus-ada"])
    cache.put("k1", "cus-ada", cipher, seals=True, since=fetched)
    assert cache.cipher("k1") == (False, None) and cache.sealing("cus-ada") is None
    cache.put("k2", "cus-ada", cipher, seals=True, since=time.monotonic())  # a key made later
    assert cache.sealing("cus-ada") == ("k2", cipher)


# -- nonces ---------------------------------------------------------------------------------


def test_nonces_are_a_fixed_field_and_a_counter_and_never_repeat() -> None:
    nonces = Nonces()
    drawn = [nonces() for _ in range(10_000)]
    assert all(len(n) == NONCE_BYTES for n in drawn) and len(set(drawn)) == len(drawn)
    assert {n[:8] for n in drawn} == {drawn[0][:8]}
    assert [int.from_bytes(n[8:], "big") for n in drawn[:3]] == [0, 1, 2]
    assert Nonces()()[:8] != drawn[0][:8]  # another process's (or instance's) fixed field


def test_a_spent_counter_draws_a_new_fixed_field() -> None:
    nonces = Nonces()
    fixed = nonces()[:8]
    nonces._state = (fixed, itertools.count((1 << 32) - 2))  # two left
    last = [nonces() for _ in range(4)]
    assert [n[:8] == fixed for n in last] == [True, True, False, False]
    assert [int.from_bytes(n[8:], "big") for n in last[2:]] == [0, 1]
    assert len({*last, fixed + bytes(4)}) == 5


def test_a_forked_child_draws_its_own_fixed_field() -> None:
    parent = NONCES()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        os.write(write, NONCES())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    forked = os.read(read, NONCE_BYTES)
    os.close(read)
    assert len(forked) == NONCE_BYTES and forked[:8] != parent[:8]


# -- the master key ------------------------------------------------------------------------


def test_a_data_key_unwraps_only_for_its_owner_and_master_key() -> None:
    provider = LocalKeyProvider(os.urandom(32))
    wrapped = provider.wrap(b"k" * 32, "cus-ada")
    assert provider.unwrap(wrapped, "cus-ada") == b"k" * 32
    with pytest.raises(IntegrityError, match="cus-bo does not authenticate"):
        provider.unwrap(wrapped, "cus-bo")
    with pytest.raises(ConfigurationError, match=f"wrapped by master key {provider.key_id}"):
        LocalKeyProvider(os.urandom(32)).unwrap(wrapped, "cus-ada")


def test_a_rotated_master_key_still_unwraps_what_the_previous_one_wrapped() -> None:
    previous = os.urandom(32)
    wrapped = LocalKeyProvider(previous).wrap(b"k" * 32, "cus-ada")
    rotated = LocalKeyProvider(os.urandom(32), previous=[previous])
    assert rotated.unwrap(wrapped, "cus-ada") == b"k" * 32
    assert rotated.wrap(b"k" * 32, "cus-ada").master_key_id == rotated.key_id


def test_development_derives_the_master_key_from_the_token_secret() -> None:
    one = key_provider_from_settings(Settings(token_secret=TOKEN_SECRET))
    again = key_provider_from_settings(Settings(token_secret=TOKEN_SECRET))
    other = key_provider_from_settings(Settings(token_secret=OTHER_TOKEN_SECRET))
    assert one.key_id == again.key_id != other.key_id
    assert "local:" in repr(one) and TOKEN_SECRET not in repr(one)


def test_production_needs_a_master_key() -> None:
    settings = Settings(env="production", token_secret=TOKEN_SECRET)
    with pytest.raises(ConfigurationError) as refusal:
        key_provider_from_settings(settings)
    assert "THREADLINE_MASTER_KEY_FILE or THREADLINE_MASTER_KEY" in str(refusal.value)
    assert "\n" not in str(refusal.value)
    key = base64.b64encode(os.urandom(32)).decode()
    configured = Settings(env="production", token_secret=TOKEN_SECRET, master_key=key)
    assert key_provider_from_settings(configured).key_id.startswith("local:")


async def test_production_without_a_master_key_refuses_to_start(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'data' / 'p.db'}"
    env = environment(THREADLINE_STORE=store, THREADLINE_ENV="production",
                      THREADLINE_TOKEN_SECRET=TOKEN_SECRET)  # fmt: skip
    code, out, err = await refused(env)
    assert code == 1 and out == ""
    assert err.startswith("threadline: error: THREADLINE_ENV=production needs THREADLINE_MASTER")
    assert err.count("\n") == 1


def test_a_master_key_file_is_read_raw_or_as_base64(tmp_path: Path) -> None:
    key = os.urandom(32)
    raw, text = tmp_path / "raw.key", tmp_path / "text.key"
    for path, data in ((raw, key), (text, base64.b64encode(key) + b"\n")):
        path.write_bytes(data)
        path.chmod(0o600)
    ids = {key_provider_from_settings(Settings(master_key_file=p)).key_id for p in (raw, text)}
    assert ids == {LocalKeyProvider(key).key_id}


def test_a_master_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_bytes(os.urandom(32))
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="readable by others"):
        key_provider_from_settings(Settings(master_key_file=path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.mark.parametrize("value", ["c2hvcnQ=" * 6, "not base64 at all, not at all!!!!!!!!!!!"])
def test_a_master_key_that_is_not_32_bytes_is_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match="is not 32 bytes or their base64"):
        key_provider_from_settings(Settings(master_key=value))


async def test_the_scan_finds_what_a_store_without_keys_holds(
    any_store: Any, pg_schema: str
) -> None:
    said = everything_said()
    await record(any_store, "c-1", conversation("c-1", said))
    written = await stored_bytes(any_store, pg_schema)
    assert all(holds(written, text) for text in said.values())


async def test_the_service_encrypts_its_store_and_its_api_reads_plaintext(
    any_store: Any, pg_schema: str
) -> None:
    from tests.timelines import serve

    said = everything_said()
    async with serve(any_store) as service:
        await service.record("c-1", conversation("c-1", said))
        events = await service.get("/conversations/c-1/events", service.admin)
        assert events.status_code == 200, events.text
        texts = {e["type"]: e["payload"] for e in events.json()}
        assert texts["note.added"]["text"] == said["note"]
        assert texts["slot.filled"]["value"] == said["slot"]
        written = await stored_bytes(any_store, pg_schema)
    assert [label for label, text in said.items() if holds(written, text)] == []

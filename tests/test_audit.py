"""The audit trail: entries and their bytes, the chain and its checkpoints on both stores,
tampering with the stored rows, and what the running service records."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import (
    NORTHWIND,
    OTHER_TOKEN_SECRET,
    POSTGRES_URL,
    TOKEN_SECRET,
    bearer,
    drop_schema,
    require_service,
)
from threadline.api.app import create_app
from threadline.api.deps import service_of
from threadline.audit import (
    GENESIS,
    POLICY_VERSION,
    AuditEntry,
    AuditKey,
    AuditLog,
    AuditTrail,
    Checkpoint,
    StoredEntry,
    audit_key_from_settings,
    chain_hash,
    open_audit_log,
    subject,
    verify,
)
from threadline.core.errors import ConfigurationError, ValidationError
from threadline.core.events import Actor
from threadline.identity.identifiers import email
from threadline.identity.service import Identity
from threadline.service import running
from threadline.settings import Settings
from threadline.store import open_directory
from threadline.store.sqlite import SQLiteStore, open_sqlite
from threadline.testing.audit_contract import AuditBackend, AuditLogContract, read_by

MAYA = {"kind": "customer", "id": "cus-maya"}


# -- the contract on both backends --------------------------------------------------------


class SQLiteAudit(AuditBackend):
    """Logs in SQLite files; raw SQL through a connection of its own, as any tool could."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path: dict[AuditLog, Path] = {}
        self.store: dict[AuditLog, SQLiteStore] = {}

    async def _open(self, path: Path) -> AuditLog:
        store = await open_sqlite(path)
        log = open_audit_log(store)
        self.path[log], self.store[log] = path, store
        return log

    async def fresh(self) -> AuditLog:
        return await self._open(self.folder / f"audit-{len(self.path)}.db")

    async def another(self, log: AuditLog) -> AuditLog:
        return await self._open(self.path[log])

    async def reopen(self, log: AuditLog) -> AuditLog:
        await self.store[log].close()
        return await self._open(self.path[log])

    async def execute(self, log: AuditLog, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        def run() -> list[tuple[Any, ...]]:
            conn = sqlite3.connect(self.path[log], isolation_level=None, timeout=10)
            try:
                return conn.execute(sql, params).fetchall()
            finally:
                conn.close()

        return await asyncio.to_thread(run)

    async def close(self) -> None:
        for store in self.store.values():
            await store.close()


class PostgresAudit(AuditBackend):
    """Logs in schemas of their own; raw SQL on a connection of its own."""

    def __init__(self) -> None:
        self.schema: dict[AuditLog, str] = {}
        self.store: dict[AuditLog, Any] = {}

    async def _open(self, schema: str) -> AuditLog:
        from threadline.store.postgres import open_postgres

        store = await open_postgres(POSTGRES_URL, schema=schema)
        log = open_audit_log(store)
        self.schema[log], self.store[log] = schema, store
        return log

    async def fresh(self) -> AuditLog:
        return await self._open(f"t_{uuid.uuid4().hex[:12]}")

    async def another(self, log: AuditLog) -> AuditLog:
        return await self._open(self.schema[log])

    async def reopen(self, log: AuditLog) -> AuditLog:
        await self.store[log].close()
        return await self._open(self.schema[log])

    async def execute(self, log: AuditLog, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        options = f"-c search_path={self.schema[log]}"
        async with await psycopg.AsyncConnection.connect(
            POSTGRES_URL, autocommit=True, options=options
        ) as conn:
            cursor = await conn.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]
            return await cursor.fetchall() if cursor.description else []

    async def close(self) -> None:
        for store in self.store.values():
            await store.close()
        for schema in set(self.schema.values()):
            await drop_schema(schema)


class TestSQLiteAuditLog(AuditLogContract):
    @pytest.fixture
    async def backend(self, tmp_path) -> AsyncIterator[AuditBackend]:
        opened = SQLiteAudit(tmp_path)
        yield opened
        await opened.close()


@pytest.mark.postgres
class TestPostgresAuditLog(AuditLogContract):
    @pytest.fixture
    async def backend(self) -> AsyncIterator[AuditBackend]:
        require_service("PostgreSQL", "127.0.0.1", 5432)
        opened = PostgresAudit()
        yield opened
        await opened.close()


# -- entries and their bytes ----------------------------------------------------------------


def test_the_exports_are_pinned() -> None:
    import threadline.audit

    assert set(threadline.audit.__all__) == {
        "GENESIS", "POLICY_VERSION", "READ_PURPOSES", "AuditEntry", "AuditKey", "AuditLog",
        "AuditTrail", "BrokenTrail", "Checkpoint", "Head", "Report", "StoredEntry",
        "Verification", "audit_key_from_settings", "chain_hash", "extends", "open_audit_log",
        "subject", "verify",
    }  # fmt: skip


def test_an_entry_is_stored_as_compact_json_with_sorted_keys() -> None:
    at = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
    entry = AuditEntry(action="conversation.read", subject="conversation:c-1",
                       actor_kind="agent", actor_id="agent-ana", purpose="case-handling",
                       details={"view": "state", "token_id": "t1"}, at=at, seq=4)  # fmt: skip
    assert entry.to_bytes() == (
        b'{"action":"conversation.read","actor":{"id":"agent-ana","kind":"agent"},'
        b'"at":"2026-12-07T09:30:00.000000+00:00","details":{"token_id":"t1","view":"state"},'
        b'"policy":"' + POLICY_VERSION.encode() + b'","purpose":"case-handling","seq":4,'
        b'"subject":"conversation:c-1","v":1}'
    )
    assert AuditEntry.from_bytes(entry.to_bytes()) == entry


def test_entries_are_under_the_current_policy_version_unless_told() -> None:
    assert POLICY_VERSION.startswith("authz-")  # a digest of security/policies/
    assert read_by(1).policy == POLICY_VERSION
    later = AuditEntry(action="token.issued", subject="token:t", actor_kind="operator",
                       actor_id="cli:root", purpose="token-administration",
                       policy="authz-2")  # fmt: skip
    assert AuditEntry.from_bytes(later.numbered(1).to_bytes()).policy == "authz-2"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("purpose", "because she called about her order"),
        ("actor_id", "Ada Lovelace"),
        ("subject", "conversation"),
        ("action", "read"),
        ("details", {"note": "lives at 1 Main St"}),
        ("details", {"address": {"city": "Chicago"}}),
        ("details", {"Name": "x"}),
    ],
)
def test_prose_and_nested_data_are_refused(field: str, value: Any) -> None:
    fields: dict[str, Any] = {"action": "conversation.read", "subject": "conversation:c-1",
                              "actor_kind": "agent", "actor_id": "agent-ana",
                              "purpose": "case-handling", field: value}  # fmt: skip
    with pytest.raises(ValidationError):
        AuditEntry(**fields)


def test_a_subject_escapes_what_an_id_may_hold() -> None:
    assert subject("conversation", "c 1%") == "conversation:c%201%25"
    assert subject("conversation", "c-1") == "conversation:c-1"


def test_the_chain_hashes_the_previous_hash_the_length_and_the_bytes() -> None:
    data = read_by(1).numbered(1).to_bytes()
    expected = hashlib.sha256(GENESIS + len(data).to_bytes(8, "big") + data).digest()
    assert chain_hash(GENESIS, data) == expected
    assert hashlib.sha256(b"threadline.audit.genesis.v1").digest() == GENESIS


def test_verify_says_where_rows_repeat_and_what_the_report_line_is() -> None:
    key = AuditKey.generate()
    rows, previous = [], GENESIS
    for n in (1, 2, 3):
        data = read_by(n).numbered(n).to_bytes()
        previous = chain_hash(previous, data)
        rows.append(StoredEntry(n, data, previous))
    line = verify(rows, [], key).line()
    assert line == f"audit trail verified: 3 entries, 0 checkpoints, head {previous.hex()[:16]}"
    bad = verify([rows[0], rows[1], rows[1]], [], key)
    assert bad.line() == "audit trail broken at entry 2: entry 2 is stored twice or out of order"


# -- the checkpoint key ------------------------------------------------------------------------


def test_a_checkpoint_survives_its_json_and_a_change_breaks_its_signature() -> None:
    key = AuditKey.generate()
    checkpoint = key.sign(7, bytes(range(32)), datetime.now(UTC))
    assert Checkpoint.from_json(checkpoint.to_json()) == checkpoint
    assert key.signed(checkpoint) and not AuditKey.generate().signed(checkpoint)
    moved = Checkpoint(8, checkpoint.hash, checkpoint.at, checkpoint.signature)
    assert not key.signed(moved)
    with pytest.raises(ValidationError):
        Checkpoint.from_json(b'{"seq": 1}')


def test_the_derived_key_follows_the_token_secret(tmp_path) -> None:
    def key(secret: str) -> AuditKey:
        return audit_key_from_settings(Settings(store=f"sqlite:///{tmp_path}/t.db",
                                                token_secret=secret))  # fmt: skip

    assert key(TOKEN_SECRET).key_id == key(TOKEN_SECRET).key_id
    assert key(TOKEN_SECRET).key_id != key(OTHER_TOKEN_SECRET).key_id
    assert key(TOKEN_SECRET).can_sign


def test_a_key_file_signs_and_its_public_half_only_verifies(tmp_path) -> None:
    made = AuditKey.generate()
    private, public = tmp_path / "audit.pem", tmp_path / "audit.pub"
    private.write_bytes(made.private_pem())
    private.chmod(0o600)
    public.write_bytes(made.public_pem())
    signer = audit_key_from_settings(Settings(audit_key_file=private, token_secret=TOKEN_SECRET))
    checkpoint = signer.sign(1, GENESIS, datetime.now(UTC))
    verifier = audit_key_from_settings(Settings(audit_key_file=public))
    assert verifier.signed(checkpoint) and not verifier.can_sign
    with pytest.raises(ConfigurationError, match="private key"):
        verifier.sign(1, GENESIS, datetime.now(UTC))
    private.chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        audit_key_from_settings(Settings(audit_key_file=private))


def test_production_without_a_key_file_or_a_secret_to_derive_from_is_refused(tmp_path) -> None:
    token_key = tmp_path / "token.pub"
    token_key.write_bytes(AuditKey.generate().public_pem())  # an Ed25519 public token key
    settings = Settings(store=f"sqlite:///{tmp_path}/p.db", env="production",
                        token_key_file=token_key)  # fmt: skip
    with pytest.raises(ConfigurationError, match="set THREADLINE_AUDIT_KEY_FILE"):
        audit_key_from_settings(settings)
    with pytest.raises(ConfigurationError, match="THREADLINE_TOKEN_SECRET"):
        audit_key_from_settings(Settings(store=f"sqlite:///{tmp_path}/p.db", env="production"))


async def test_the_service_refuses_to_start_with_an_audit_key_that_cannot_sign(tmp_path) -> None:
    public = tmp_path / "audit.pub"
    public.write_bytes(AuditKey.generate().public_pem())
    settings = Settings(store=f"sqlite:///{tmp_path}/p.db", token_secret=TOKEN_SECRET,
                        audit_key_file=public)  # fmt: skip
    with pytest.raises(ConfigurationError, match="needs the private key"):
        async with running(settings):
            pass


# -- what the service records ----------------------------------------------------------------


@pytest.fixture
async def client(any_store) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(token_secret=TOKEN_SECRET), store=any_store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            c.app = app  # type: ignore[attr-defined]
            chat = bearer(app, "web-chat", "adapter:chat")
            started = {"type": "conversation.started", "payload": {"origin": "chat"},
                       "channel": "chat", "actor": MAYA, "customer_id": "cus-maya"}  # fmt: skip
            created = await c.post("/conversations/conv-1/events", json={"events": [started]},
                                   headers={"Idempotency-Key": "k1", **chat})  # fmt: skip
            assert created.status_code == 201, created.text
            yield c


async def entries(client: httpx.AsyncClient) -> list[AuditEntry]:
    return [row.entry for row in await service_of(client.app).audit.log.read()]  # type: ignore[attr-defined]


async def test_a_staff_read_of_the_events_is_recorded_with_the_policy_version(client) -> None:
    sam = bearer(client.app, "sup-sam", "supervisor")
    response = await client.get("/conversations/conv-1/events", headers=sam)
    assert response.status_code == 200
    (entry,) = await entries(client)
    assert (entry.action, entry.subject, entry.actor_kind, entry.actor_id) == (
        "conversation.read", "conversation:conv-1", "supervisor", "sup-sam",
    )  # fmt: skip
    assert (entry.purpose, entry.policy, entry.details["view"]) == (
        "supervision", POLICY_VERSION, "events",
    )  # fmt: skip
    assert (await service_of(client.app).audit.verify()).ok  # type: ignore[attr-defined]


async def test_a_staff_read_of_the_state_is_recorded_with_the_roles_purpose(client) -> None:
    root = bearer(client.app, "root", "admin")
    assert (await client.get("/conversations/conv-1", headers=root)).status_code == 200
    (entry,) = await entries(client)
    assert (entry.actor_kind, entry.purpose, entry.details["view"]) == (
        "admin", "administration", "state",
    )  # fmt: skip


async def test_the_desks_packet_read_is_recorded(client) -> None:
    sam = bearer(client.app, "sup-sam", "supervisor")
    assert (await client.get("/conversations/conv-1/packet", headers=sam)).status_code == 200
    (entry,) = await entries(client)
    assert (entry.action, entry.subject, entry.details["view"]) == (
        "conversation.read", "conversation:conv-1", "packet",
    )  # fmt: skip


async def test_a_staff_stream_of_the_conversation_is_recorded(any_store) -> None:
    from tests.conftest import LiveServer
    from threadline.api.auth import bearer_subprotocols

    app = create_app(Settings(token_secret=TOKEN_SECRET), store=any_store)
    async with LiveServer(app) as live:
        chat = bearer(app, "web-chat", "adapter:chat")
        started = {"type": "conversation.started", "payload": {"origin": "chat"},
                   "channel": "chat", "actor": MAYA, "customer_id": "cus-maya"}  # fmt: skip
        async with httpx.AsyncClient(base_url=live.http) as http:
            await http.post("/conversations/conv-1/events", json={"events": [started]},
                            headers={"Idempotency-Key": "k1", **chat})  # fmt: skip
        token = service_of(app).tokens.issue(
            "sup-sam", ["supervisor"], __import__("datetime").timedelta(hours=1), {}
        )
        import websockets

        async with websockets.connect(
            f"{live.ws}/conversations/conv-1/stream", subprotocols=bearer_subprotocols(token.token)
        ) as ws:
            await ws.recv()  # the conversation's first event
        rows = await service_of(app).audit.log.read()
    assert [(r.entry.action, r.entry.details["view"]) for r in rows] == [
        ("conversation.read", "stream")
    ]


async def test_a_customers_own_reads_and_an_adapters_are_not_recorded(client) -> None:
    maya = bearer(client.app, "cus-maya", "customer", customer="cus-maya")
    chat = bearer(client.app, "web-chat", "adapter:chat")
    for headers in (maya, chat):
        for path in ("/conversations/conv-1/events", "/conversations/conv-1"):
            assert (await client.get(path, headers=headers)).status_code == 200
    assert await entries(client) == []


async def test_a_refused_read_records_nothing(client) -> None:
    ana = bearer(client.app, "agent-ana", "agent", queues=["elsewhere"])
    assert (await client.get("/conversations/conv-1/events", headers=ana)).status_code == 403
    assert await entries(client) == []


async def test_a_merge_and_an_unmerge_are_recorded_without_the_reason(any_store) -> None:
    trail = AuditTrail(open_audit_log(any_store), AuditKey.generate())
    identity = Identity(any_store, await open_directory(any_store), audit=trail)
    kim = Actor("human", "sup-kim")
    await identity.link("cus-dup", email("ada.l@example.com"), verified=False, method="caller_id",
                        linked_by="test", reason="test", actor=kim)  # fmt: skip
    merge_id = await identity.merge("cus-dup", "cus-ada", reason="same person, Ada L.",
                                    by="sup-kim", actor=kim)  # fmt: skip
    await identity.unmerge("cus-dup", reason="two people", by="sup-kim", actor=kim)
    rows = await trail.log.read()
    merged, unmerged = (row.entry for row in rows)
    assert (merged.action, merged.subject, merged.actor_id, merged.purpose) == (
        "customer.merged", "customer:cus-dup", "sup-kim", "identity-merge",
    )  # fmt: skip
    assert merged.details["into_customer"] == "customer:cus-ada"
    assert merged.details["merge_id"] == merge_id and unmerged.action == "customer.unmerged"
    assert all(b"Ada" not in row.data and b"example.com" not in row.data for row in rows)


async def test_an_admin_reload_of_the_business_is_recorded(tmp_path) -> None:
    pack = tmp_path / "pack"
    shutil.copytree(NORTHWIND, pack, ignore=shutil.ignore_patterns("__pycache__"))
    settings = Settings(store=f"sqlite:///{tmp_path / 'r.db'}", business=pack,
                        token_secret=TOKEN_SECRET)  # fmt: skip
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            reloaded = await c.post("/admin/business/reload", headers=bearer(app, "root", "admin"))
            assert reloaded.status_code == 200, reloaded.text
        (row,) = await service_of(app).audit.log.read()
    entry = row.entry
    assert (entry.action, entry.subject, entry.actor_id) == (
        "business.reloaded", f"business:{reloaded.json()['business']}", "root",
    )  # fmt: skip


async def test_a_change_of_policy_is_recorded_once_when_the_service_starts(tmp_path) -> None:
    settings = Settings(store=f"sqlite:///{tmp_path / 'p.db'}", token_secret=TOKEN_SECRET)
    earlier = AuditEntry(action="token.issued", subject=subject("token", "jti-1"),
                         actor_kind="operator", actor_id="cli:ops", purpose="token-administration",
                         policy="authz-000000000000")  # fmt: skip
    async with running(settings) as service:  # a trail whose last entry was under other rules
        assert await service.audit.log.read() == []  # a new trail: nothing changed
        await service.audit.log.append([earlier])
    for _ in range(2):  # started again under this package's policies, twice
        async with running(settings) as service:
            rows = await service.audit.log.read()
            report = await service.audit.verify()
    assert [row.entry.action for row in rows] == ["token.issued", "policy.changed"]
    changed = rows[1].entry
    assert (changed.subject, changed.policy, changed.actor_kind, changed.purpose) == (
        f"policy:{POLICY_VERSION}", POLICY_VERSION, "system", "policy-administration",
    )  # fmt: skip
    assert changed.details["previous_policy"] == "authz-000000000000"
    files = [str(f).split(":")[0] for f in changed.details["files"]]  # type: ignore[union-attr]
    assert "40-agent.cedar" in files and "threadline.cedarschema" in files
    assert report.ok

"""Erasing a customer destroys their data keys and those of every identity that became them,
purges what was derived from their data, and leaves every stream replayable; the access
export gathers everything held of one customer and nothing of anyone else.

The canary tests plant unique strings for one customer on every channel (a chat, a call's
transcript and slot, an in-person note, an anonymous chat later identified, a look-up's
reason) and for another customer, erase the first through the admin API, then scan every
byte the store holds (the SQLite file and its WAL; a dump of every PostgreSQL table) and
the service's log output.
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from tests.conftest import POSTGRES_URL, TOKEN_SECRET, bearer
from tests.stored_bytes import stored_bytes
from threadline.api.app import create_app
from threadline.api.deps import service_of
from threadline.channels.chat.client import ChatClient
from threadline.cli import main
from threadline.core.catalogue import ERASED
from threadline.core.events import Actor, Event
from threadline.engine.conversations import Conversations
from threadline.identity.fold import customer_stream
from threadline.identity.identifiers import Identifier, parse
from threadline.security.master_key import key_provider_from_settings
from threadline.service.parts import Service
from threadline.settings import Settings
from threadline.store.sqlite import SQLiteStore, open_sqlite
from threadline.testing.live import LiveServer

PROBLEM = "application/problem+json"
STAFF = Actor("human", "agent-ana")


def canary(label: str) -> str:
    return f"canary-{label}-{uuid.uuid4().hex[:12]}"


def holds(written: bytes, secret: str | bytes) -> bool:
    """Whether ``written`` holds ``secret`` raw, as hex (a dump's bytea) or as base64."""
    raw = secret.encode() if isinstance(secret, str) else secret
    return any(form in written for form in (raw, raw.hex().encode(), base64.b64encode(raw)))


@dataclass
class Planted:
    """One customer's conversations and the canaries planted in them."""

    customer_id: str
    phone: str
    canaries: dict[str, str] = field(default_factory=dict)
    conversations: dict[str, str] = field(default_factory=dict)
    visitor: str | None = None


def settings(tmp_path: Path) -> Settings:
    return Settings(token_secret=TOKEN_SECRET, snapshot_every=3, data_dir=tmp_path / "data")


@pytest.fixture
async def server(any_store: Any, tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with LiveServer(create_app(settings(tmp_path), store=any_store)) as live:
        yield live


async def chat(server: LiveServer, token: str, text: str) -> str:
    """Say ``text`` on a new chat as ``token``'s customer; the conversation's id once the bot
    has answered."""
    async with ChatClient.connect(f"{server.ws}/chat/ws", token=token) as client:
        await client.say(text)
        await client.wait_for(lambda e: e["event"] == "message.sent", timeout=15)
        return str(client.conversation_id)


def call(cid: str, customer: str, said: str, slot: str) -> list[Event]:
    """A call of ``customer``: what they said, and the order number the bot heard."""
    who, leg = Actor("customer", customer), f"{cid}-voice"
    return [
        Event(cid, "conversation.started", {"origin": "voice"}, channel="voice", actor=who,
              customer_id=customer),
        Event(cid, "leg.started", {"leg_id": leg, "channel": "voice"}, channel="voice",
              leg_id=leg, actor=who, customer_id=customer),
        Event(cid, "utterance.transcribed", {"text": said, "confidence": 0.9, "start_ms": 0,
              "end_ms": 1200}, channel="voice", leg_id=leg, actor=who, customer_id=customer),
        Event(cid, "slot.filled", {"name": "order_number", "value": slot}, channel="voice",
              actor=Actor("bot", "shop-bot"), customer_id=customer),
    ]  # fmt: skip


def visit(cid: str, customer: str, note: str) -> list[Event]:
    """A visit to a store, where an associate noted something about ``customer``."""
    who, leg = Actor("customer", customer), f"{cid}-visit"
    return [
        Event(cid, "conversation.started", {"origin": "in_person"}, channel="in_person",
              actor=who, customer_id=customer),
        Event(cid, "leg.started", {"leg_id": leg, "channel": "in_person"}, channel="in_person",
              leg_id=leg, actor=who, customer_id=customer),
        Event(cid, "note.added", {"author_id": "assoc-priya", "text": note}, channel="in_person",
              actor=Actor("human", "assoc-priya"), customer_id=customer),
    ]  # fmt: skip


async def plant(server: LiveServer, label: str, phone: str, *, anonymous: bool) -> Planted:
    """A customer with a chat, a call, a visit, a phone and a look-up; with ``anonymous``, an
    anonymous chat too that a sign-in identifies as them."""
    service = service_of(server.app)
    planted = Planted(f"cus-{label}-{uuid.uuid4().hex[:8]}", phone)
    customer = planted.customer_id
    said = planted.canaries
    said.update({what: canary(f"{label}-{what}") for what in
                 ("chat", "call", "slot", "note", "lookup")})  # fmt: skip
    token = bearer(server.app, customer, "customer", customer=customer)["Authorization"][7:]
    planted.conversations["chat"] = await chat(server, token, f"hello, {said['chat']}")
    cid = f"call-{uuid.uuid4().hex[:8]}"
    await service.conversations.record(cid, call(cid, customer, said["call"], said["slot"]))
    planted.conversations["call"] = cid
    cid = f"visit-{uuid.uuid4().hex[:8]}"
    await service.conversations.record(cid, visit(cid, customer, said["note"]))
    planted.conversations["visit"] = cid
    await service.identity.link(customer, parse("phone", phone), verified=False, method="typed",
                                linked_by="agent-ana", reason="told us", actor=STAFF)  # fmt: skip
    await service.identity.record(customer, "customer.looked_up",
                                  {"looked_up_by": "agent-ana", "reason": said["lookup"],
                                   "kind": "phone", "customer_id": customer}, STAFF)  # fmt: skip
    if anonymous:
        said["visitor"] = canary(f"{label}-visitor")
        async with httpx.AsyncClient() as http:
            session = (await http.post(f"{server.http}/chat/session")).json()
        planted.visitor = session["customer_id"]
        cid = await chat(server, session["token"], f"hi, {said['visitor']}")
        planted.conversations["visitor"] = cid
        # What POST /chat/verify does once the identity provider vouched for the visitor.
        device = Identifier("device", planted.visitor)
        await service.identity.link(customer, device, verified=True, method="oidc",
                                    linked_by="idp", reason="ID token",
                                    actor=Actor("customer", customer))  # fmt: skip
        await service.chat.sign_in(cid, planted.visitor, customer, "oidc", "idp")
    return planted


async def settled(service: Service) -> None:
    """Until the bot and every consumer have nothing left to append."""
    seen = -1
    async with asyncio.timeout(30):
        while True:
            await asyncio.sleep(0.3)
            page = await service.store.read_all(0, 100_000)
            if len(page) == seen:
                await service.identity.projection.catch_up()
                return
            seen = len(page)


async def wrapped_keys(store: Any, schema: str, owners: list[str]) -> list[bytes]:
    """The wrapped data keys of ``owners``, straight from the database."""
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as conn:
            rows = conn.execute(
                "SELECT wrapped FROM data_keys WHERE owner IN (SELECT value FROM json_each(?))",
                (orjson.dumps(owners).decode(),),
            ).fetchall()
    else:
        async with await psycopg.AsyncConnection.connect(
            POSTGRES_URL, autocommit=True, options=f"-c search_path={schema}"
        ) as conn:
            cursor = await conn.execute(
                "SELECT wrapped FROM data_keys WHERE owner = ANY(%s)", (owners,)
            )
            rows = await cursor.fetchall()
    return [bytes(row[0]) for row in rows]


def owners_of(planted: Planted) -> list[str]:
    owners = [planted.customer_id, *(f"conversation:{c}" for c in planted.conversations.values())]
    return owners + ([planted.visitor] if planted.visitor else [])


async def timeline_texts(service: Service, cid: str) -> list[str]:
    """Every personal-data text of the conversation, as read now."""
    texts = []
    for event in await service.conversations.timeline(cid):
        for name in ("text", "value", "note", "heard_text"):
            value = event.payload.get(name)
            if isinstance(value, str) and event.type != "intent.detected":
                texts.append(value)
    return texts


async def test_erasure_leaves_no_trace_of_the_customer_and_every_stream_replays(
    server: LiveServer, any_store: Any, pg_schema: str, capfd: Any
) -> None:
    service = service_of(server.app)
    ada = await plant(server, "ada", "+14155550142", anonymous=True)
    bo = await plant(server, "bo", "+14155550199", anonymous=False)
    await settled(service)
    ada_keys = await wrapped_keys(any_store, pg_schema, owners_of(ada))
    bo_keys = await wrapped_keys(any_store, pg_schema, owners_of(bo))
    before = await stored_bytes(any_store, pg_schema)
    # Encrypted at rest from the start; what the scan looks for is there to be found.
    assert [c for c in (*ada.canaries.values(), *bo.canaries.values()) if holds(before, c)] == []
    assert ada_keys and all(holds(before, key) for key in ada_keys)
    # The identity directory finds identifiers by a blind index and seals their values.
    assert not holds(before, ada.phone) and not holds(before, bo.phone)
    assert ada.visitor is not None and service.conversations.cached(ada.conversations["chat"])

    async with httpx.AsyncClient(base_url=server.http) as http:
        admin = bearer(server.app, "root", "admin")
        erased = await http.post(f"/admin/customers/{ada.customer_id}/erase", headers=admin)
    assert erased.status_code == 200, erased.text
    body = erased.json()
    assert body["customer_id"] == ada.customer_id
    assert set(body["conversations"]) == set(ada.conversations.values())
    assert ada.visitor in body["identities"]
    assert body["keys_destroyed"] == len(ada_keys) and body["snapshots_deleted"] >= 1
    await settled(service)

    # No trace in the store's files, its dump, or the service's output.
    written = await stored_bytes(any_store, pg_schema) + "".join(capfd.readouterr()).encode()
    assert [label for label, c in ada.canaries.items() if holds(written, c)] == []
    assert [key for key in ada_keys if holds(written, key)] == []
    assert not holds(written, ada.phone)
    assert await wrapped_keys(any_store, pg_schema, owners_of(ada)) == []
    assert all(holds(written, key) for key in bo_keys)  # another customer's keys stay

    # Every stream still replays, from snapshots and from the log alone; erased data reads
    # as erased, the other customer's as it was.
    fresh = Conversations(any_store)
    for entry in list(service.index):
        await fresh.rehydrate(entry.conversation_id)
        await fresh.rehydrate(entry.conversation_id, snapshots=False)
    for cid in ada.conversations.values():
        texts = await timeline_texts(service, cid)
        assert not [t for t in texts if "canary" in t], (cid, texts)
        assert ERASED in texts
        assert service.conversations.cached(cid) is None
    preview = service.index.get(ada.conversations["chat"])
    assert preview is not None and preview.last_message is not None
    assert "canary" not in preview.last_message.text
    bo_texts = [t for cid in bo.conversations.values() for t in await timeline_texts(service, cid)]
    assert {bo.canaries[k] for k in ("call", "slot", "note")} <= set(bo_texts)
    assert any(bo.canaries["chat"] in t for t in bo_texts)

    history = await service.identity.history(ada.customer_id)
    assert history[-1].type == "customer.erased"
    looked_up = [e for e in history if e.type == "customer.looked_up"]
    assert looked_up[0].payload["reason"] == ERASED
    await service.identity.projection.rebuild()  # the directory folds the erased stream again
    assert await service.identity.resolve("phone", ada.phone) is None
    found = await service.identity.resolve("phone", bo.phone)
    assert found is not None and found.customer_id == bo.customer_id
    entries = [row.entry for row in await service.audit.log.read(1, 1000)]
    assert [e.subject for e in entries if e.action == "customer.erased"] == [
        f"customer:{ada.customer_id}"
    ]


async def test_only_an_admin_erases_and_a_bad_or_unknown_id_is_refused(
    server: LiveServer,
) -> None:
    ada = await plant(server, "ada", "+14155550142", anonymous=False)
    async with httpx.AsyncClient(base_url=server.http) as http:
        for headers in (bearer(server.app, "agent-ana", "agent", queues=["orders"]),
                        bearer(server.app, "sup-sam", "supervisor")):  # fmt: skip
            refused = await http.post(f"/admin/customers/{ada.customer_id}/erase",
                                      headers=headers)  # fmt: skip
            assert refused.status_code == 403, refused.text
            assert refused.headers["content-type"] == PROBLEM
        anonymous = await http.post(f"/admin/customers/{ada.customer_id}/erase")
        assert anonymous.status_code == 401
        admin = bearer(server.app, "root", "admin")
        unknown = await http.post("/admin/customers/cus-nobody/erase", headers=admin)
        assert unknown.status_code == 404 and unknown.headers["content-type"] == PROBLEM
        bad = await http.post("/admin/customers/cus%20ada/erase", headers=admin)
        assert bad.status_code == 422 and bad.json()["type"] == "urn:threadline:problem:validation"
        again = await http.post(f"/admin/customers/{ada.customer_id}/erase", headers=admin)
        assert again.status_code == 200
        twice = await http.post(f"/admin/customers/{ada.customer_id}/erase", headers=admin)
    assert twice.status_code == 200 and twice.json()["keys_destroyed"] == 0  # nothing left


async def test_the_export_holds_the_customer_and_nobody_else(
    server: LiveServer, any_store: Any
) -> None:
    service = service_of(server.app)
    ada = await plant(server, "ada", "+14155550142", anonymous=True)
    bo = await plant(server, "bo", "+14155550199", anonymous=False)
    await settled(service)
    async with httpx.AsyncClient(base_url=server.http) as http:
        refused = await http.get(f"/admin/customers/{ada.customer_id}/export",
                                 headers=bearer(server.app, "sup-sam", "supervisor"))  # fmt: skip
        assert refused.status_code == 403 and refused.headers["content-type"] == PROBLEM
        admin = bearer(server.app, "root", "admin")
        exported = await http.get(f"/admin/customers/{ada.customer_id}/export", headers=admin)
        unknown = await http.get("/admin/customers/cus-nobody/export", headers=admin)
    assert unknown.status_code == 404
    assert exported.status_code == 200, exported.text
    bundle = exported.json()
    text = exported.content
    assert bundle["customer_id"] == ada.customer_id
    assert [label for label, c in ada.canaries.items() if c.encode() not in text] == []
    assert [label for label, c in bo.canaries.items() if c.encode() in text] == []
    assert bo.customer_id.encode() not in text and bo.phone.encode() not in text
    assert {c["conversation_id"] for c in bundle["conversations"]} == set(
        ada.conversations.values()
    )
    assert bundle["identities"]["anonymous"] == [ada.visitor]
    assert {i["value"] for i in bundle["identifiers"]} == {ada.phone, ada.visitor}
    profile = bundle["profile"][ada.customer_id]
    assert "customer.looked_up" in {e["type"] for e in profile}
    assert all(e["customer_id"] in {ada.customer_id, ada.visitor}
               for c in bundle["conversations"] for e in c["events"])  # fmt: skip
    entries = [row.entry for row in await service.audit.log.read(1, 1000)]
    assert [e.action for e in entries if e.subject == f"customer:{ada.customer_id}"] == [
        "customer.exported"
    ]


async def test_a_conversation_later_identified_as_another_customer_is_not_theirs(
    server: LiveServer,
) -> None:
    """A visitor chat that a sign-in gave to Bo stays out of Ada's export and erasure,
    even though its first events name the same visitor id Ada's search starts from."""
    service = service_of(server.app)
    ada = await plant(server, "ada", "+14155550142", anonymous=False)
    bo = await plant(server, "bo", "+14155550199", anonymous=True)
    assert bo.visitor is not None
    found = await http_export(server, ada.customer_id)
    assert bo.conversations["visitor"] not in {c["conversation_id"] for c in found["conversations"]}
    assert service.index.of_customer(bo.visitor)  # the index still lists it under the visitor
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.get(f"/admin/customers/{bo.visitor}/export",
                                  headers=bearer(server.app, "root", "admin"))  # fmt: skip
    assert response.status_code == 404  # the visitor id names nobody now: Bo is asked for


async def http_export(server: LiveServer, customer_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.get(f"/admin/customers/{customer_id}/export",
                                  headers=bearer(server.app, "root", "admin"))  # fmt: skip
    assert response.status_code == 200, response.text
    bundle: dict[str, Any] = response.json()
    return bundle


# -- the command line ----------------------------------------------------------------------


@pytest.fixture
async def stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Planted, Planted]:
    """Two customers planted by a service that has stopped since; the CLI's settings."""
    path = tmp_path / "cli.db"
    store = await open_sqlite(path)
    try:
        async with LiveServer(create_app(settings(tmp_path), store=store)) as live:
            ada = await plant(live, "ada", "+14155550142", anonymous=True)
            bo = await plant(live, "bo", "+14155550199", anonymous=False)
            await settled(service_of(live.app))
    finally:
        await store.close()
    monkeypatch.setenv("THREADLINE_STORE", f"sqlite:///{path}")
    monkeypatch.setenv("THREADLINE_TOKEN_SECRET", TOKEN_SECRET)
    monkeypatch.setenv("THREADLINE_DATA_DIR", str(tmp_path / "data"))
    return ada, bo


async def in_thread(*argv: str) -> int:
    """``threadline argv`` (it runs its own event loop, so not on this one)."""
    return await asyncio.to_thread(main, list(argv))


async def test_the_cli_erases_a_customer_of_a_stopped_service(
    stopped: tuple[Planted, Planted], tmp_path: Path, capsys: Any
) -> None:
    ada, bo = stopped
    with sqlite3.connect(tmp_path / "cli.db") as conn:
        keys_before = [bytes(row[0]) for row in conn.execute(
            "SELECT wrapped FROM data_keys WHERE owner IN (SELECT value FROM json_each(?))",
            (orjson.dumps(owners_of(ada)).decode(),))]  # fmt: skip
    assert keys_before
    assert await in_thread("customers", "erase", ada.customer_id, "--yes") == 0
    out, err = capsys.readouterr()
    assert err == "" and out.count("\n") == 1
    assert out.startswith(f"erased {ada.customer_id}: ") and "data keys destroyed" in out
    written = b"".join(p.read_bytes() for p in tmp_path.glob("cli.db*"))
    assert [label for label, c in ada.canaries.items() if holds(written, c)] == []
    assert not holds(written, ada.phone)
    assert [key for key in keys_before if holds(written, key)] == []
    keys = key_provider_from_settings(Settings(token_secret=TOKEN_SECRET))
    store = await open_sqlite(tmp_path / "cli.db", keys=keys)
    try:
        conversations = Conversations(store)
        for cid in ada.conversations.values():
            assert "canary" not in " ".join(await timeline_texts_of(conversations, cid))
        bo_texts = " ".join(await timeline_texts_of(conversations, bo.conversations["visit"]))
        assert bo.canaries["note"] in bo_texts
        events = await store.read(customer_stream(ada.customer_id))
        assert events[-1].type == "customer.erased"
    finally:
        await store.close()


async def timeline_texts_of(conversations: Conversations, cid: str) -> list[str]:
    return [str(e.payload.get("text", e.payload.get("value", "")))
            for e in await conversations.timeline(cid)]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("customers", "erase", "cus ada", "--yes"), "'cus ada' is not a customer id"),
        (("customers", "erase", "cus-nobody", "--yes"), "no customer cus-nobody"),
        (("customers", "erase", "cus-nobody"), "pass --yes to erase without asking"),
        (("customers", "export", "customer:x"), "is not a customer id"),
    ],
)
async def test_the_cli_refuses_bad_input_in_one_line(
    stopped: tuple[Planted, Planted], capsys: Any, argv: tuple[str, ...], message: str
) -> None:
    assert await in_thread(*argv) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("threadline: error: ") and message in err


async def test_the_cli_exports_one_customer(
    stopped: tuple[Planted, Planted], tmp_path: Path, capsys: Any
) -> None:
    ada, bo = stopped
    target = tmp_path / "ada.json"
    assert await in_thread("customers", "export", ada.customer_id, "-o", str(target)) == 0
    out, _ = capsys.readouterr()
    assert out.startswith(f"wrote the data of {ada.customer_id} to {target}")
    text = target.read_bytes()
    assert [label for label, c in ada.canaries.items() if c.encode() not in text] == []
    assert [label for label, c in bo.canaries.items() if c.encode() in text] == []
    assert await in_thread("customers", "export", bo.customer_id) == 0
    bundle = orjson.loads(capsys.readouterr().out)
    assert bundle["customer_id"] == bo.customer_id


async def test_the_bot_worker_answers_on_after_its_customer_is_erased(tmp_path: Path) -> None:
    """The bot in its own process decrypts what it reads with the service's master key,
    drops the erased customer's keys and states when told, and answers on."""
    path = tmp_path / "worker.db"
    worker_settings = Settings(store=f"sqlite:///{path}", token_secret=TOKEN_SECRET,
                               bot_process=True, data_dir=tmp_path / "data")  # fmt: skip
    app = create_app(worker_settings)
    async with LiveServer(app) as live:
        customer = f"cus-ada-{uuid.uuid4().hex[:8]}"
        token = bearer(app, customer, "customer", customer=customer)["Authorization"][7:]
        secret = canary("worker")
        async with ChatClient.connect(f"{live.ws}/chat/ws", token=token) as client:
            await client.say(f"where is my order 1042? {secret}")
            first = await client.wait_for(lambda e: e["event"] == "message.sent", timeout=20)
            assert first["actor"] == "bot"
            cid = client.conversation_id
        await settled(service_of(app))
        async with httpx.AsyncClient(base_url=live.http) as http:
            erased = await http.post(f"/admin/customers/{customer}/erase",
                                     headers=bearer(app, "root", "admin"))  # fmt: skip
        assert erased.status_code == 200, erased.text
        async with ChatClient.connect(f"{live.ws}/chat/ws", conversation_id=cid,
                                      token=token) as client:  # fmt: skip
            said = await client.say("when are you open on Sunday?")
            again = await client.wait_for(
                lambda e: e["event"] == "message.sent" and e["seq"] > said, timeout=20
            )
        assert again["actor"] == "bot"
        process = service_of(app).bot_worker.process
        assert process is not None and process.returncode is None
        texts = await timeline_texts(service_of(app), cid)
        assert ERASED in texts and not [t for t in texts if secret in t]
    written = b"".join(p.read_bytes() for p in tmp_path.glob("worker.db*"))
    assert not holds(written, secret)

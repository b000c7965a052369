"""The bot worker process is supervised: killed mid-load, it is started again, the
service acknowledges customers all along, and every acknowledged message gets exactly
one answer (or a handoff) once it is back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest
from structlog.testing import capture_logs

from tests.conftest import POSTGRES_URL, TOKEN_SECRET, LiveServer, require_service
from threadline.agents.supervision import RestartPolicy, describe_exit
from threadline.api.app import create_app
from threadline.api.deps import service_of
from threadline.channels.chat.client import ChatClient
from threadline.core.events import EventRecord
from threadline.settings import Settings
from threadline.store import open_store

pytestmark = pytest.mark.slow

#: The Northwind pack's agent, as its events name it.
AGENT_ID = "northwind-bot"
CUSTOMERS = 24
#: Seconds between one customer's messages (a customer types on while the bot is away).
INTERVAL = 0.6
BEFORE_KILL = 4.0
AFTER_KILL = 12.0
#: The bench's questions: each one the bot answers (none hands off on its own).
QUESTIONS = (
    "where is my order 1042?",
    "when are you open on Sunday in Oakland?",
    "can I book a repair tomorrow?",
    "what are the hours at Market Street?",
    "track order 1057 please",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_pid(service_pid: int) -> int:
    """The bot worker: the service's child running ``threadline.agents.worker``."""
    for task in Path(f"/proc/{service_pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(OSError):
                if b"threadline.agents.worker" in Path(f"/proc/{child}/cmdline").read_bytes():
                    return int(child)
    raise AssertionError("the service runs no bot worker")


@contextlib.asynccontextmanager
async def serve(store: str, output: Path):
    """``threadline serve`` (which runs the bot in its worker process) on a free port."""
    port = free_port()
    env = {**os.environ, "THREADLINE_STORE": store, "THREADLINE_TOKEN_SECRET": TOKEN_SECRET}
    env.pop("THREADLINE_BOT_PROCESS", None)
    with output.open("wb") as out:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "threadline.cli", "serve", "--port", str(port),
            stdout=out, stderr=out, env=env,
        )  # fmt: skip
    base = f"127.0.0.1:{port}"
    try:
        async with asyncio.timeout(30), httpx.AsyncClient() as http:
            while True:
                try:
                    if (await http.get(f"http://{base}/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert child.returncode is None, output.read_text()
                await asyncio.sleep(0.1)
        yield child, base
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            await child.wait()


@dataclass
class Load:
    """What the customers did: every acknowledged message, as (conversation, seq)."""

    acked: list[tuple[str, int]] = field(default_factory=list)
    answered: Counter[str] = field(default_factory=Counter)  # conversation -> bot replies
    handed_off: set[str] = field(default_factory=set)
    slowest_ack: float = 0.0


async def customer(base: str, token: str, load: Load, stop: asyncio.Event) -> None:
    """Say something every INTERVAL, each acknowledged within 5 s, whether or not the
    bot has answered yet; then wait for the bot to have answered everything."""
    async with ChatClient.connect(f"ws://{base}/chat/ws", token=token) as chat:
        conversation_id = chat.conversation_id
        await asyncio.sleep(random.random() * INTERVAL)
        sent = 0

        def read() -> None:
            while not chat.events.empty():
                event = chat.events.get_nowait()
                if event["event"] == "message.sent" and event["actor"] == "bot":
                    load.answered[conversation_id] += 1
                elif event["event"] == "handoff.requested":
                    load.handed_off.add(conversation_id)

        while not stop.is_set() and conversation_id not in load.handed_off:
            began = time.monotonic()
            seq = await chat.say(QUESTIONS[sent % len(QUESTIONS)], timeout=5)
            load.slowest_ack = max(load.slowest_ack, time.monotonic() - began)
            load.acked.append((conversation_id, seq))
            sent += 1
            read()
            await asyncio.sleep(INTERVAL)
        async with asyncio.timeout(30):
            while load.answered[conversation_id] < sent and conversation_id not in load.handed_off:
                await asyncio.sleep(0.1)
                read()


async def read_log(store_url: str, conversation_ids: set[str]) -> list[EventRecord]:
    """The conversations' events, as the service left them."""
    store = await open_store(store_url)
    try:
        return [record for c in sorted(conversation_ids) for record in await store.read(c)]
    finally:
        await store.close()


async def kill_the_worker_under_load(store_url: str, output: Path) -> None:
    async with serve(store_url, output) as (service, base):
        async with httpx.AsyncClient(base_url=f"http://{base}") as http:
            tokens = [(await http.post("/chat/session")).json()["token"] for _ in range(CUSTOMERS)]
            load, stop = Load(), asyncio.Event()
            customers = [asyncio.create_task(customer(base, t, load, stop)) for t in tokens]
            await asyncio.sleep(BEFORE_KILL)
            first = worker_pid(service.pid)
            answered_before = sum(load.answered.values())
            os.kill(first, signal.SIGKILL)
            killed_at = datetime.now(UTC)
            states: list[str] = []
            ends = time.monotonic() + AFTER_KILL
            while time.monotonic() < ends:
                report = (await http.get("/health")).json()["bot_worker"]
                states.append(report["state"])
                await asyncio.sleep(0.05)
            stop.set()
            await asyncio.gather(*customers)
            health = await http.get("/health")
        second = worker_pid(service.pid)
    assert answered_before > 0, "the bot answered nothing before the kill"
    assert health.status_code == 200, health.text
    report = health.json()["bot_worker"]
    assert report["restarts"] == 1 and report["last_failure"] == describe_exit(-signal.SIGKILL)
    assert "restarting" in states and states[-1] == "running"
    assert second != first
    text = output.read_text()
    assert "the bot worker process died" in text and "killed by SIGKILL" in text
    assert load.slowest_ack < 5.0

    log = await read_log(store_url, {conversation_id for conversation_id, _ in load.acked})
    by_seq = {(r.conversation_id, r.seq): r for r in log}
    answers: Counter[str] = Counter()  # customer event id -> bot messages in reply to it
    handoffs: set[str] = set()
    first_handoff: dict[str, int] = {}
    for r in log:
        if r.actor_id == AGENT_ID and r.idempotency_key.startswith(f"{AGENT_ID}/"):
            anchor = r.idempotency_key.split("/")[1]
            if r.type == "message.sent":
                answers[anchor] += 1
            elif r.type == "handoff.requested":
                handoffs.add(anchor)
                first_handoff.setdefault(r.conversation_id, r.seq)
    unanswered, twice, resumed = [], [], []
    for conversation_id, seq in load.acked:
        message = by_seq[(conversation_id, seq)]
        assert message.type == "message.received" and message.actor_kind == "customer"
        if seq > first_handoff.get(conversation_id, seq):
            continue  # a person has the conversation: the handoff answers it
        count = answers[message.event_id]
        if count > 1:
            twice.append(message.event_id)
        elif count == 0 and message.event_id not in handoffs:
            unanswered.append(message.event_id)
        assert message.recorded_at is not None
        if message.recorded_at > killed_at:  # the old worker never saw it
            resumed += [
                r.recorded_at
                for r in log
                if r.type == "message.sent"
                and r.idempotency_key.startswith(f"{AGENT_ID}/{message.event_id}/")
            ]
    assert len(load.acked) > CUSTOMERS * (BEFORE_KILL + AFTER_KILL) / INTERVAL / 2
    assert not unanswered, f"{len(unanswered)} of {len(load.acked)} acknowledged messages"
    assert not twice, f"{len(twice)} messages answered twice"
    assert resumed and (min(r for r in resumed if r) - killed_at).total_seconds() < 10.0


async def test_a_killed_bot_worker_is_restarted_and_no_message_goes_unanswered(
    tmp_path,
) -> None:
    await kill_the_worker_under_load(f"sqlite:///{tmp_path / 'serve.db'}", tmp_path / "service.log")


@pytest.mark.postgres
async def test_a_killed_bot_worker_on_postgresql_is_restarted_too(tmp_path) -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    # A database of its own: the service's settings name no schema, so it uses `public`.
    database = f"t_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{database}"')
    try:
        url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{database}"
        await kill_the_worker_under_load(url, tmp_path / "service.log")
    finally:
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
            await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


async def test_a_worker_that_cannot_start_again_is_retried_and_reported(tmp_path) -> None:
    settings = Settings(store=f"sqlite:///{tmp_path / 'w.db'}", token_secret=TOKEN_SECRET,
                        bot_process=True)  # fmt: skip
    app = create_app(settings)
    async with LiveServer(app) as server, httpx.AsyncClient(base_url=server.http) as http:
        worker = service_of(app).bot_worker
        assert (await http.get("/health")).status_code == 200
        worker.policy = RestartPolicy(first=0.05, cap=0.2)
        # From now on the worker cannot open its store: every start fails.
        worker.settings = settings.model_copy(update={"store": "nowhere://at-all"})
        with capture_logs() as logs:
            os.kill(worker.process.pid, signal.SIGKILL)
            async with asyncio.timeout(30):
                while worker.health.failures < 4:
                    await asyncio.sleep(0.05)
            down = await http.get("/health")
            worker.settings = settings  # the cause is fixed: the next start succeeds
            async with asyncio.timeout(30):
                while not worker.health.ok:
                    await asyncio.sleep(0.05)
        up = await http.get("/health")
    assert down.status_code == 503 and down.json()["status"] == "degraded"
    report = down.json()["bot_worker"]
    assert report["state"] in {"restarting", "starting"} and report["failures"] >= 4
    assert "did not start" in report["last_failure"]
    errors = [e for e in logs if e["log_level"] == "error"]
    assert errors[0]["event"] == "the bot worker process died; restarting it"
    assert errors[0]["exit"] == "killed by SIGKILL"
    retries = [e for e in errors if e["event"] == "the bot worker process did not start again"]
    assert len(retries) >= 3  # each failed start, at error level
    assert up.status_code == 200 and up.json()["bot_worker"]["restarts"] == 1


def test_restarts_back_off_to_a_cap() -> None:
    policy = RestartPolicy(first=0.5, cap=30.0)
    assert [policy.delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]

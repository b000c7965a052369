"""Crash safety: a writer killed with SIGKILL loses no acknowledged event and
its consumers resume without loss or repeated side effects."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import POSTGRES_URL, drop_schema, require_service
from threadline.bus.memory import MemoryBus
from threadline.engine.outbox import Relay
from threadline.store import open_store
from threadline.testing.effects import EffectsLedger, consumer

ACKS_BEFORE_KILL = 400

pytestmark = pytest.mark.slow


async def _run_and_kill(url: str, schema: str, effects: str) -> list[tuple[str, int, str]]:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "threadline.testing.crash_child", url, schema, effects,
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert child.stdout is not None
    acks: list[tuple[str, int, str]] = []
    try:
        async with asyncio.timeout(60):
            while len(acks) < ACKS_BEFORE_KILL:
                line = await child.stdout.readline()
                assert line, "the writer exited before it was killed"
                _, conversation, seq, key = line.decode().split()
                acks.append((conversation, int(seq), key))
    finally:
        os.kill(child.pid, signal.SIGKILL)
        await child.wait()
    # Acknowledgements already written to the pipe count too.
    for line in (await child.stdout.read()).decode().splitlines():
        if line.startswith("ACK "):
            _, conversation, seq, key = line.split()
            acks.append((conversation, int(seq), key))
    assert child.returncode == -signal.SIGKILL
    return acks


async def _check_recovery(url: str, schema: str, effects_path: str) -> None:
    acks = await _run_and_kill(url, schema, effects_path)
    store = await open_store(url, schema=schema or None)
    try:
        log = []
        after = 0
        while page := await store.read_all(after, 1000):
            log += page
            after = page[-1].position
        keys = collections.Counter(r.idempotency_key for r in log)
        assert all(count == 1 for count in keys.values()), "an event was stored twice"
        stored = {r.idempotency_key: (r.conversation_id, r.seq) for r in log}
        for conversation, seq, key in acks:
            assert stored.get(key) == (conversation, seq), f"acknowledged {key} was lost"
        for conversation in {r.conversation_id for r in log}:
            seqs = [r.seq for r in log if r.conversation_id == conversation]
            assert seqs == list(range(1, len(seqs) + 1))

        ledger = EffectsLedger(effects_path)
        before_effects, _ = ledger.counts()
        bus = MemoryBus(store)
        await bus.subscribe("mailer", consumer(store, ledger))
        relay = Relay(store, bus, store, poll_interval=0.01)
        await relay.start()
        async with asyncio.timeout(60):
            while len(ledger.counts()[0]) < len(log):
                await asyncio.sleep(0.02)
        await bus.drain()
        await relay.stop()
        await bus.close()
        effects, attempts = ledger.counts()
        assert set(effects) == {f"mailer:{r.event_id}" for r in log}, "a side effect was lost"
        assert set(effects.values()) == {1}
        # At most the one effect in flight at the kill runs twice (its key dedupes it).
        assert attempts - len(effects) <= 1
        assert len(before_effects) > 0, "the consumer never ran before the kill"
    finally:
        await store.close()


async def test_sqlite_survives_sigkill(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'threadline.db'}"
    await _check_recovery(url, "", str(tmp_path / "effects.db"))


@pytest.mark.postgres
async def test_postgres_survives_sigkill(tmp_path, pg_schema) -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    try:
        await _check_recovery(POSTGRES_URL, pg_schema, str(tmp_path / "effects.db"))
    finally:
        await drop_schema(pg_schema)

"""Shared fixtures: real backends, skipped locally and failed in CI when unreachable."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from threadline.api.deps import service_of
from threadline.store.sqlite import SQLiteStore, open_sqlite
from threadline.testing.live import LiveServer

#: The demo business pack every test serves (DEMO.md): the service in and out of process
#: is configured with it as an operator would, through THREADLINE_BUSINESS.
NORTHWIND = Path(__file__).resolve().parent.parent / "examples" / "northwind"
os.environ.setdefault("THREADLINE_BUSINESS", str(NORTHWIND))

POSTGRES_URL = os.environ.get(
    "THREADLINE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
#: Token secrets of real entropy: the service refuses a guessable one such as "x" * 32.
TOKEN_SECRET = "nH4rX9dWq2Lz7Vb0Tk5Gm8Yc3Pf6Js1Ra-Eu_Io"
OTHER_TOKEN_SECRET = "Qo7Fw2Kz9Nc4Xe1Hv6Bt3My8Ld5Gr0Sa_Pj-Ui"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (locally) or fail (in CI) when a service the test needs is down."""
    if _reachable(host, port):
        return
    reason = f"{name} is not reachable on {host}:{port}"
    if IN_CI:
        pytest.fail(f"{reason} (CI=true requires it)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def northwind():
    """The Northwind Devices pack, loaded once."""
    from threadline.business import load

    return load(NORTHWIND)


@pytest.fixture
async def systems(northwind, tmp_path):
    """Northwind's own systems, keeping their state (the repair book) in this test's folder."""
    from threadline.systems import Systems

    opened = Systems.open(northwind, tmp_path / "systems")
    yield opened
    await opened.close()


@pytest.fixture
async def sqlite_store(tmp_path) -> AsyncIterator[SQLiteStore]:
    store = await open_sqlite(tmp_path / "threadline.db")
    yield store
    await store.close()


@pytest.fixture
def pg_schema() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


async def drop_schema(schema: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
async def any_store(request, tmp_path, pg_schema):
    """A fresh store on each backend."""
    if request.param == "sqlite":
        store = await open_sqlite(tmp_path / "threadline.db")
        yield store
        await store.close()
        return
    require_service("PostgreSQL", "127.0.0.1", 5432)
    from threadline.store.postgres import open_postgres

    store = await open_postgres(POSTGRES_URL, schema=pg_schema)
    yield store
    await store.close()
    await drop_schema(pg_schema)


@pytest.fixture
async def live_server(tmp_path):
    from threadline.api.app import create_app
    from threadline.settings import Settings

    app = create_app(Settings(store=f"sqlite:///{tmp_path / 'live.db'}"))
    async with LiveServer(app) as server:
        yield server


CHROMIUM = os.environ.get("THREADLINE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture
async def browser():
    """Real headless Chromium (Debian's package), driven by Playwright."""
    if not os.path.exists(CHROMIUM):
        if IN_CI:
            pytest.fail(f"Chromium is missing at {CHROMIUM} (CI=true requires it)")
        pytest.skip(f"Chromium is missing at {CHROMIUM}")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        await instance.close()


def bearer(app, subject: str, scope: str, **claims: object) -> dict[str, str]:
    """An ``Authorization`` header with a one-hour token the app itself issued."""
    from datetime import timedelta

    issued = service_of(app).tokens.issue(subject, [scope], timedelta(hours=1), claims)
    return {"Authorization": f"Bearer {issued.token}"}


@pytest.fixture(scope="session")
def espeak() -> None:
    """espeak-ng (Debian's package) for tests that speak; skipped locally, failed in CI."""
    from threadline.testing.voice import espeak_missing

    reason = espeak_missing()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true requires it)")
    pytest.skip(reason)

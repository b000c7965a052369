"""Reloading the business pack into a running service: a valid pack takes effect for new
turns, an invalid one is refused with the checker's messages and the old one stays."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import NORTHWIND, TOKEN_SECRET, LiveServer, bearer
from tests.serving import environment, serving
from threadline.api.app import create_app
from threadline.channels.chat.client import ChatClient
from threadline.settings import Settings

PROBLEM = "application/problem+json"


def copy_of_northwind(folder: Path) -> Path:
    pack = folder / "pack"
    shutil.copytree(NORTHWIND, pack, ignore=shutil.ignore_patterns("__pycache__"))
    return pack


def say_thanks_as(pack: Path, words: str) -> None:
    """Change what the bot answers to thanks, in the pack's files."""
    intents = pack / "intents.yaml"
    text = intents.read_text()
    assert "You're welcome! Is there anything else I can help with?" in text
    intents.write_text(text.replace(
        "You're welcome! Is there anything else I can help with?", words))  # fmt: skip


async def thanked(server_ws: str, server_http: str) -> str:
    """What the bot answers a new chat's thanks."""
    async with httpx.AsyncClient() as http:
        token = (await http.post(f"{server_http}/chat/session")).json()["token"]
    async with ChatClient.connect(f"{server_ws}/chat/ws", token=token) as chat:
        await chat.say("thank you")
        event = await chat.wait_for(lambda e: e["event"] == "message.sent", timeout=15)
    return str(event["text"])


@pytest.fixture
async def served(tmp_path) -> AsyncIterator[tuple[LiveServer, Path]]:
    pack = copy_of_northwind(tmp_path)
    settings = Settings(store=f"sqlite:///{tmp_path / 'r.db'}", business=pack,
                        token_secret=TOKEN_SECRET)  # fmt: skip
    async with LiveServer(create_app(settings)) as server:
        yield server, pack


async def test_an_admin_reload_takes_effect_for_new_turns(served) -> None:
    server, pack = served
    assert "You're welcome!" in await thanked(server.ws, server.http)
    say_thanks_as(pack, "Glad to help, any time.")
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.post(
            "/admin/business/reload", headers=bearer(server.app, "root", "admin")
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["business"] == "northwind" and body["digest"] != body["previous_digest"]
    assert "Glad to help, any time." in await thanked(server.ws, server.http)


async def test_an_invalid_pack_is_refused_with_every_problem_and_the_old_one_stays(
    served,
) -> None:
    server, pack = served
    business = pack / "business.yaml"
    business.write_text(
        business.read_text().replace(
            "default_route: {queue: orders", "default_route: {queue: nowhere"
        )
    )
    (pack / "replies.yaml").write_text((pack / "replies.yaml").read_text() + "\nbogus: {{ x\n")
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.post(
            "/admin/business/reload", headers=bearer(server.app, "root", "admin")
        )
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM
    problems = response.json()["problems"]
    assert problems and all({"file", "line", "where", "message"} <= set(p) for p in problems)
    assert any(p["file"] == "replies.yaml" for p in problems), problems
    assert "You're welcome!" in await thanked(server.ws, server.http)  # the old pack serves


async def test_only_an_admin_reloads(served) -> None:
    server, _ = served
    async with httpx.AsyncClient(base_url=server.http) as http:
        ana = bearer(server.app, "agent-ana", "agent", queues=["orders"])
        refused = await http.post("/admin/business/reload", headers=ana)
        anonymous = await http.post("/admin/business/reload")
    assert refused.status_code == 403 and refused.headers["content-type"] == PROBLEM
    assert anonymous.status_code == 401


@pytest.mark.slow
async def test_sighup_reloads_the_pack_into_the_service_and_its_bot_worker(tmp_path) -> None:
    pack = copy_of_northwind(tmp_path)
    env = environment(THREADLINE_STORE=f"sqlite:///{tmp_path / 'var' / 't.db'}",
                      THREADLINE_BUSINESS=str(pack))  # fmt: skip
    async with serving(env) as served:  # with the bot in its worker process
        ws = served.http.replace("http://", "ws://")
        assert "You're welcome!" in await thanked(ws, served.http)
        say_thanks_as(pack, "Glad to help, any time.")
        os.kill(served.pid, signal.SIGHUP)
        async with asyncio.timeout(15):
            while "Glad to help" not in (reply := await thanked(ws, served.http)):
                await asyncio.sleep(0.2)
        assert "Glad to help, any time." in reply
    assert "business pack reloaded" in served.output

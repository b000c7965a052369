"""A second business on the same code: Spoke & Chain, a bike repair shop (examples/bikeshop),
written from the README's pack documentation alone, with its own workshop system over HTTP.

Its chat, desk and phone work, and its tools are called over HTTP against the workshop
service it ships: every look-up and booking the bot makes reaches that service, with the
bearer token from the environment and the turn's idempotency key.
"""

from __future__ import annotations

import asyncio
import importlib.util
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, bearer
from tests.twilio_fakes import ACCOUNT_SID, AUTH_TOKEN, voice_settings
from threadline.api.app import create_app
from threadline.api.deps import service_of
from threadline.business import load
from threadline.channels.chat.client import ChatClient
from threadline.core.events import Event
from threadline.settings import Settings

BIKESHOP = Path(__file__).resolve().parent.parent / "examples" / "bikeshop"
MARA_PHONE = "+15035550142"


def _workshop_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "workshop_service", BIKESHOP / "workshop" / "service.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Recording:
    """ASGI middleware that notes each request the workshop receives."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[dict[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            self.requests.append(
                {
                    "method": scope["method"],
                    "path": scope["path"],
                    "authorization": headers.get("authorization", ""),
                    "idempotency-key": headers.get("idempotency-key", ""),
                }
            )
        await self.app(scope, receive, send)


@pytest.fixture
async def workshop(monkeypatch) -> AsyncIterator[tuple[LiveServer, Recording]]:
    """Spoke & Chain's own system, on a port of its own; the pack finds it by WORKSHOP_URL."""
    token = secrets.token_urlsafe(16)
    monkeypatch.setenv("WORKSHOP_API_TOKEN", token)
    recording = Recording(_workshop_module().create_app(token))
    async with LiveServer(recording) as live:
        monkeypatch.setenv("WORKSHOP_URL", live.http)
        yield live, recording


@pytest.fixture
async def shop(workshop, tmp_path) -> AsyncIterator[LiveServer]:
    settings = Settings(store=f"sqlite:///{tmp_path / 'shop.db'}", business=BIKESHOP)
    async with LiveServer(create_app(settings)) as live:
        yield live


async def _chat(server: LiveServer) -> Any:
    async with httpx.AsyncClient() as http:
        token = (await http.post(f"{server.http}/chat/session")).json()["token"]
    return ChatClient.connect(f"{server.ws}/chat/ws", token=token)


async def _reply(chat: Any, text: str) -> str:
    await chat.say(text)
    event = await chat.wait_for(lambda e: e["event"] == "message.sent" and e["actor"] == "bot",
                                timeout=15)  # fmt: skip
    return str(event["text"])


async def _timeline(server: LiveServer, conversation_id: str) -> list[Event]:
    return await service_of(server.app).conversations.timeline(conversation_id)


def test_the_pack_loads_and_names_a_business_of_its_own() -> None:
    business = load(BIKESHOP, {"WORKSHOP_URL": "http://127.0.0.1:1"})
    assert business.name == "Spoke & Chain" and business.id == "spokechain"
    assert [loc.id for loc in business.locations] == ["division-st"]
    assert all(spec.kind == "http" for spec in business.pack.tools.values())


async def test_a_ticket_is_looked_up_over_http_and_its_details_wait_for_proof(
    shop, workshop
) -> None:
    _, recording = workshop
    async with await _chat(shop) as chat:
        first = await _reply(chat, "where is my bike? ticket 48213")
        assert "48213" in first and "Surly" not in first  # no proof yet: no details
        second = await _reply(chat, "the last four digits are 0142")
        assert "Surly" in second, second
        timeline = await _timeline(shop, chat.conversation_id)
    looked_up = [e.payload for e in timeline if e.type == "action.requested"]
    assert {p["tool"] for p in looked_up} >= {"find_ticket"}
    assert all(p["tool_version"] for p in looked_up)
    calls = [r for r in recording.requests if r["path"] == "/tickets/48213"]
    assert len(calls) == 2  # once a turn, both over HTTP
    assert all(r["authorization"].startswith("Bearer ") for r in calls)
    assert all(r["idempotency-key"] for r in calls)
    assert len({r["idempotency-key"] for r in calls}) == 2


async def test_a_tune_up_is_booked_in_the_workshops_own_book(shop, workshop) -> None:
    _, recording = workshop
    async with await _chat(shop) as chat:
        asked = await _reply(chat, "I'd like to book a tune-up")
        assert "which day" in asked.lower(), asked  # one workshop: no need to ask where
        reply = await _reply(chat, "Saturday at 2pm")
        assert "booked" in reply.lower(), reply
    posts = [r for r in recording.requests if r["method"] == "POST" and r["path"] == "/bookings"]
    assert len(posts) == 1 and posts[0]["idempotency-key"]


async def test_asking_for_a_person_reaches_a_mechanic_on_the_desk(shop) -> None:
    app = shop.app
    jules = bearer(app, "agent-jules", "agent", queues=["service"])
    async with httpx.AsyncClient(base_url=shop.http, headers=jules) as desk:
        presence = await desk.put("/agents/me/presence", json={"presence": "available"})
        assert presence.status_code == 200, presence.text
        async with await _chat(shop) as chat:
            await _reply(chat, "can I talk to a person please")
            cid = chat.conversation_id
            async with asyncio.timeout(10):
                while not (offers := (await desk.get("/agents/me/offers")).json()):
                    await asyncio.sleep(0.05)
            accepted = await desk.post(f"/conversations/{cid}/accept",
                                       json={"offer_id": offers[0]["offer_id"]})  # fmt: skip
            assert accepted.status_code == 200, accepted.text
    state = await service_of(app).conversations.rehydrate(cid)
    assert state.status == "with_human" and state.assignee == "agent-jules"


@pytest.mark.slow
@pytest.mark.usefixtures("espeak")
async def test_a_caller_is_recognised_by_the_workshop_and_answered_by_voice(
    workshop, tmp_path
) -> None:
    from threadline.testing.caller import PhoneCaller

    _, recording = workshop
    settings = voice_settings(store=f"sqlite:///{tmp_path / 'voice.db'}", business=BIKESHOP)
    async with LiveServer(create_app(settings)) as server:
        call = PhoneCaller(server.http, AUTH_TOKEN, ACCOUNT_SID)
        greeting = await call.dial(MARA_PHONE, callee="+15035550100")
        assert "spoke & chain" in greeting.lower(), greeting
        await call.until_quiet()
        await call.say("Where is my parts order three zero one one eight?")
        answer = await _bot_says(server, call.conversation_id)
        await call.hang_up()
        timeline = await _timeline(server, call.conversation_id)
    assert {e.customer_id for e in timeline} == {"cus-mara"}  # recognised by her number
    assert any(r["path"] == "/customers" for r in recording.requests)
    assert "30118" in answer.replace(" ", ""), answer


async def _bot_says(server: LiveServer, conversation_id: str) -> str:
    """The bot's first answer on the conversation, once it is recorded."""
    async with asyncio.timeout(60):
        while True:
            said = [e for e in await _timeline(server, conversation_id)
                    if e.type == "message.sent" and e.actor.kind == "bot"]  # fmt: skip
            if said:
                return str(said[0].payload["text"])
            await asyncio.sleep(0.1)

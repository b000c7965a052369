"""The bot in its own process: it answers the service's chats, and goes when the service does."""

from __future__ import annotations

import asyncio

import httpx

from tests.conftest import LiveServer
from threadline.api.app import create_app
from threadline.channels.chat.client import ChatClient
from threadline.settings import Settings


async def test_the_bot_worker_answers_chats_and_stops_with_the_service(tmp_path) -> None:
    settings = Settings(store=f"sqlite:///{tmp_path / 'w.db'}", token_secret="x" * 32,
                        bot_process=True)  # fmt: skip
    app = create_app(settings)
    async with LiveServer(app) as server:
        async with httpx.AsyncClient() as http:
            token = (await http.post(f"{server.http}/chat/session")).json()["token"]
        async with ChatClient.connect(f"{server.ws}/chat/ws", token=token) as chat:
            for question in ("where is my order 1042?", "when are you open on Sunday?"):
                await chat.say(question)
                reply = await chat.wait_for(lambda e: e["event"] == "message.sent", timeout=20)
                assert reply["actor"] == "bot"
        process = app.state.bot_worker.process
        assert process is not None and process.returncode is None
        records = await app.state.store.read(chat.conversation_id)
        assert [r.type for r in records].count("message.sent") == 2
    async with asyncio.timeout(10):
        await process.wait()
    assert process.returncode == 0

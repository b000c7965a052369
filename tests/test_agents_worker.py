"""The bot in its own process: it answers the service's chats, and goes when the service does."""

from __future__ import annotations

import asyncio
import pickle

import httpx

from tests.conftest import TOKEN_SECRET, LiveServer
from threadline.agents.worker import page_frame
from threadline.api.app import create_app
from threadline.api.deps import service_of
from threadline.bus.memory import MemoryBus
from threadline.channels.chat.client import ChatClient
from threadline.core.events import EventRecord
from threadline.engine.outbox import PAGE, Relay
from threadline.settings import Settings
from threadline.store.forwarding import HEADER
from threadline.store.sqlite import open_sqlite
from threadline.testing.factories import record


async def test_the_bot_worker_answers_chats_and_stops_with_the_service(tmp_path) -> None:
    settings = Settings(store=f"sqlite:///{tmp_path / 'w.db'}", token_secret=TOKEN_SECRET,
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
        process = service_of(app).bot_worker.process
        assert process is not None and process.returncode is None
        records = await service_of(app).store.read(chat.conversation_id)
        assert [r.type for r in records].count("message.sent") == 2
    async with asyncio.timeout(10):
        await process.wait()
    assert process.returncode == 0


def test_a_page_for_the_worker_leaves_out_its_own_appends_but_covers_their_positions() -> None:
    customer = record("conv-a", "where is my order 1042?")._replace(position=11)
    own = [record("conv-b", f"bot {n}")._replace(position=12 + n) for n in range(3)]
    other = record("conv-c", "hello")._replace(position=15)
    page = [customer, *own, other]
    kind, after, rows, through = pickle.loads(
        page_frame(10, page, {r.event_id for r in own})[HEADER.size :]
    )
    assert (kind, after, through) == ("page", 10, 15)
    assert [EventRecord._make(row) for row in rows] == [customer, other]
    # Nothing in flight: the whole page.
    _, _, rows, _ = pickle.loads(page_frame(10, page, set())[HEADER.size :])
    assert [EventRecord._make(row) for row in rows] == page


def test_a_full_page_goes_whole_since_the_worker_reads_on_after_it() -> None:
    page = [record("conv-a", f"m{n}")._replace(position=n + 1) for n in range(PAGE)]
    _, _, rows, through = pickle.loads(page_frame(0, page, {page[0].event_id})[HEADER.size :])
    assert len(rows) == PAGE and through == PAGE


async def test_the_relay_moves_past_what_a_page_leaves_out(tmp_path) -> None:
    store = await open_sqlite(tmp_path / "log.db")
    published: list[EventRecord] = []

    class Collecting(MemoryBus):
        async def publish(self, records) -> None:  # type: ignore[no-untyped-def]
            published.extend(records)

    relay = Relay(store, Collecting(store), store, poll_interval=60)
    await relay.start()
    try:
        first = record("conv-a", "one")._replace(position=1)
        relay.feed_through(0, [first], 4)  # positions 2 to 4 were the worker's own
        later = record("conv-a", "two")._replace(position=5)
        relay.feed_through(4, [later], 5)  # follows on from 4: published as it is
        async with asyncio.timeout(5):
            while relay.cursor < 5:
                await asyncio.sleep(0.01)
        assert published == [first, later]
    finally:
        await relay.stop()
        await store.close()

"""The ASGI application: ``create_app()`` wires the store, bus and routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from threadline import __version__
from threadline.agents.bot import NorthwindBot
from threadline.agents.runtime import BotRuntime
from threadline.agents.worker import BotWorker
from threadline.api import (
    chat,
    conversations,
    desk,
    directory,
    health,
    inperson,
    pages,
    problems,
    store_queue,
    streams,
)  # fmt: skip
from threadline.api import identity as identity_api
from threadline.api.limits import BodyLimit
from threadline.api.voice_extra import voice_router
from threadline.bus.memory import MemoryBus
from threadline.business import northwind
from threadline.channels.chat.adapter import ChatAdapter
from threadline.core.events import utcnow
from threadline.core.ports import Storage
from threadline.engine.conversations import Conversations
from threadline.engine.live import LiveHub
from threadline.engine.outbox import Relay
from threadline.engine.projections import ConversationIndex
from threadline.routing.demo import routing_config
from threadline.routing.router import Router
from threadline.security import PROBLEMS, RevocationList, TokenIssuer, TokenVerifier
from threadline.settings import Settings, load_settings
from threadline.store import open_store


def create_app(settings: Settings | None = None, store: Storage | None = None) -> FastAPI:
    """The Threadline service. Pass ``store`` to serve an already open store (tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        config = settings or load_settings()
        owned = store is None
        backend = store if store is not None else await open_store(config.store)
        app.state.settings = config
        bus = MemoryBus(backend)
        relay = Relay(backend, bus, backend)
        app.state.store = backend
        app.state.bus = bus
        app.state.relay = relay
        worker = BotWorker(config) if config.bot_process else None
        app.state.bot_worker = worker

        def appended() -> None:
            relay.appended()
            if worker is not None and not relay.fed:  # a fed relay passes its pages on
                worker.poke()

        app.state.conversations = Conversations(
            backend, snapshot_every=config.snapshot_every, on_append=appended
        )
        hub = LiveHub(backend)
        await hub.attach(bus)
        app.state.hub = hub
        app.state.index = await ConversationIndex.build(backend)
        hub.listen(app.state.index.observe)
        hub.listen(app.state.conversations.observe)  # the bot worker's turns, for one
        app.state.chat = ChatAdapter(app.state.conversations)
        revocations = await RevocationList.load(backend)
        hub.listen(revocations.follower(app.state.conversations.codec))  # also from other processes
        app.state.revocations = revocations
        app.state.tokens = TokenIssuer.from_settings(config)
        app.state.verifier = TokenVerifier.from_settings(config, revocations)
        business = northwind(utcnow())
        app.state.business = business
        await identity_api.start(app, backend, config, business)
        if worker is not None:
            await worker.start(backend, relay.appended)
            relay.forward(worker.feed)
        else:
            bot = BotRuntime(app.state.conversations, NorthwindBot(business))
            await bot.start(bus)
        router = Router(app.state.conversations, routing_config(business))
        await router.start(bus)
        app.state.router = router
        await inperson.start(app)
        await relay.start()
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()
            await router.stop()
            await relay.stop()
            await bus.close()
            if owned:
                await backend.close()

    app = FastAPI(
        title="Threadline",
        version=__version__,
        summary="One canonical conversation across voice, chat and in-person channels.",
        lifespan=lifespan,
    )
    problems.install(app)
    for cls, status, slug, title in PROBLEMS:
        problems.register_error(cls, status, slug, title)
    app.add_middleware(BodyLimit)
    app.include_router(conversations.router)
    app.include_router(streams.router)
    app.include_router(chat.router)
    app.include_router(desk.router)
    app.include_router(voice_router())  # 503s without the voice extra
    app.include_router(identity_api.router)
    app.include_router(inperson.router)
    app.include_router(store_queue.router)
    app.include_router(directory.router)  # after desk: its /agents/me wins over /agents/{id}
    app.include_router(pages.router)
    app.include_router(health.router)
    app.mount("/static", pages.static_files(), name="static")
    return app

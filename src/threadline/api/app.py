"""The ASGI application: ``create_app()`` wires the store, bus and routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from threadline import __version__
from threadline.api import conversations, problems, streams
from threadline.api.limits import BodyLimit
from threadline.bus.memory import MemoryBus
from threadline.core.ports import Storage
from threadline.engine.conversations import Conversations
from threadline.engine.live import LiveHub
from threadline.engine.outbox import Relay
from threadline.settings import Settings, load_settings
from threadline.store import open_store


def create_app(settings: Settings | None = None, store: Storage | None = None) -> FastAPI:
    """The Threadline service. Pass ``store`` to serve an already open store (tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        config = settings or load_settings()
        owned = store is None
        backend = store if store is not None else await open_store(config.store)
        bus = MemoryBus(backend)
        relay = Relay(backend, bus, backend)
        app.state.store = backend
        app.state.bus = bus
        app.state.relay = relay
        app.state.conversations = Conversations(
            backend, snapshot_every=config.snapshot_every, on_append=relay.poke
        )
        hub = LiveHub(backend)
        await hub.attach(bus)
        app.state.hub = hub
        await relay.start()
        try:
            yield
        finally:
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
    app.add_middleware(BodyLimit)
    app.include_router(conversations.router)
    app.include_router(streams.router)
    return app

"""The ASGI application: ``create_app()`` runs the service and mounts the routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from threadline import __version__
from threadline.api import (
    admin,
    brand,
    chat,
    consent,
    conversations,
    desk,
    directory,
    health,
    inperson,
    pages,
    problems,
    reference,
    store_queue,
    streams,
    subjects,
)  # fmt: skip
from threadline.api import identity as identity_api
from threadline.api.access import authorize_route
from threadline.api.access_log import scrub_server_logs
from threadline.api.limits import BodyLimit
from threadline.api.voice_extra import voice_router
from threadline.core.ports import Storage
from threadline.security import PROBLEMS
from threadline.service import running
from threadline.settings import Settings, load_settings


def create_app(settings: Settings | None = None, store: Storage | None = None) -> FastAPI:
    """The Threadline service. Pass ``store`` to serve an already open store (tests)."""
    scrub_server_logs()  # tokens and personal data in query strings never reach the log

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running(settings or load_settings(), store) as service:
            app.state.service = service
            yield

    app = FastAPI(
        title="Threadline",
        version=__version__,
        summary="One canonical conversation across voice, chat and in-person channels.",
        lifespan=lifespan,
        # The policy decides every route before its handler runs (api/access.py).
        dependencies=[Depends(authorize_route)],
        # The reference is served by api/reference.py, where the policy decides it.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    problems.install(app)
    for cls, status, slug, title in PROBLEMS:
        problems.register_error(cls, status, slug, title)
    app.add_middleware(BodyLimit)
    app.include_router(conversations.router)
    app.include_router(consent.router)
    app.include_router(streams.router)
    app.include_router(chat.router)
    app.include_router(desk.router)
    app.include_router(voice_router())  # 503s without the voice extra
    app.include_router(identity_api.router)
    app.include_router(inperson.router)
    app.include_router(store_queue.router)
    app.include_router(directory.router)  # after desk: its /agents/me wins over /agents/{id}
    app.include_router(brand.router)
    app.include_router(pages.router)
    app.include_router(health.router)
    app.include_router(admin.router)
    app.include_router(subjects.router)
    app.include_router(reference.router)
    app.mount("/static", pages.static_files(), name="static")
    return app

"""HTML pages and static assets: the chat page, the desk, the associate app and the kiosk.

Pages are Jinja templates (HTML-escaped) that wear the business's brand from its pack.
Who may view them, and the assets under ``/static``, is the policy's (``pages.public``).
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.types import Receive, Scope, Send

from threadline.api.brand import brand_of
from threadline.api.deps import ServiceDep
from threadline.security.authz import allows, can_view

router = APIRouter(include_in_schema=False)
STATIC = "/static"
WEB = resources.files("threadline.web")
_PAGES = Environment(
    loader=FileSystemLoader(str(WEB / "templates")),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
)


class Assets(StaticFiles):
    """The pages' assets, served as the policy lets anyone view ``/static``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not allows(can_view, None, STATIC):
            await PlainTextResponse("Forbidden", status_code=403)(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def static_files() -> StaticFiles:
    return Assets(directory=str(WEB / "static"))


def _page(name: str, service: ServiceDep) -> str:
    return _PAGES.get_template(name).render(brand=brand_of(service.business))


@router.get("/chat", response_class=HTMLResponse)
async def chat_page(service: ServiceDep) -> str:
    """The business's page with the chat widget on it."""
    return _page("chat.html", service)


@router.get("/desk", response_class=HTMLResponse)
async def desk_page(service: ServiceDep) -> str:
    """The human agents' desk (sign in with an agent token)."""
    return _page("desk.html", service)


@router.get("/associate", response_class=HTMLResponse)
async def associate_page(service: ServiceDep) -> str:
    """The store associates' tablet app (sign in with an associate token)."""
    return _page("associate.html", service)


@router.get("/kiosk", response_class=HTMLResponse)
async def kiosk_page(service: ServiceDep) -> str:
    """The store's check-in kiosk (opened with a kiosk token)."""
    return _page("kiosk.html", service)

"""HTML pages and static assets: the chat demo page (and later the desk and associate app)."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

router = APIRouter(include_in_schema=False)
WEB = resources.files("threadline.web")


def static_files() -> StaticFiles:
    return StaticFiles(directory=str(WEB / "static"))


@router.get("/chat", response_class=HTMLResponse)
async def chat_page() -> str:
    """The demo store page with the chat widget on it."""
    return (WEB / "templates" / "chat.html").read_text(encoding="utf-8")


@router.get("/desk", response_class=HTMLResponse)
async def desk_page() -> str:
    """The human agents' desk (sign in with an agent token)."""
    return (WEB / "templates" / "desk.html").read_text(encoding="utf-8")


@router.get("/associate", response_class=HTMLResponse)
async def associate_page() -> str:
    """The store associates' tablet app (sign in with an associate token)."""
    return (WEB / "templates" / "associate.html").read_text(encoding="utf-8")


@router.get("/kiosk", response_class=HTMLResponse)
async def kiosk_page() -> str:
    """The store's check-in kiosk (opened with a kiosk token)."""
    return (WEB / "templates" / "kiosk.html").read_text(encoding="utf-8")

"""The API's own reference: the OpenAPI document, Swagger UI and ReDoc.

FastAPI serves these itself on routes of its own, which no dependency of the app
reaches; the app is made without them (``create_app``) and they are served here
instead, as routes of the app, so the policy decides them like every other endpoint
(``endpoints.public``: anyone may read the reference).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, JSONResponse

OPENAPI = "/openapi.json"
DOCS = "/docs"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"
REDOC = "/redoc"

router = APIRouter(include_in_schema=False)


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


@router.api_route(OPENAPI, methods=["GET", "HEAD"])
async def openapi(request: Request) -> JSONResponse:
    """The OpenAPI document of every route the reference lists."""
    return JSONResponse(request.app.openapi())


@router.api_route(DOCS, methods=["GET", "HEAD"])
async def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url=_root(request) + OPENAPI,
                               title=f"{request.app.title} - Swagger UI",
                               oauth2_redirect_url=_root(request) + OAUTH2_REDIRECT)  # fmt: skip


@router.api_route(OAUTH2_REDIRECT, methods=["GET", "HEAD"])
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.api_route(REDOC, methods=["GET", "HEAD"])
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(openapi_url=_root(request) + OPENAPI,
                          title=f"{request.app.title} - ReDoc")  # fmt: skip

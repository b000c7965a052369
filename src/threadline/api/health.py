"""``GET /health``: whether the service's background parts run, for operators and probes.

200 when they all run; 503 while one is down (the bot worker between a death
and its restart, or while its restarts keep failing), with what the service
knows of it. Open to anyone, like any probe: it says nothing about customers.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from threadline.api.deps import ServiceDep

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    responses={503: {"description": "a background part is down (see its entry)"}},
)
async def health(service: ServiceDep) -> JSONResponse:
    """The service's health: ``ok``, or ``degraded`` while a background part is down."""
    body: dict[str, Any] = {"status": "ok"}
    worker = service.bot_worker
    if worker is not None:
        report = worker.health
        body["bot_worker"] = report.as_dict()
        if not report.ok:
            body["status"] = "degraded"
    return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

"""RFC 9457 problem details for every error the API answers with.

Each Threadline error class maps to one HTTP status and one stable ``type``
URI; clients match on ``type``, never on the human-readable ``detail``.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from threadline.core import errors

MEDIA_TYPE: Final = "application/problem+json"

#: class → (status, type slug, title); the most specific class wins.
_MAPPING: dict[type[BaseException], tuple[int, str, str]] = {
    errors.UnknownEventType: (422, "unknown-event-type", "Unknown event type or version"),
    errors.ValidationError: (422, "validation", "The request does not fit its schema"),
    errors.IllegalTransition: (409, "illegal-transition", "Not allowed in the current state"),
    errors.DomainError: (409, "domain", "Not allowed"),
    errors.ConflictError: (409, "conflict", "The conversation moved on"),
    errors.IdempotencyError: (422, "idempotency-key-reused", "Idempotency key reused"),
    errors.NotFound: (404, "not-found", "Not found"),
    errors.OperationalError: (503, "unavailable", "Temporarily unavailable"),
    errors.PersistenceError: (500, "storage", "Storage error"),
    errors.ConfigurationError: (500, "configuration", "Misconfigured"),
}


def problem_type(slug: str) -> str:
    return f"urn:threadline:problem:{slug}"


def register_error(cls: type[BaseException], status: int, slug: str, title: str) -> None:
    """Map another error class (for example from security) to a problem."""
    _MAPPING[cls] = (status, slug, title)


class Problem(Exception):
    """Raise to answer with a problem document directly."""

    def __init__(self, status: int, slug: str, title: str, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or title)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.extra = extra
        self.headers: dict[str, str] = {}


def problem_response(
    request: Request,
    status: int,
    slug: str,
    title: str,
    detail: str = "",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": problem_type(slug),
        "title": title,
        "status": status,
        "instance": request.url.path,
    }
    if detail:
        body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _for_threadline(request: Request, exc: Exception) -> JSONResponse:
    for cls in type(exc).__mro__:
        if cls in _MAPPING:
            status, slug, title = _MAPPING[cls]
            break
    else:  # pragma: no cover - every ThreadlineError has a mapped ancestor
        status, slug, title = 500, "internal", "Internal error"
    extra: dict[str, Any] = {}
    headers: dict[str, str] = dict(getattr(exc, "headers", {}) or {})
    if isinstance(exc, errors.ValidationError) and exc.errors:
        extra["errors"] = exc.errors
    if isinstance(exc, errors.ConflictError):
        extra["current_seq"] = exc.actual
    if getattr(exc, "retryable", False) and status == 503:
        headers["Retry-After"] = "1"
    return problem_response(request, status, slug, title, str(exc), headers, **extra)


def install(app: FastAPI) -> None:
    """Answer every error with problem+json."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            request, exc.status, exc.slug, exc.title, exc.detail, exc.headers, **exc.extra
        )

    @app.exception_handler(errors.ThreadlineError)
    async def _threadline(request: Request, exc: errors.ThreadlineError) -> JSONResponse:
        return _for_threadline(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        found = exc.errors()
        if any(e.get("type") == "json_invalid" for e in found):
            return problem_response(request, 400, "malformed-json", "Malformed JSON",
                                    "the body is not valid JSON")  # fmt: skip
        details = [
            {"field": ".".join(str(p) for p in e["loc"]), "reason": str(e["msg"])} for e in found
        ]
        summary = "; ".join(f"{d['field']}: {d['reason']}" for d in details)
        return problem_response(request, 422, "validation", "The request does not fit its "
                                "schema", summary, errors=details)  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {404: "not-found", 405: "method-not-allowed", 413: "too-large"}.get(
            exc.status_code, "http"
        )
        return problem_response(request, exc.status_code, slug, str(exc.detail),
                                headers=dict(exc.headers or {}))  # fmt: skip

"""One HTTP call of a pack's ``http`` tool, and what its answer means.

The URL's ``{placeholders}`` are filled from the arguments; the other
arguments go in the query string of a GET or DELETE and in a JSON body
otherwise. A 2xx answer's JSON object is the result. A status the tool lists
as ``not_found`` means there is no such thing; 408, 425, 429 and 5xx, timeouts
and refused connections may succeed later; any other 4xx is the system saying
no, with the code of its ``application/problem+json`` body (``code``, or the
last part of ``type``) when it sends one.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import httpx

from threadline.business.tool_specs import PLACEHOLDER, HttpTool
from threadline.tools import NOT_FOUND, ToolFailure

if TYPE_CHECKING:
    from threadline.systems.runner import ToolCall

RETRYABLE: Final = frozenset({408, 425, 429})


def _credentials(spec: HttpTool, environ: Mapping[str, str], tool: str) -> dict[str, str]:
    if spec.auth is None:
        return {}
    secret = environ.get(spec.auth.secret)
    if not secret:
        raise ToolFailure("misconfigured", f"{tool}: {spec.auth.secret} is not set")
    if spec.auth.scheme == "bearer":
        return {spec.auth.header: f"Bearer {secret}"}
    if spec.auth.scheme == "basic":
        return {spec.auth.header: "Basic " + base64.b64encode(secret.encode()).decode()}
    return {spec.auth.header: secret}


def _problem_code(response: httpx.Response) -> tuple[str, str, dict[str, Any]]:
    code, message = f"http_{response.status_code}", response.reason_phrase
    details: dict[str, Any] = {}
    try:
        body = response.json()
    except ValueError:
        return code, message, details
    if isinstance(body, dict):
        named = body.get("code") or str(body.get("type") or "").rstrip("/").rsplit("/", 1)[-1]
        if isinstance(named, str) and named and named != "about:blank":
            code = named.rsplit(":", 1)[-1]
        message = str(body.get("detail") or body.get("title") or message)
        extra = body.get("details")
        details = extra if isinstance(extra, dict) else {}
    return code, message, details


async def request(
    client: httpx.AsyncClient,
    spec: HttpTool,
    call: ToolCall,
    arguments: dict[str, Any],
    environ: Mapping[str, str],
) -> dict[str, Any]:
    """The result of one attempt; raises ToolFailure."""
    used = set(spec.placeholders())
    url = PLACEHOLDER.sub(lambda m: quote(str(arguments[m[1]]), safe=""), spec.url)
    rest = {k: v for k, v in arguments.items() if k not in used and v is not None}
    headers = {"Accept": "application/json", **spec.headers,
               **_credentials(spec, environ, call.tool)}  # fmt: skip
    if spec.idempotency_header:
        headers[spec.idempotency_header] = call.idempotency_key
    in_query = spec.method in {"GET", "DELETE"}
    try:
        response = await client.request(
            spec.method, url, headers=headers,
            params={k: str(v) for k, v in rest.items()} if in_query else None,
            json=None if in_query else rest, timeout=spec.timeout,
        )  # fmt: skip
    except httpx.TimeoutException:
        raise ToolFailure(
            "timeout", f"{call.tool} did not answer in time", retryable=True
        ) from None
    except httpx.TransportError as exc:
        raise ToolFailure("unavailable", f"{call.tool}: {type(exc).__name__}",
                          retryable=True) from None  # fmt: skip
    status = response.status_code
    if status in spec.not_found:
        raise ToolFailure(NOT_FOUND, f"{call.tool}: not found")
    if status in {401, 403}:  # the business's system does not accept our credentials
        raise ToolFailure("unauthorized", f"{call.tool}: the system answered {status}; check"
                          " the tool's credentials")  # fmt: skip
    if status in RETRYABLE or status >= 500:
        raise ToolFailure(f"http_{status}", f"{call.tool} answered {status}", retryable=True)
    if status >= 400:
        code, message, details = _problem_code(response)
        raise ToolFailure(code, message, details=details)
    if status == 204:
        return {}
    try:
        body = response.json()
    except ValueError:
        raise ToolFailure("bad_result", f"{call.tool} answered without JSON") from None
    if not isinstance(body, dict):
        raise ToolFailure("bad_result", f"{call.tool} answered a JSON {type(body).__name__}")
    return body

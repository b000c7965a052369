"""The phone network's side of Twilio, for tests and ``threadline demo``.

:class:`FakeTwilio` is a fake of Twilio's REST API: it answers call updates
(``Calls/{sid}.json``, what warm transfer sends) as Twilio does, or with
``fail_with``, and records every request. :func:`signed_post` sends a webhook
signed as Twilio signs it, such as the call-status callback a finished call
brings. The media stream's side is :class:`threadline.testing.caller.PhoneCaller`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from twilio.request_validator import RequestValidator

CALLS_PATH = "/2010-04-01/Accounts/{account}/Calls/{sid}.json"


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    form: dict[str, str]
    authorization: str


@dataclass
class FakeTwilio:
    """Records every request; answers call updates like Twilio, or with ``fail_with``.

    ``base`` is where it is served, once it is (``TWILIO_API_BASE`` for the service).
    """

    requests: list[Recorded] = field(default_factory=list)
    fail_with: int | None = None
    base: str = ""
    _arrived: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def app(self) -> Starlette:
        async def update_call(request: Request) -> JSONResponse:
            form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
            self.requests.append(
                Recorded(
                    request.method, request.url.path, form, request.headers.get("authorization", "")
                )
            )
            self._arrived.set()
            if self.fail_with is not None:
                return JSONResponse(
                    {
                        "code": 20404 if self.fail_with == 404 else 20500,
                        "message": "refused by the fake",
                        "status": self.fail_with,
                    },
                    status_code=self.fail_with,
                )
            return JSONResponse(
                {
                    "sid": request.path_params["sid"],
                    "account_sid": request.path_params["account"],
                    "status": form.get("Status", "in-progress"),
                    "api_version": "2010-04-01",
                }
            )

        return Starlette(routes=[Route(CALLS_PATH, update_call, methods=["POST"])])

    async def request_after(self, seen: int, timeout: float = 10.0) -> Recorded:
        """The first request after the ``seen`` first ones, once it has arrived."""
        async with asyncio.timeout(timeout):
            while len(self.requests) <= seen:
                self._arrived.clear()
                await self._arrived.wait()
        return self.requests[seen]


def signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """The ``X-Twilio-Signature`` Twilio sends with a webhook to ``url``."""
    return str(RequestValidator(auth_token).compute_signature(url, dict(params)))


async def signed_post(url: str, params: Mapping[str, str], auth_token: str) -> httpx.Response:
    """POST ``params`` to ``url`` as a webhook Twilio signed with ``auth_token``."""
    headers = {"X-Twilio-Signature": signature(auth_token, url, params)}
    async with httpx.AsyncClient() as http:
        return await http.post(url, data=dict(params), headers=headers)

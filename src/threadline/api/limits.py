"""Request limits: body size, enforced before the body reaches a handler; and how often one
client may do a thing (open chat sessions), in a sliding window."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from threadline.api.problems import Problem
from threadline.core.events import utcnow

MAX_BODY: Final = 64 * 1024


class BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes is answered 413 and never read on."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        body = orjson.dumps({
            "type": "urn:threadline:problem:too-large",
            "title": "Request body too large",
            "status": 413,
            "detail": f"the body exceeds {self.limit} bytes",
            "instance": scope.get("path", ""),
        })  # fmt: skip
        await send({
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        })  # fmt: skip
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


#: Clients whose recent requests are remembered, at most (the least recently seen go first).
CLIENTS: Final = 100_000


class PerClient:
    """At most ``limit`` of something per client in ``window``; more is a 429 problem."""

    def __init__(
        self,
        what: str,
        limit: int,
        window: timedelta,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.what = what
        self.limit = limit
        self.window = window
        self._clock = clock
        self._seen: OrderedDict[str, deque[datetime]] = OrderedDict()

    def take(self, client: str) -> None:
        """Count one for ``client``, or raise a 429 problem when it has had its ``limit``."""
        now = self._clock()
        times = self._seen.pop(client, None) or deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        self._seen[client] = times
        while len(self._seen) > CLIENTS:
            self._seen.popitem(last=False)
        if len(times) >= self.limit:
            wait = int((times[0] + self.window - now).total_seconds()) + 1
            refused = Problem(
                429,
                "too-many-requests",
                "Too many requests",
                f"too many {self.what} from this address; try again in {wait}s",
            )
            refused.headers["Retry-After"] = str(wait)
            raise refused
        times.append(now)

"""Threadline's service with its speech engines timed, its timings readable by the bench.

``python -m bench.timed_voice --port 8083`` serves :func:`bench.voice_probe.probe_app`
(``create_app`` with timed speech engines) behind one outer route, ``GET /bench/stages``,
that hands out what the probe noted per call. The probe's own ``/bench/timings`` is a
route of the app, so the service's access rules refuse it to every caller (401 without a
token, 403 with any); the outer route answers before the app and its rules see the
request. The bot runs in its worker process when ``THREADLINE_BOT_PROCESS`` says so, as
``threadline serve`` runs it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
import uvicorn

from bench import NORTHWIND
from bench.voice_probe import probe_app

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def with_stages() -> App:
    app, timings = probe_app()

    async def outer(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/bench/stages":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})  # fmt: skip
            await send({"type": "http.response.body", "body": orjson.dumps(dict(timings))})
            return
        await app(scope, receive, send)

    return outer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8083)
    args = parser.parse_args()
    os.environ.setdefault("THREADLINE_BUSINESS", str(NORTHWIND))  # run by hand: the demo
    config = uvicorn.Config(
        with_stages(), host=args.host, port=args.port, log_level="warning",
        ws="websockets-sansio", ws_per_message_deflate=False, lifespan="on",
    )  # fmt: skip
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()

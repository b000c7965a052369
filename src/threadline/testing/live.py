"""An ASGI app served for real: uvicorn on a free loopback port, inside the caller's event loop.

Tests serve the service (and fakes of the services it calls) this way, and so
does ``threadline demo``: every request crosses a real socket.
"""

from __future__ import annotations

import asyncio
import socket
from types import TracebackType
from typing import Any

import uvicorn

from threadline.api.serving import HEADER_TIMEOUT, server_config


class LiveServer:
    """``app`` on ``http``/``ws`` (``127.0.0.1:<free port>``) while the block runs."""

    def __init__(
        self, app: Any, log_level: str = "warning", header_timeout: float = HEADER_TIMEOUT
    ) -> None:
        self.app = app
        # Named TCP so that asyncio turns Nagle's algorithm off on the connections it accepts
        # (it does only for sockets whose protocol says TCP): else every response on a
        # kept-alive connection waits about 40 ms for the client's delayed ACK.
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.socket.bind(("127.0.0.1", 0))
        host, port = self.socket.getsockname()
        self.http = f"http://{host}:{port}"
        self.ws = f"ws://{host}:{port}"
        config = server_config(
            app, host=host, port=port, log_level=log_level, header_timeout=header_timeout
        )
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LiveServer:
        self.task = asyncio.create_task(self.server.serve(sockets=[self.socket]))
        while not self.server.started:
            if self.task.done():
                self.task.result()  # a start-up error is raised here
                self.socket.close()
                raise RuntimeError("the server stopped while starting (its log says why)")
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task
        self.socket.close()

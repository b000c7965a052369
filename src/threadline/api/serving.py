"""How the service is served: uvicorn's settings, and a deadline on request headers.

uvicorn closes a kept-alive connection that stays idle, but it waits for ever
on a connection that never finishes its request line and headers: a client
that opens sockets and trickles a byte now and then (slowloris) holds them
all. :class:`HeaderDeadline` closes a connection whose headers are not all in
within ``header_timeout`` seconds of its opening, or of the previous response.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

#: Seconds a client has to send a request's line and headers.
HEADER_TIMEOUT: Final = 10.0
#: Seconds a kept-alive connection may stay idle between requests.
KEEP_ALIVE: Final = 5


class HeaderDeadline(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing connections that are slow to send headers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout: float = getattr(self.config, "header_timeout", HEADER_TIMEOUT)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        # Still waiting for (the rest of) a request's headers: give the connection up.
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def server_config(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    log_level: str = "info",
    header_timeout: float = HEADER_TIMEOUT,
) -> uvicorn.Config:
    """uvicorn's settings for the service: chat frames uncompressed (a few hundred bytes each,
    compressing costs more than it saves), kept-alive connections closed when idle, and a
    deadline on request headers."""
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, lifespan="on",
        http=HeaderDeadline, ws="websockets-sansio", ws_per_message_deflate=False,
        timeout_keep_alive=KEEP_ALIVE,
    )  # fmt: skip
    config.header_timeout = header_timeout  # type: ignore[attr-defined]
    return config

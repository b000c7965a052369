"""The HTTP server gives up connections that are slow to send their headers or sit idle
(issue 14, hole 10): a client trickling bytes cannot hold sockets for ever."""

from __future__ import annotations

import asyncio
import time

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from threadline.testing.live import LiveServer


def _app() -> Starlette:
    async def hello(request: object) -> PlainTextResponse:
        return PlainTextResponse("hello")

    return Starlette(routes=[Route("/", hello)])


async def _closed_after(reader: asyncio.StreamReader, limit: float) -> float | None:
    """Seconds until the server closed the connection, None if it was still open at ``limit``."""
    started = time.monotonic()
    try:
        while await asyncio.wait_for(reader.read(1024), limit):
            pass
    except TimeoutError:
        return None
    return time.monotonic() - started


async def _connect(server: LiveServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = server.http.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def test_a_client_trickling_its_headers_is_cut_off_at_the_deadline() -> None:
    async with LiveServer(_app(), header_timeout=0.5) as server:
        reader, writer = await _connect(server)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")

        async def trickle() -> None:
            for _ in range(20):
                await asyncio.sleep(0.1)
                writer.write(b"X-Slow: 1\r\n")

        dripping = asyncio.create_task(trickle())
        closed = await _closed_after(reader, 3.0)
        dripping.cancel()
        writer.close()
    assert closed is not None and closed < 1.5


async def test_a_connection_that_never_sends_a_byte_is_closed() -> None:
    async with LiveServer(_app(), header_timeout=0.5) as server:
        reader, writer = await _connect(server)
        closed = await _closed_after(reader, 3.0)
        writer.close()
    assert closed is not None and closed < 1.5


async def test_a_prompt_request_is_answered_and_the_next_one_gets_its_own_deadline() -> None:
    async with LiveServer(_app(), header_timeout=0.5) as server:
        reader, writer = await _connect(server)
        for _ in range(3):
            await asyncio.sleep(0.3)  # within the deadline each time, 0.9 s in all
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"hello"), 2.0)
            assert head.startswith(b"HTTP/1.1 200")
        writer.close()

"""The server's own log lines name the request, never a token or personal data in its
query (issue 14, hole 8): sockets take their token as a subprotocol, a ``?token=`` a
client still sends is refused and scrubbed, and look-ups may carry a phone number or an
email."""

from __future__ import annotations

import logging

import httpx
import websockets

from tests.conftest import TOKEN_SECRET, LiveServer
from threadline.api.access_log import LOGGERS, ScrubQuery, scrubbed
from threadline.api.app import create_app
from threadline.api.auth import bearer_subprotocols
from threadline.settings import Settings


def test_query_values_are_replaced_and_their_names_kept() -> None:
    assert scrubbed("/chat/ws?token=eyJ.abc.def") == "/chat/ws?token=…"
    assert scrubbed("/customers?q=maya%40example.com&limit=5") == "/customers?q=…&limit=…"
    assert scrubbed("/health") == "/health"
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", "/x?phone=+14155550123", "1.1", 200),
                               None)  # fmt: skip
    assert ScrubQuery().filter(record)
    assert "+14155550123" not in record.getMessage() and "/x?phone=…" in record.getMessage()


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_the_running_server_logs_no_token_and_no_phone_number(tmp_path) -> None:
    settings = Settings(store=f"sqlite:///{tmp_path / 'log.db'}", token_secret=TOKEN_SECRET)
    server = LiveServer(create_app(settings), log_level="info")
    kept = Kept()
    for name in LOGGERS:
        logging.getLogger(name).addHandler(kept)
    try:
        async with server:
            async with httpx.AsyncClient() as http:
                token = (await http.post(f"{server.http}/chat/session")).json()["token"]
                await http.get(f"{server.http}/health", params={"phone": "+14155550123"})
            offered = bearer_subprotocols(token)
            async with websockets.connect(f"{server.ws}/chat/ws", subprotocols=offered) as ws:
                await ws.send('{"type": "hello"}')
                await ws.recv()
            async with websockets.connect(f"{server.ws}/chat/ws?token={token}") as refused:
                await refused.recv()  # an old client's token: refused, and not logged
    finally:
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(kept)
    logged = "\n".join(kept.lines)
    assert "/health?phone=…" in logged and "/chat/ws?token=…" in logged  # it was logged
    assert token not in logged and "+14155550123" not in logged and "4155550123" not in logged

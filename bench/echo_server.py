"""A bare uvicorn WebSocket echo, the transport floor for the chat benchmark.

It parses each JSON frame and answers one frame, as the chat socket does,
with no log, bot or authorization behind it.
"""

from __future__ import annotations

import argparse

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            frame = orjson.loads(await websocket.receive_text())
            reply = {"type": "event", "event": "message.sent", "text": frame["text"]}
            await websocket.send_text(orjson.dumps(reply).decode())
    except WebSocketDisconnect:
        return


async def document(request: object) -> JSONResponse:
    return JSONResponse({})


app = Starlette(routes=[WebSocketRoute("/echo", echo), Route("/openapi.json", document)])

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning",
                ws="websockets-sansio", ws_per_message_deflate=False)  # fmt: skip

"""A model for the benchmarks: an OpenAI-compatible server that answers at once, by rule.

``python -m bench.model_server --port 8090`` serves ``POST /v1/chat/completions`` as a
bare ASGI app on uvicorn (httptools, uvloop), so that what the agent's side of a
benchmark measures is the agent and not the model. The answers are deterministic:

* a customer's message naming an order ("order 1042") gets a call of ``lookup_order``
  with that number when the request offers it and it was not called since the message,
  else (a triage agent without the tool) a ``transfer_to_agent`` to the agent whose name
  says orders, then the call: a turn with a tool round;
* a request whose last message is a tool's result gets a short text answer;
* anything else gets a short text answer.

A streamed request (``"stream": true``) is answered with :attr:`BenchModel.spoken`: its
first sentence in a few pieces back to back, then, after :attr:`BenchModel.pause`
seconds, the rest; with :attr:`BenchModel.whole`, as a model that is not streamed, the
whole text in one piece after :attr:`BenchModel.pause` seconds.
For each streamed answer the server notes, on ``time.monotonic()`` (one clock for every
process on the machine), when the request arrived, when the piece that completes the
first sentence was handed to the socket, and when the answer ended
(:attr:`BenchModel.streams`, and ``GET /bench/streams``). ``GET /bench/served`` says how
many requests it answered and the seconds it spent on them, from the first byte of the
request body read to the last byte of the answer handed to the socket. ``--delay`` makes
every whole answer take that long, as a real model's would.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MODEL: Final = "bench-model-1"
ORDER: Final = re.compile(r"\border\s+(\d{4})\b", re.IGNORECASE)
TRANSFER: Final = "transfer_to_agent"
AFTER_TOOL: Final = "Thanks for waiting: I have looked that up for you. Anything else?"
PLAIN: Final = "Happy to help with that. Could you tell me a little more?"
#: What a streamed answer says: its first sentence in pieces, then the rest in pieces.
SPOKEN: Final = (
    ("Your order is", " on its way", " and should arrive", " on Friday."),
    (" Is there anything", " else I can", " help you with today?"),
)
JSON: Final = [(b"content-type", b"application/json")]
EVENTS: Final = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


@dataclass
class Streamed:
    """One streamed answer's moments on ``time.monotonic()``, and what it answered."""

    asked: str
    arrived: float
    first_sentence: float = 0.0
    #: ``first_sentence`` on the wall clock (``time.time()``), as the store's times are
    wall: float = 0.0
    ended: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def moments(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("asked", "arrived", "first_sentence", "wall",
                                              "ended")}  # fmt: skip


@dataclass
class BenchModel:
    """The ASGI app (see the module); its knobs may change between requests."""

    pause: float = 1.0
    whole: bool = False
    #: Seconds a whole (not streamed) answer takes, as a real model's would.
    delay: float = 0.0
    spoken: tuple[tuple[str, ...], tuple[str, ...]] = SPOKEN
    requests: int = 0
    seconds: float = 0.0
    streams: list[Streamed] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if method == "POST" and path.endswith("/chat/completions"):
            await self._answer(receive, send)
        elif path == "/bench/served":
            await _respond(send, 200, {"requests": self.requests, "seconds": self.seconds})
        elif path == "/bench/streams":
            await _respond(send, 200, [s.moments() for s in self.streams])
        elif path == "/openapi.json":  # what bench.chat_load.service polls until it answers
            await _respond(send, 200, {})
        else:
            await _respond(send, 404, {"error": {"message": "not here"}})

    async def _answer(self, receive: Receive, send: Send) -> None:
        body = bytearray()
        message = await receive()
        began = time.perf_counter()
        body += message.get("body", b"")
        while message.get("more_body"):
            message = await receive()
            body += message.get("body", b"")
        request = orjson.loads(body)
        if request.get("stream"):
            await self._stream(request, send)
        else:
            if self.delay:
                await asyncio.sleep(self.delay)
            await _respond(send, 200, completion(request))
        self.requests += 1
        self.seconds += time.perf_counter() - began

    async def _stream(self, request: Mapping[str, Any], send: Send) -> None:
        noted = Streamed(_last_user(request), time.monotonic())
        self.streams.append(noted)
        await send({"type": "http.response.start", "status": 200, "headers": EVENTS})
        first, rest = self.spoken
        if self.whole:  # the model takes as long, and says it all at the end
            await asyncio.sleep(self.pause)
        pieces = ["".join(first + rest)] if self.whole else list(first)
        for piece in pieces:
            await send({"type": "http.response.body", "body": _chunk({"content": piece}),
                        "more_body": True})  # fmt: skip
        noted.first_sentence = time.monotonic()
        noted.wall = time.time()
        if not self.whole:
            await asyncio.sleep(self.pause)
            for piece in rest:
                await send({"type": "http.response.body", "body": _chunk({"content": piece}),
                            "more_body": True})  # fmt: skip
        done = _chunk({}, "stop") + b"data: [DONE]\n\n"
        await send({"type": "http.response.body", "body": done, "more_body": False})
        noted.ended = time.monotonic()
        noted.done.set()


def completion(request: Mapping[str, Any]) -> dict[str, Any]:
    """The whole answer to ``request``, by the rules of the module."""
    messages = request.get("messages") or [{}]
    asked = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=0)
    called = {c["function"]["name"] for m in messages[asked:] for c in m.get("tool_calls") or ()}
    offered = {t["function"]["name"]: t["function"] for t in request.get("tools") or ()}
    found = ORDER.search(str(messages[asked].get("content") or ""))
    call: tuple[str, dict[str, Any]] | None = None
    if found is not None and "lookup_order" not in called:
        if "lookup_order" in offered:
            call = ("lookup_order", {"order_number": found.group(1)})
        elif TRANSFER in offered and TRANSFER not in called:
            agents = offered[TRANSFER]["parameters"]["properties"]["agent"]["enum"]
            to = next((a for a in agents if "order" in a), agents[0])
            call = (TRANSFER, {"agent": to, "summary": "a question about an order"})
    message: dict[str, Any] = {"role": "assistant", "content": PLAIN}
    if call is not None:
        message = {"role": "assistant", "content": None, "tool_calls": [{
            "id": f"call_{len(called)}", "type": "function",
            "function": {"name": call[0], "arguments": orjson.dumps(call[1]).decode()},
        }]}  # fmt: skip
    elif messages[-1].get("role") == "tool":
        message["content"] = AFTER_TOOL
    return {
        "id": "chatcmpl-bench", "object": "chat.completion", "model": MODEL,
        "choices": [{"index": 0, "message": message,
                     "finish_reason": "tool_calls" if call else "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 12},
    }  # fmt: skip


def _last_user(request: Mapping[str, Any]) -> str:
    said = [m for m in request.get("messages") or () if m.get("role") == "user"]
    return str(said[-1].get("content") or "") if said else ""


def _chunk(delta: Mapping[str, Any], finish: str | None = None) -> bytes:
    chunk = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "model": MODEL,
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


async def _respond(send: Send, status: int, value: Any) -> None:
    await send({"type": "http.response.start", "status": status, "headers": JSON})
    await send({"type": "http.response.body", "body": orjson.dumps(value)})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def config(app: BenchModel, port: int, host: str = "127.0.0.1") -> uvicorn.Config:
    """How the benchmarks serve it: the fastest uvicorn has, without access logs."""
    return uvicorn.Config(app, host=host, port=port, loop="uvloop", http="httptools",
                          lifespan="on", log_level="warning", access_log=False)  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pause", type=float, default=1.0)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    uvicorn.Server(config(BenchModel(pause=args.pause, delay=args.delay), args.port)).run()

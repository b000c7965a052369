"""A local server that speaks OpenAI's chat-completions API, answering from a script.

Tests (and the evaluation suite) run a model provider against it over real HTTP:
``POST /v1/chat/completions`` takes the next :class:`Scripted` answer (a completion,
streamed or whole, a status such as 429 or 503, a delay longer than the client waits),
and records every request it was sent (:attr:`ScriptedModel.requests`). With the script
empty it answers 500, so a test that asks more than it scripted fails loudly.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass(frozen=True)
class Call:
    """A tool call the scripted model makes (``arguments`` sent as is: malformed JSON too)."""

    name: str
    arguments: str
    id: str = ""


@dataclass(frozen=True)
class Scripted:
    """One answer: ``text`` and ``calls``, or an error ``status``, after ``delay`` seconds;
    ``stream`` splits the text into ``pieces`` and each call's arguments in two."""

    text: str = ""
    calls: tuple[Call, ...] = ()
    status: int = 200
    delay: float = 0.0
    pieces: int = 3
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Seconds between streamed pieces.
    gap: float = 0.0
    #: Stop streaming after this many pieces, without ``[DONE]`` (a provider dying).
    cut_after: int | None = None


def say(text: str, **options: Any) -> Scripted:
    return Scripted(text=text, **options)


def call(*calls: Call, text: str = "", **options: Any) -> Scripted:
    return Scripted(text=text, calls=calls, **options)


def failing(status: int, **options: Any) -> Scripted:
    return Scripted(status=status, **options)


class ScriptedModel:
    """The server's app and its script; run it with :class:`~threadline.testing.live.LiveServer`."""

    def __init__(self, script: Sequence[Scripted] = (), model: str = "scripted-1") -> None:
        self.script: deque[Scripted] = deque(script)
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._answer, methods=["POST"])])

    def then(self, *answers: Scripted) -> ScriptedModel:
        self.script.extend(answers)
        return self

    async def _answer(self, request: Request) -> Response:
        self.requests.append(await request.json())
        self.headers.append(dict(request.headers))
        if not self.script:
            return JSONResponse({"error": {"message": "nothing scripted"}}, status_code=500)
        answer = self.script.popleft()
        if answer.delay:
            await asyncio.sleep(answer.delay)
        if answer.status != 200:
            error = {"error": {"message": f"scripted {answer.status}"}}
            return JSONResponse(error, status_code=answer.status, headers=dict(answer.headers))
        if self.requests[-1].get("stream"):
            return StreamingResponse(self._chunks(answer), media_type="text/event-stream")
        return JSONResponse(self._whole(answer))

    def _whole(self, answer: Scripted) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": answer.text or None}
        if answer.calls:
            message["tool_calls"] = [
                {"id": c.id or f"call_{n}", "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments}}
                for n, c in enumerate(answer.calls)
            ]  # fmt: skip
        return {
            "id": "chatcmpl-scripted", "object": "chat.completion", "model": self.model,
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if answer.calls else "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": len(answer.text.split())},
        }  # fmt: skip

    async def _chunks(self, answer: Scripted) -> AsyncIterator[bytes]:
        for sent, delta in enumerate(_deltas(answer)):
            if answer.cut_after is not None and sent >= answer.cut_after:
                return  # the provider died mid-answer
            yield self._chunk(delta, None)
            if answer.gap:
                await asyncio.sleep(answer.gap)
        yield self._chunk({}, "tool_calls" if answer.calls else "stop") + b"data: [DONE]\n\n"

    def _chunk(self, delta: dict[str, Any], finish: str | None) -> bytes:
        chunk = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "model": self.model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
        return f"data: {json.dumps(chunk)}\n\n".encode()


def _deltas(answer: Scripted) -> list[dict[str, Any]]:
    words = answer.text.split(" ") if answer.text else []
    size = max(1, -(-len(words) // max(1, answer.pieces)))
    out: list[dict[str, Any]] = []
    for i in range(0, len(words), size):
        tail = " " if i + size < len(words) else ""
        out.append({"role": "assistant", "content": " ".join(words[i : i + size]) + tail})
    for n, c in enumerate(answer.calls):
        half = len(c.arguments) // 2
        out.append({"tool_calls": [{"index": n, "id": c.id or f"call_{n}", "type": "function",
                                    "function": {"name": c.name,
                                                 "arguments": c.arguments[:half]}}]})  # fmt: skip
        out.append({"tool_calls": [{"index": n, "function": {"arguments": c.arguments[half:]}}]})
    return out

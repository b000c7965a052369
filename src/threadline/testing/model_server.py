"""A local server that speaks OpenAI's chat-completions API, answering from a script.

Tests (and the evaluation suite) run a model provider against it over real HTTP:
``POST /v1/chat/completions`` takes the next :class:`Scripted` answer (a completion,
streamed or whole, a status such as 429 or 503, a delay longer than the client waits),
and records every request it was sent (:attr:`ScriptedModel.requests`). With the script
empty it answers 500, so a test that asks more than it scripted fails loudly.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from threadline.testing.chat_wire import Call, chunks, completion

__all__ = ["Call", "Scripted", "ScriptedModel", "call", "failing", "say"]


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
            stream = chunks(self.model, answer.text, answer.calls, pieces=answer.pieces,
                            gap=answer.gap, cut_after=answer.cut_after)  # fmt: skip
            return StreamingResponse(stream, media_type="text/event-stream")
        return JSONResponse(completion(self.model, answer.text, answer.calls))

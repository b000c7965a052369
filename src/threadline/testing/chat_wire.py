"""OpenAI's chat-completions wire format, as the local model servers of the tests answer in.

A whole answer is one ``chat.completion`` object (:func:`completion`); a streamed one is
server-sent ``chat.completion.chunk`` events (:func:`chunks`): the text in pieces, each
tool call's arguments in two fragments, then the finish reason and ``[DONE]``. The
scripted server (:mod:`threadline.testing.model_server`) and the pack's test provider
(:mod:`threadline.testing.pack_model`) both build their answers here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Call:
    """A tool call a server answers with (``arguments`` sent as is: malformed JSON too)."""

    name: str
    arguments: str
    id: str = ""


def completion(model: str, text: str, calls: Sequence[Call] = ()) -> dict[str, Any]:
    """A whole answer: the assistant's ``text`` (None when empty) and ``calls``."""
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = [
            {"id": c.id or f"call_{n}", "type": "function",
             "function": {"name": c.name, "arguments": c.arguments}}
            for n, c in enumerate(calls)
        ]  # fmt: skip
    return {
        "id": "chatcmpl-local", "object": "chat.completion", "model": model,
        "choices": [{"index": 0, "message": message,
                     "finish_reason": "tool_calls" if calls else "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": len(text.split())},
    }  # fmt: skip


def deltas(text: str, calls: Sequence[Call] = (), pieces: int = 3) -> list[dict[str, Any]]:
    """The streamed deltas of an answer: ``text`` in about ``pieces`` pieces (split between
    words), then each call, its arguments in two fragments."""
    words = text.split(" ") if text else []
    size = max(1, -(-len(words) // max(1, pieces)))
    out: list[dict[str, Any]] = []
    for i in range(0, len(words), size):
        tail = " " if i + size < len(words) else ""
        out.append({"role": "assistant", "content": " ".join(words[i : i + size]) + tail})
    for n, c in enumerate(calls):
        half = len(c.arguments) // 2
        out.append({"tool_calls": [{"index": n, "id": c.id or f"call_{n}", "type": "function",
                                    "function": {"name": c.name,
                                                 "arguments": c.arguments[:half]}}]})  # fmt: skip
        out.append({"tool_calls": [{"index": n, "function": {"arguments": c.arguments[half:]}}]})
    return out


def chunk(model: str, delta: dict[str, Any], finish: str | None) -> bytes:
    """One server-sent event carrying ``delta`` (and the finish reason, on the last)."""
    body = {"id": "chatcmpl-local", "object": "chat.completion.chunk", "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
    return f"data: {json.dumps(body)}\n\n".encode()


async def chunks(
    model: str,
    text: str,
    calls: Sequence[Call] = (),
    *,
    pieces: int = 3,
    gap: float = 0.0,
    cut_after: int | None = None,
) -> AsyncIterator[bytes]:
    """The answer as a stream: ``gap`` seconds between pieces; ``cut_after`` pieces, then
    nothing more and no ``[DONE]`` (a provider dying mid-answer)."""
    for sent, delta in enumerate(deltas(text, calls, pieces)):
        if cut_after is not None and sent >= cut_after:
            return
        yield chunk(model, delta, None)
        if gap:
            await asyncio.sleep(gap)
    yield chunk(model, {}, "tool_calls" if calls else "stop") + b"data: [DONE]\n\n"

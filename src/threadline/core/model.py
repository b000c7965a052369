"""What an agent says to a language model and hears back: the model-provider port.

A :class:`ModelRequest` is the chat so far (:class:`ChatMessage`), the tools the agent
may call (:class:`ToolSpec`, parameters as JSON Schema) and the sampling settings; a
:class:`Completion` is the model's text and the tool calls it asks for. A provider
answers whole (:meth:`ModelProvider.complete`) or as it generates
(:meth:`ModelProvider.stream`: :class:`TextDelta` pieces, then the :class:`Completion`).

A tool call whose arguments are not a JSON object, or that names a tool the request did
not offer, is kept with its problem (:attr:`ToolCall.problem`): the agent decides what
to do about it, and it is recorded, never silently dropped. Nothing here does I/O.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Self

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the model may call: its name, what it does, its parameters' JSON Schema."""

    name: str
    description: str
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model asks for. ``arguments`` is the parsed JSON object; ``raw`` what the
    model sent; ``problem`` says why it cannot run as asked (None: it can)."""

    id: str
    name: str
    arguments: Mapping[str, Any]
    raw: str
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of the chat: ``tool_calls`` on an assistant's, ``tool_call_id`` on the
    result of one (role ``tool``)."""

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """What a provider is asked: the chat, the tools on offer, the sampling settings."""

    messages: tuple[ChatMessage, ...]
    tools: tuple[ToolSpec, ...] = ()
    temperature: float = 0.0
    max_tokens: int | None = None
    #: Carried to the provider's logs and retries: the turn this request serves.
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Completion:
    """The model's answer: its text, the tool calls it asks for, why it stopped."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str = "stop"
    model: str = ""
    usage: Usage = Usage()
    #: Requests made for it (1, or more after retries).
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the text as the model generates it."""

    text: str


StreamEvent = TextDelta | Completion


class ModelProvider(ABC):
    """A language model behind an API: answers a request whole or as a stream."""

    #: What the lineage of a turn names: ``<provider>:<model>``.
    id: str

    @abstractmethod
    async def complete(self, request: ModelRequest) -> Completion:
        """The whole answer (ModelUnavailable when the provider cannot give one)."""

    @abstractmethod
    def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        """The text as it is generated, then the :class:`Completion` (last)."""

    async def close(self) -> None:  # noqa: B027 - most providers hold nothing to close
        """Release connections."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def checked_calls(calls: Sequence[ToolCall], offered: Sequence[ToolSpec]) -> tuple[ToolCall, ...]:
    """``calls`` with a problem noted on each that names a tool not ``offered``."""
    names = {tool.name for tool in offered}
    return tuple(
        call if call.problem is not None or call.name in names
        else ToolCall(call.id, call.name, call.arguments, call.raw,
                      f"the model called {call.name!r}, a tool it was not offered")
        for call in calls
    )  # fmt: skip

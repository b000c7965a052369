"""What a chat-completions request tells a model, read from its JSON alone.

The pack's test provider (:mod:`threadline.testing.pack_model`) answers from this and from
nothing else: the system prompt's facts (today's date, the locations and their hours,
what the conversation knows, the proof the contact has given, what waits for approval),
the customer's messages, the tools offered, and the calls made since the customer's last
message with what each was told. The prompt's lines are the model-backed agent's own
(:func:`threadline.agents.model_agent.system_prompt`); a request without them is read as
knowing nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final

_TODAY: Final = re.compile(r"^Today is \w+ (\d{4}-\d{2}-\d{2})\b", re.MULTILINE)
_PLACE: Final = re.compile(r"^Location (\S+): (.+?), (.+)\. Hours: (.+)\.$", re.MULTILINE)
_KNOWN: Final = re.compile(r"^Known in this conversation: (.+)$", re.MULTILINE)
_LEVEL: Final = re.compile(r"proven who they are at level: (\S+?)\.?$", re.MULTILINE)
_WAITING: Final = re.compile(r"^Waiting for approval: (.+)$", re.MULTILINE)
_PHONE: Final = "You are on a phone call"


class UnreadableRequest(ValueError):
    """A body that is not a chat-completions request."""


@dataclass(frozen=True, slots=True)
class Offered:
    """A tool the request offers: its name, description and parameters' JSON Schema."""

    name: str
    description: str
    parameters: Mapping[str, Any]

    @property
    def properties(self) -> Mapping[str, Any]:
        properties = self.parameters.get("properties")
        return properties if isinstance(properties, Mapping) else {}

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(str(name) for name in self.parameters.get("required") or ())

    def choices(self, parameter: str) -> tuple[str, ...]:
        """The values a parameter is limited to (its ``enum``; none: any)."""
        schema = self.properties.get(parameter)
        enum = schema.get("enum") if isinstance(schema, Mapping) else None
        return tuple(str(v) for v in enum) if isinstance(enum, list) else ()


@dataclass(frozen=True, slots=True)
class Place:
    """A location the prompt describes: its id, name, address and weekly hours as written."""

    id: str
    name: str
    address: str
    hours: str


@dataclass(frozen=True, slots=True)
class Told:
    """A call made since the customer's last message, and what the model was told of it."""

    tool: str
    arguments: Mapping[str, Any]
    told: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One request, as a model reads it."""

    said: str
    earlier: tuple[str, ...] = ()
    tools: Mapping[str, Offered] = field(default_factory=dict)
    calls: tuple[Told, ...] = ()
    today: date | None = None
    voice: bool = False
    places: tuple[Place, ...] = ()
    known: Mapping[str, str] = field(default_factory=dict)
    level: str | None = None
    waiting: tuple[str, ...] = ()
    stream: bool = False

    @property
    def proven(self) -> bool:
        """Whether the contact has proven who they are at all."""
        return self.level not in (None, "none")

    def place(self, place_id: str | None) -> Place | None:
        return next((p for p in self.places if p.id == place_id), None)


def read_request(body: Any) -> ChatRequest:
    """The request ``body`` (its JSON, parsed); UnreadableRequest when it is not one."""
    if not isinstance(body, Mapping) or not isinstance(body.get("messages"), list):
        raise UnreadableRequest("a chat-completions request has `messages`")
    messages = [m for m in body["messages"] if isinstance(m, Mapping)]
    system = "\n".join(_text(m) for m in messages if m.get("role") == "system")
    users = [n for n, m in enumerate(messages) if m.get("role") == "user"]
    if not users:
        raise UnreadableRequest("a chat-completions request has a user message")
    last = users[-1]
    today = _TODAY.search(system)
    known = _KNOWN.search(system)
    level = _LEVEL.search(system)
    waiting = _WAITING.search(system)
    return ChatRequest(
        said=_text(messages[last]),
        earlier=tuple(_text(messages[n]) for n in users[:-1]),
        tools=_tools(body.get("tools")),
        calls=_calls(messages[last + 1 :]),
        today=date.fromisoformat(today.group(1)) if today else None,
        voice=_PHONE in system,
        places=tuple(Place(*m.groups()) for m in _PLACE.finditer(system)),
        known=_pairs(known.group(1)) if known else {},
        level=level.group(1) if level else None,
        waiting=tuple(w.strip() for w in waiting.group(1).split(",")) if waiting else (),
        stream=bool(body.get("stream")),
    )


def _text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content parts: the text ones
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return str(content or "")


def _tools(tools: Any) -> dict[str, Offered]:
    out: dict[str, Offered] = {}
    for tool in tools if isinstance(tools, list) else ():
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping) or not function.get("name"):
            continue
        parameters = function.get("parameters")
        out[str(function["name"])] = Offered(
            str(function["name"]), str(function.get("description") or ""),
            parameters if isinstance(parameters, Mapping) else {},
        )  # fmt: skip
    return out


def _calls(messages: Sequence[Mapping[str, Any]]) -> tuple[Told, ...]:
    """The calls the assistant made after the customer's message, each with its result."""
    asked: dict[str, tuple[str, Mapping[str, Any]]] = {}
    out: list[Told] = []
    for message in messages:
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            asked[str(call.get("id"))] = (str(function.get("name")),
                                          _object(function.get("arguments")))  # fmt: skip
        if message.get("role") == "tool":
            tool, arguments = asked.get(str(message.get("tool_call_id")), ("", {}))
            out.append(Told(tool, arguments, _object(message.get("content"))))
    return tuple(out)


def _object(raw: Any) -> Mapping[str, Any]:
    try:
        value = json.loads(raw) if isinstance(raw, str) and raw.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, Mapping) else {}


def _pairs(text: str) -> dict[str, str]:
    """``a=1, b=x`` as a mapping (a value may hold commas: a pair starts at ``, name=``)."""
    out: dict[str, str] = {}
    for part in re.split(r", (?=[A-Za-z_][\w-]*=)", text):
        name, sep, value = part.partition("=")
        if sep:
            out[name.strip()] = value.strip()
    return out

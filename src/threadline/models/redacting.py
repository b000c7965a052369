"""Nothing reaches a model provider that the task does not need: every prompt redacted.

:class:`RedactingProvider` wraps any provider. Before a request leaves, every message's
text, every tool call's arguments and every tool result goes through the redactor:
payment cards (a card split over the customer's consecutive messages too), security
codes and national identifiers always; phone numbers and e-mail addresses too unless the
agent's task needs them (``keep``: the kinds a task may send). A card keeps at most its
last four digits, as in the log. What was taken out of the request is reported to
``on_redacted`` (kinds and counts, never the data), for the turn to record.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import Final

from threadline.core.model import (
    Completion,
    ModelProvider,
    ModelRequest,
    StreamEvent,
    ToolCall,
)
from threadline.privacy import DEFAULT_KINDS, KINDS, Carry, Redactor

#: What a provider never receives, whatever the task.
NEVER_SENT: Final = DEFAULT_KINDS
#: Redacted texts kept, by digest, for the requests that send them again.
REMEMBERED: Final = 4096
Report = Callable[[ModelRequest, Mapping[str, int]], None]


@dataclass(frozen=True, slots=True)
class _Done:
    """A text as it may leave, what it leaves for the next message, and the kinds taken."""

    text: str
    carry: Carry | None
    kinds: tuple[str, ...]


class RedactingProvider(ModelProvider):
    """``inner``, sent only redacted requests (see the module)."""

    def __init__(
        self, inner: ModelProvider, *, keep: Collection[str] = (), on_redacted: Report | None = None
    ) -> None:
        kept = frozenset(keep)
        if kept & NEVER_SENT or kept - set(KINDS):
            raise ValueError(f"a task may keep only {sorted(set(KINDS) - NEVER_SENT)}, not"
                             f" {sorted(kept)}")  # fmt: skip
        self.inner = inner
        self.id = inner.id
        self.redactor = Redactor(kinds=set(KINDS) - kept)
        self.on_redacted = on_redacted
        self._done: dict[tuple[bytes, Carry | None], _Done] = {}

    async def complete(self, request: ModelRequest) -> Completion:
        return await self.inner.complete(self.redacted(request))

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        async for event in self.inner.stream(self.redacted(request)):
            yield event

    async def close(self) -> None:
        await self.inner.close()

    def forget(self) -> None:
        """Drop every redacted text kept (a customer was erased: theirs may be among them)."""
        self._done.clear()

    def redacted(self, request: ModelRequest) -> ModelRequest:
        """``request`` as it may leave: its texts redacted, what went reported."""
        taken: Counter[str] = Counter()
        carry: Carry | None = None
        messages = []
        for message in request.messages:
            if message.role == "system":
                # The instructions, one statement per line: most lines are the same on
                # every turn (the business's words), a few change (the time, the proof).
                lines = message.content.split("\n")
                text = "\n".join(self._text(line, taken, None)[0] for line in lines)
                messages.append(replace(message, content=text))
                continue
            # A card may be split over a customer's consecutive messages: carry it along.
            text, carry = self._text(message.content, taken,
                                     carry if message.role == "user" else None)  # fmt: skip
            calls = tuple(self._call(call, taken) for call in message.tool_calls)
            messages.append(replace(message, content=text, tool_calls=calls))
        out = replace(request, messages=tuple(messages))
        if taken and self.on_redacted is not None:
            self.on_redacted(out, dict(taken))
        return out

    def _text(
        self, text: str, taken: Counter[str], carry: Carry | None
    ) -> tuple[str, Carry | None]:
        if not text:
            return text, None
        # Every turn sends the instructions and the history again: each text is redacted
        # once. The cache holds texts only as they may leave, keyed by digest, and is
        # emptied when a customer is erased (:meth:`forget`).
        key = (hashlib.blake2b(text.encode(), digest_size=16).digest(), carry)
        done = self._done.get(key)
        if done is None:
            redacted = self.redactor.redact(text, carry=carry)
            kinds = tuple(f.kind for f in redacted.findings if f.kind in self.redactor.kinds)
            done = _Done(redacted.text, redacted.carry, kinds)
            if len(self._done) >= REMEMBERED:
                del self._done[next(iter(self._done))]  # the oldest
            self._done[key] = done
        taken.update(done.kinds)
        return done.text, done.carry

    def _call(self, call: ToolCall, taken: Counter[str]) -> ToolCall:
        raw, _ = self._text(call.raw, taken, None)
        if raw == call.raw:
            return call
        return ToolCall(call.id, call.name, {}, raw, call.problem)

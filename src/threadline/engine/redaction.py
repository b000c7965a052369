"""What must never be stored is taken out of events before they are recorded.

Card numbers, security codes and national identifiers (PCI DSS 3.3 and 3.4)
are redacted from every personal-data field (``Pii`` in the catalogue) of
every event on the one write path, :meth:`Conversations.record`, so no
channel, agent or person can put them in the log, its snapshots or anything
derived from it. A card keeps at most its last four digits
(``[card ending 1111]``).

A customer may split a card over consecutive messages ("4111 1111", then
"1111 1111"). The start of a card is redacted on its own and remembered, in
memory only and never its digits beyond the first four, per conversation leg,
so the next message's digits that complete it are redacted too.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Final

from threadline.core.catalogue import CATALOGUE
from threadline.core.events import Event
from threadline.privacy import Carry, Redactor

#: Customer text that may continue a card begun in the message before.
CONTINUED: Final = frozenset({("message.received", "text"), ("utterance.transcribed", "text")})
#: Legs whose unfinished card start is remembered, at most.
CARRIES: Final = 10_000
#: Texts found clean that are remembered, at most, and the longest remembered.
CLEAN_TEXTS: Final = 4096
CLEAN_TEXT: Final = 2000
#: How a redacted card or security code reads in stored text.
PAYMENT_MARK: Final = re.compile(r"\[(?:card ending \d{4}|card digits|security code)\]")


class Redaction:
    """Redacts cards, security codes and national ids from events about to be recorded."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        self.redactor = redactor or Redactor()
        self._carries: OrderedDict[tuple[str, str | None], Carry] = OrderedDict()
        self._fields: dict[tuple[str, int], tuple[str, ...]] = {}
        self._clean: OrderedDict[str, None] = OrderedDict()

    def apply(self, events: Sequence[Event]) -> list[Event]:
        """``events`` with what must never be stored redacted (unchanged events as they are)."""
        return [self._event(event) for event in events]

    def _event(self, event: Event) -> Event:
        fields = self._pii(event)
        if not fields:
            return event
        payload: dict[str, Any] | None = None
        for name in fields:
            value = event.payload.get(name)
            if value is None:
                continue
            cleaned: Any
            if (event.type, name) in CONTINUED and event.actor.kind == "customer":
                cleaned = self._continued(event, value) if isinstance(value, str) else value
            else:
                cleaned = self._value(value)
            if cleaned is not value and cleaned != value:
                payload = payload if payload is not None else dict(event.payload)
                payload[name] = cleaned
        return event if payload is None else replace(event, payload=payload)

    def _pii(self, event: Event) -> tuple[str, ...]:
        version = event.version or CATALOGUE.current_version(event.type)
        key = (event.type, version)
        fields = self._fields.get(key)
        if fields is None:
            fields = tuple(sorted(CATALOGUE.pii_fields(event.type, version)))
            self._fields[key] = fields
        return fields

    def _text(self, text: str) -> str:
        """``text`` redacted. The agent says the same words and values over and over: texts
        found clean are remembered (only those, so nothing kept here needed redacting)."""
        if text in self._clean:
            self._clean.move_to_end(text)
            return text
        redacted = self.redactor.redact(text).text
        if redacted == text and len(text) <= CLEAN_TEXT:
            self._clean[text] = None
            if len(self._clean) > CLEAN_TEXTS:
                self._clean.popitem(last=False)
        return redacted

    def _continued(self, event: Event, text: str) -> str:
        leg = (event.conversation_id, event.leg_id)
        carry = self._carries.pop(leg, None)
        if carry is None and text in self._clean:
            return text  # clean before, and nothing carried over: clean now
        redacted = self.redactor.redact(text, carry=carry)
        if carry is None and redacted.text == text and len(text) <= CLEAN_TEXT:
            self._clean[text] = None
        if redacted.carry is not None:
            self._carries[leg] = redacted.carry
            while len(self._carries) > CARRIES:
                self._carries.popitem(last=False)
        return redacted.text

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, dict):
            return {k: self._value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._value(v) for v in value]
        return value


_SHARED: Final = Redaction()


def redacted(event: Event) -> Event:
    """``event`` with what must never be stored redacted, for the streams written without
    :class:`~threadline.engine.conversations.Conversations` (a customer's own, a store's)."""
    return _SHARED.apply([event])[0]

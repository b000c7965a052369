"""Slots from typed or spoken text: references, locations, choices, dates and times.

A :class:`SlotReader` is built once per business pack from its slot
declarations. Spoken numbers are turned into digits first, so the patterns
only ever see digits. A reference is found after one of its cue words ("order
5120", "postcode 60601"), or on its own when it has exactly its bare number of
digits; a location by its name, short name, city or aliases; a choice by the
words of one of its values. No two slots take the same words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Final

from threadline.agents.numbers import clean, normalise
from threadline.agents.when import BARE_HOUR, DATES, TIMES, Table
from threadline.business import Business
from threadline.business.behaviour import (
    ChoiceSlot,
    DateSlot,
    LocationSlot,
    ReferenceSlot,
    TimeSlot,
)

#: Words that say nothing beyond the slots around them ("tomorrow at 11 please"); a pack's
#: cue words and slot labels count too.
FILLERS: Final = frozenset({
    "a", "about", "actually", "and", "around", "at", "be", "branch", "by", "can", "code",
    "could", "day", "do", "does", "fine", "for", "great", "how", "i", "in", "instead", "is",
    "it", "it's", "its", "let's", "lets", "location", "maybe", "my", "no", "number", "of", "ok",
    "okay", "on", "please", "pls", "say", "shop", "store", "sure", "that", "the", "then",
    "there", "think", "time", "to", "uh", "um", "what", "works", "would", "yeah", "yep", "yes",
})  # fmt: skip


@dataclass(frozen=True, slots=True)
class Extraction:
    """Slots found in a text, the normalised text, and the words outside any slot."""

    values: Mapping[str, str]
    text: str
    residual: tuple[str, ...] = field(default=())
    fillers: frozenset[str] = FILLERS

    @property
    def only_slots(self) -> bool:
        """True when the text is slots and filler words only ("Uptown, tomorrow at 11")."""
        return bool(self.values) and all(w in self.fillers for w in self.residual)


class Scanner:
    """Finds matches in a text, never two overlapping: what one slot takes, no other sees."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.taken: list[tuple[int, int]] = []

    def _free(self, match: re.Match[str]) -> bool:
        start, end = match.span()
        return all(end <= a or start >= b for a, b in self.taken)

    def take(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        """The first free match of ``pattern``, now taken."""
        match = next((m for m in pattern.finditer(self.text) if self._free(m)), None)
        if match is not None:
            self.taken.append(match.span())
        return match

    def resolve(self, table: Table, today: date) -> str | None:
        """The value of the earliest free match of any pattern in ``table``, now taken."""
        if table.any.search(self.text) is None:
            return None
        found: list[tuple[int, int, re.Match[str]]] = []
        for index, (pattern, _) in enumerate(table.entries):
            match = next((m for m in pattern.finditer(self.text) if self._free(m)), None)
            if match is not None:
                found.append((match.start(), index, match))
        for _, index, match in sorted(found, key=lambda f: (f[0], f[1])):
            value = table.entries[index][1](match, today)
            if value is not None:
                self.taken.append(match.span())
                return value
        return None

    def first(self, named: tuple[tuple[str, re.Pattern[str]], ...]) -> str | None:
        """The value whose words come first in the text, its words now taken."""
        hits = [(m.start(), value, p) for value, p in named if (m := p.search(self.text))]
        if not hits:
            return None
        _, value, pattern = min(hits, key=lambda h: h[0])
        self.take(pattern)
        return value

    def residual(self) -> tuple[str, ...]:
        chars = list(self.text)
        for a, b in self.taken:
            chars[a:b] = " " * (b - a)
        return tuple(w for w in (clean(w) for w in "".join(chars).split()) if w)


def _phrase(words: str) -> str:
    """A phrase as a pattern: its words in order, any spacing, whole words only."""
    parts = [re.escape(w) for w in normalise(words).split()]
    pattern = r"\s+".join(parts)
    if words[:1].isalnum():
        pattern = r"\b" + pattern
    return pattern + (r"(?!\w)" if words[-1:].isalnum() else "")


def _alternatives(phrases: Iterable[str]) -> str:
    unique = sorted({p for p in phrases if p.strip()}, key=len, reverse=True)
    return "|".join(_phrase(p) for p in unique)


@dataclass(frozen=True, slots=True)
class _Reference:
    name: str
    cued: re.Pattern[str] | None
    bare: re.Pattern[str] | None

    @classmethod
    def of(cls, name: str, spec: ReferenceSlot) -> _Reference:
        low, high = spec.digits
        cued = None
        if spec.cues:
            cued = re.compile(rf"(?:{_alternatives(spec.cues)})\s*(?:is\s+|was\s+|:\s*)?#?\s*"
                              rf"(\d{{{low},{high}}})\b")  # fmt: skip
        bare = None
        if spec.bare_digits:
            bare = re.compile(rf"(?<![\d:.\-/])\b(\d{{{spec.bare_digits}}})\b(?![:.\-/]\d)")
        return cls(name, cued, bare)


def _named(values: Mapping[str, Iterable[str]]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    return tuple((value, re.compile(_alternatives(words))) for value, words in values.items()
                 if any(w.strip() for w in words))  # fmt: skip


class SlotReader:
    """Reads a pack's slots out of a customer's text."""

    def __init__(self, business: Business) -> None:
        slots = business.pack.slots
        self.order = tuple(slots)
        self.references = tuple(_Reference.of(n, s) for n, s in slots.items()
                                if isinstance(s, ReferenceSlot))  # fmt: skip
        places = {loc.id: (loc.id.replace("-", " "), loc.name, loc.short_name, *loc.aliases)
                  for loc in business.locations}  # fmt: skip
        self.locations = tuple((n, _named(places)) for n, s in slots.items()
                               if isinstance(s, LocationSlot))  # fmt: skip
        self.choices = tuple((n, _named(s.values)) for n, s in slots.items()
                             if isinstance(s, ChoiceSlot))  # fmt: skip
        self.dates = tuple(n for n, s in slots.items() if isinstance(s, DateSlot))
        self.times = tuple(n for n, s in slots.items() if isinstance(s, TimeSlot))
        words = {w for s in slots.values() for w in normalise(s.label).split()}
        words |= {w for s in slots.values() if isinstance(s, ReferenceSlot)
                  for cue in s.cues for w in normalise(cue).split()}  # fmt: skip
        self.fillers = FILLERS | {clean(w) for w in words if clean(w)}

    def read(self, text: str, now: datetime, business: Business,
             *, expecting: str | None = None) -> Extraction:  # fmt: skip
        """The slots in ``text``; dates against ``now`` on ``business``'s clock.

        ``expecting`` names the slot the conversation waits for: when it is a
        time slot, a bare hour ("11", "eleven") is read as that time.
        """
        scan = Scanner(normalise(text))
        today = business.today(now)
        found: dict[str, str] = {}
        if self.dates:
            _put(found, self.dates[0], scan.resolve(DATES, today))
        if self.times:
            at = scan.resolve(TIMES, today)
            if at is None and expecting in self.times:
                at = scan.resolve(BARE_HOUR, today)
            _put(found, self.times[0], at)
        for ref in self.references:
            match = scan.take(ref.cued) if ref.cued else None
            _put(found, ref.name, match.group(1) if match else None)
        for ref in self.references:
            if ref.name not in found and ref.bare is not None:
                match = scan.take(ref.bare)
                _put(found, ref.name, match.group(1) if match else None)
        for name, named in (*self.locations, *self.choices):
            _put(found, name, scan.first(named))
        values = {name: found[name] for name in self.order if name in found}
        return Extraction(values, scan.text, scan.residual(), self.fillers)


def _put(found: dict[str, str], name: str, value: str | None) -> None:
    if value is not None:
        found[name] = value

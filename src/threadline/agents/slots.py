"""Slot extraction: order number, date, time, store and postcode from typed or spoken text.

Spoken numbers are turned into digits first ("ten forty two" and "one zero
four two" become ``1042``, "at eleven thirty" becomes ``11:30``), so the
patterns below only ever see digits. Dates are resolved against a clock in the
business's zone. Values are canonical strings, as ``slot.filled`` records them:
``order_number`` "1042", ``date`` "2025-03-05", ``time`` "11:00" (24 hours),
``store`` "oak-broadway", ``postcode`` "94612".

A bare hour ("at 3") is read within store hours: 1–7 are afternoon, 8–12 morning/noon.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from threadline.business.values import TIMEZONE

ORDER_NUMBER: Final = "order_number"
DATE: Final = "date"
TIME: Final = "time"
STORE: Final = "store"
POSTCODE: Final = "postcode"

_UNITS: Final = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4,
    "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
}  # fmt: skip
_TEENS: Final = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS: Final = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
_ZERO_LETTERS: Final = frozenset({"oh", "o"})
_SCALES: Final = {"hundred": 100, "thousand": 1000}
_TIME_BEFORE: Final = frozenset({"at", "around", "about", "by", "until", "till", "from"})
_TIME_AFTER: Final = frozenset({"am", "pm", "a.m.", "p.m.", "a.m", "p.m", "o'clock", "oclock"})

_WEEKDAYS: Final = {
    "monday": 0, "mon": 0, "tuesday": 1, "tues": 1, "tue": 1, "wednesday": 2, "wed": 2,
    "thursday": 3, "thurs": 3, "thur": 3, "thu": 3, "friday": 4, "fri": 4,
    "saturday": 5, "sat": 5, "sunday": 6, "sun": 6,
}  # fmt: skip
_MONTHS: Final = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
    "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}  # fmt: skip
_MONTH: Final = (
    r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_LATER_IN_THE_DAY: Final = frozenset({"in the afternoon", "in the evening", "tonight"})
_MERIDIEM: Final = r"(a\.?m\.?|p\.?m\.?|in the morning|in the afternoon|in the evening|tonight)"

_STORES: Final = (
    ("sf-market", re.compile(
        r"\b(?:sf[- ]market|market\s+st(?:reet)?\b\.?|market\s+(?:store|shop|branch|location)"
        r"|san\s+francisco|frisco|sf|s\.f\.)")),
    ("oak-broadway", re.compile(r"\b(?:oak[- ]broadway|broadway|oak\s*land|oak)\b")),
)  # fmt: skip

#: Words that say nothing beyond the slots around them ("tomorrow at 11 please").
FILLERS: Final = frozenset({
    "a", "about", "actually", "and", "around", "at", "be", "by", "can", "code", "could", "day",
    "do", "does", "fine", "for", "great", "how", "i", "in", "instead", "is", "it", "it's", "its",
    "let's", "lets", "maybe", "my", "no", "number", "of", "ok", "okay", "on", "order", "please",
    "pls", "post", "postcode", "say", "shop", "store", "sure", "that", "the", "then", "there",
    "think", "time", "to", "uh", "um", "what", "works", "would", "yeah", "yep", "yes", "zip",
})  # fmt: skip


@dataclass(frozen=True, slots=True)
class Extraction:
    """Slots found in a text, the normalised text, and the words outside any slot."""

    values: Mapping[str, str]
    text: str
    residual: tuple[str, ...] = field(default=())

    @property
    def only_slots(self) -> bool:
        """True when the text is slots and filler words only ("Oakland, tomorrow at 11")."""
        return bool(self.values) and all(w in FILLERS for w in self.residual)


_PUNCTUATION: Final = ".,!?;:()\"'"


def _clean(word: str) -> str:
    return word.strip(_PUNCTUATION)


def _spoken_value(words: list[str]) -> tuple[list[int], list[bool]] | int:
    """Digit groups of a spoken run (and whether each is a two-digit group), or a cardinal."""
    if any(w in _SCALES for w in words):
        total = current = 0
        for w in words:
            if w in _SCALES:
                current = max(current, 1) * _SCALES[w]
                if _SCALES[w] == 1000:
                    total, current = total + current, 0
            else:
                current += _UNITS.get(w, 0) + _TEENS.get(w, 0) + _TENS.get(w, 0)
        return total + current
    groups: list[int] = []
    wide: list[bool] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w in _TENS:
            value = _TENS[w]
            if i + 1 < len(words) and _UNITS.get(words[i + 1], 0) > 0:
                value += _UNITS[words[i + 1]]
                i += 1
            groups.append(value)
            wide.append(True)
        elif w in _TEENS:
            groups.append(_TEENS[w])
            wide.append(True)
        else:
            groups.append(_UNITS.get(w, 0))
            wide.append(False)
        i += 1
    return groups, wide


def _spoken_time(groups: list[int], wide: list[bool]) -> str | None:
    """``H:MM`` for "eleven", "eleven thirty" or "eleven oh five"; None otherwise."""
    if not groups or groups[0] > 23:
        return None
    if len(groups) == 1:
        return f"{groups[0]}:00"
    if len(groups) == 2 and wide[1] and 10 <= groups[1] <= 59:
        return f"{groups[0]}:{groups[1]:02d}"
    if len(groups) == 3 and groups[1] == 0 and not wide[2]:
        return f"{groups[0]}:0{groups[2]}"
    return None


def _is_number_word(word: str, run: list[str]) -> bool:
    if word in _UNITS or word in _TEENS or word in _TENS or word in _SCALES:
        return True
    if word in _ZERO_LETTERS:  # "ten oh five", but not "oh no"
        return bool(run)
    return word == "and" and any(w in _SCALES for w in run)


def _number_run(words: list[str], start: int) -> tuple[list[str], int]:
    """The number words from ``start`` (punctuation ends a run), and where the run ends."""
    run: list[str] = []
    end = start
    while end < len(words):
        word = words[end]
        core = _clean(word)
        if not _is_number_word(core, run):
            break
        run.append(core)
        end += 1
        if word.rstrip(_PUNCTUATION) != word:
            break
    while run and run[-1] == "and":
        run.pop()
        end -= 1
    return run, end


def spoken_numbers_to_digits(text: str) -> str:
    """``text`` with runs of number words replaced by digits, or by ``H:MM`` in a time context."""
    words = text.split()
    out: list[str] = []
    i = 0
    while i < len(words):
        run, end = _number_run(words, i)
        if not run:
            out.append(words[i])
            i += 1
            continue
        last = words[end - 1]
        trail = last[len(last.rstrip(_PUNCTUATION)) :]
        value = _spoken_value(run)
        if isinstance(value, int):
            out.append(f"{value}{trail}")
        else:
            before = _clean(words[i - 1]) if i > 0 else ""
            after = _clean(words[end]) if end < len(words) else ""
            clock = None
            if before in _TIME_BEFORE or after in _TIME_AFTER or after == "in":
                clock = _spoken_time(*value)
            out.append((clock or "".join(str(g) for g in value[0])) + trail)
        i = end
    joined = " ".join(out)
    # Speech-to-text sometimes writes digits one by one: "9 4 1 0 3".
    return re.sub(r"\b\d(?: \d\b){2,}", lambda m: m.group(0).replace(" ", ""), joined)


def normalise(text: str) -> str:
    """Case-folded, NFKC, straight apostrophes, single spaces, spoken numbers as digits."""
    folded = unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'")
    return spoken_numbers_to_digits(" ".join(folded.split()))


Resolver = Callable[[re.Match[str], date], "str | None"]


class _Table:
    """Patterns with the resolvers of their matches, and one pattern matching where any does.

    Most texts hold no date or time at all: one search of the union says so,
    instead of one search per pattern.
    """

    def __init__(self, entries: list[tuple[str, Resolver]]) -> None:
        self.entries = [(re.compile(pattern), resolver) for pattern, resolver in entries]
        self.any = re.compile("|".join(f"(?:{pattern})" for pattern, _ in entries))


class _Scanner:
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

    def resolve(self, table: _Table, today: date) -> str | None:
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

    def residual(self) -> tuple[str, ...]:
        chars = list(self.text)
        for a, b in self.taken:
            chars[a:b] = " " * (b - a)
        return tuple(w for w in (_clean(w) for w in "".join(chars).split()) if w)


def _clock(hour: int, minute: int, meridiem: str | None) -> str | None:
    """``HH:MM`` (24 hours); a bare hour is read within store hours (1–7 are afternoon)."""
    if meridiem:
        if not 1 <= hour <= 12:
            return None
        pm = meridiem.startswith("p") or meridiem in _LATER_IN_THE_DAY
        hour = hour % 12 + (12 if pm else 0)
    elif 1 <= hour <= 7:
        hour += 12
    if hour > 23 or minute > 59:
        return None
    return f"{hour:02d}:{minute:02d}"


def _past_or_to(m: re.Match[str], _: date) -> str | None:
    hour, minute = int(m[3]), 30 if m[1] == "half" else 15
    if m[2] == "to":
        hour, minute = hour - 1, 60 - minute
    return _clock(hour, minute, None)


_TIMES: Final = _Table([
    (r"\b(?:noon|midday)\b", lambda m, _: "12:00"),
    (rf"\b(\d{{1,2}})[:.](\d{{2}})(?!\d)(?:\s*{_MERIDIEM})?",
     lambda m, _: _clock(int(m[1]), int(m[2]), m[3])),
    (rf"\b(\d{{1,2}})\s*{_MERIDIEM}(?![a-z])", lambda m, _: _clock(int(m[1]), 0, m[2])),
    (r"\b(\d{1,2})\s*o'?clock\b", lambda m, _: _clock(int(m[1]), 0, None)),
    (r"\b(?:at|around|about|by|from|until|till)\s+(\d{1,2})\b(?![:.]\d)",
     lambda m, _: _clock(int(m[1]), 0, None)),
    (r"\b(half|quarter)\s+(past|to)\s+(\d{1,2})\b", _past_or_to),
])  # fmt: skip


_BARE_HOUR: Final = _Table([
    (r"(?<![\d:.\-/#])\b(\d{1,2})\b(?![:.\-/]\d)", lambda m, _: _clock(int(m[1]), 0, None)),
])  # fmt: skip


def _month_day(month: str, day: str, today: date) -> str | None:
    candidate = date(today.year, _MONTHS[month[:3]], int(day))
    if candidate < today:
        candidate = candidate.replace(year=today.year + 1)
    return candidate.isoformat()


def _weekday(m: re.Match[str], today: date) -> str:
    """The next such weekday, today included; "next Monday" on a Monday is a week on."""
    ahead = (_WEEKDAYS[m[2]] - today.weekday()) % 7
    if ahead == 0 and (m[1] or "").startswith("next"):
        ahead = 7
    return (today + timedelta(days=ahead)).isoformat()


def _days_on(days: int) -> Resolver:
    return lambda m, today: (today + timedelta(days=days)).isoformat()


def _guarded(resolver: Resolver) -> Resolver:
    def resolve(m: re.Match[str], today: date) -> str | None:
        try:
            return resolver(m, today)
        except ValueError:  # 2025-02-30, "31 June"
            return None

    return resolve


_WEEKDAY_NAMES: Final = "|".join(sorted(_WEEKDAYS, key=len, reverse=True))
_DATES: Final = _Table([
    (r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b",
     _guarded(lambda m, _: date(int(m[1]), int(m[2]), int(m[3])).isoformat())),
    (r"\bday after tomorrow\b", _days_on(2)),
    (r"\b(?:tomorrow|tomorow|tommorow|tommorrow|tmrw|tmr)\b", _days_on(1)),
    (r"\b(?:today|tonight|this (?:morning|afternoon|evening))\b", _days_on(0)),
    (rf"\b{_MONTH}\s+(\d{{1,2}})(?:st|nd|rd|th)?\b",
     _guarded(lambda m, today: _month_day(m[1], m[2], today))),
    (rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}\b",
     _guarded(lambda m, today: _month_day(m[2], m[1], today))),
    (rf"(?<!')\b(next\s+|this\s+|on\s+)?({_WEEKDAY_NAMES})s?\b", _weekday),
])  # fmt: skip


_POSTCODE_SAID: Final = re.compile(
    r"\b(?:post\s?code|postal\s+code|zip(?:\s?code)?)\s*(?:is\s+|:\s*)?(\d{5})\b"
)
_ORDER_SAID: Final = re.compile(
    r"(?:\border(?:\s+(?:number|no\.?|num))?|#|\bnumber|\bno\.)\s*(?:is\s+|was\s+|:\s*)?#?\s*"
    r"(\d{3,8})\b"
)
_FIVE_DIGITS: Final = re.compile(r"(?<![\d:.\-/])\b(\d{5})\b(?![:.\-/]\d)")
_FOUR_DIGITS: Final = re.compile(r"(?<![\d:.\-/])\b(\d{4})\b(?![:.\-/]\d)")


def _store(scan: _Scanner) -> str | None:
    found: list[tuple[int, str, re.Pattern[str]]] = []
    for store_id, pattern in _STORES:
        match = pattern.search(scan.text)
        if match is not None:
            found.append((match.start(), store_id, pattern))
    if not found:
        return None
    _, store_id, pattern = min(found, key=lambda f: f[0])
    scan.take(pattern)
    return store_id


def extract(
    text: str, now: datetime, tz: ZoneInfo = TIMEZONE, *, expecting: str | None = None
) -> Extraction:
    """The slots in ``text``, with dates resolved against ``now`` in ``tz``.

    ``expecting`` names the slot the conversation waits for: when it is ``time``,
    a bare hour ("11", "eleven") is read as that time.
    """
    scan = _Scanner(normalise(text))
    today = now.astimezone(tz).date()
    values: dict[str, str] = {}
    found_date = scan.resolve(_DATES, today)
    found_time = scan.resolve(_TIMES, today)
    if found_time is None and expecting == TIME:
        found_time = scan.resolve(_BARE_HOUR, today)
    postcode = scan.take(_POSTCODE_SAID)
    order = scan.take(_ORDER_SAID)
    postcode = postcode or scan.take(_FIVE_DIGITS)
    order = order or scan.take(_FOUR_DIGITS)
    store = _store(scan)
    for name, value in [
        (ORDER_NUMBER, order.group(1) if order else None),
        (DATE, found_date),
        (TIME, found_time),
        (STORE, store),
        (POSTCODE, postcode.group(1) if postcode else None),
    ]:
        if value is not None:
            values[name] = value
    return Extraction(values, scan.text, scan.residual())

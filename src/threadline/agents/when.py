"""Dates and times in a customer's words, resolved against the business's clock.

Values are canonical strings, as ``slot.filled`` records them: a date is
``2025-03-05``, a time ``11:00`` (24 hours). A bare hour ("at 3") is read within
opening hours: 1–7 are afternoon, 8–12 morning and noon.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, timedelta
from typing import Final

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

Resolver = Callable[[re.Match[str], date], "str | None"]


class Table:
    """Patterns with the resolvers of their matches, and one pattern matching where any does.

    Most texts hold no date or time at all: one search of the union says so,
    instead of one search per pattern.
    """

    def __init__(self, entries: list[tuple[str, Resolver]]) -> None:
        self.entries = [(re.compile(pattern), resolver) for pattern, resolver in entries]
        self.any = re.compile("|".join(f"(?:{pattern})" for pattern, _ in entries))


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


TIMES: Final = Table([
    (r"\b(?:noon|midday)\b", lambda m, _: "12:00"),
    (rf"\b(\d{{1,2}})[:.](\d{{2}})(?!\d)(?:\s*{_MERIDIEM})?",
     lambda m, _: _clock(int(m[1]), int(m[2]), m[3])),
    (rf"\b(\d{{1,2}})\s*{_MERIDIEM}(?![a-z])", lambda m, _: _clock(int(m[1]), 0, m[2])),
    (r"\b(\d{1,2})\s*o'?clock\b", lambda m, _: _clock(int(m[1]), 0, None)),
    (r"\b(?:at|around|about|by|from|until|till)\s+(\d{1,2})\b(?![:.]\d)",
     lambda m, _: _clock(int(m[1]), 0, None)),
    (r"\b(half|quarter)\s+(past|to)\s+(\d{1,2})\b", _past_or_to),
])  # fmt: skip


BARE_HOUR: Final = Table([
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
DATES: Final = Table([
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

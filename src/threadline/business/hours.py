"""Opening hours: a week of spans, with dated exceptions (holidays, late openings)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time
from typing import Final

WEEKDAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DAY_KEYS: Final = tuple(day.lower() for day in WEEKDAYS)


@dataclass(frozen=True, slots=True)
class Hours:
    """Opening and closing time on one day (local time)."""

    opens: time
    closes: time

    def __post_init__(self) -> None:
        if self.closes <= self.opens:
            raise ValueError(f"closing {self.closes:%H:%M} is not after opening {self.opens:%H:%M}")

    @classmethod
    def parse(cls, span: str) -> Hours:
        """``"09:00-19:00"`` (a hyphen or an en dash between the times)."""
        parts = span.replace("–", "-").split("-")
        if len(parts) != 2:
            raise ValueError(f"{span!r} is not a span like 09:00-17:00")
        try:
            opens, closes = (time.fromisoformat(p.strip()) for p in parts)
        except ValueError:
            raise ValueError(f"{span!r} is not a span like 09:00-17:00") from None
        return cls(opens, closes)

    def __str__(self) -> str:
        return f"{self.opens:%H:%M}–{self.closes:%H:%M}"


@dataclass(frozen=True, slots=True)
class WeeklyHours:
    """Hours for each weekday, Monday first (``None`` is closed), and dated exceptions."""

    days: tuple[Hours | None, ...]
    exceptions: Mapping[date, Hours | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.days) != 7:
            raise ValueError("weekly hours need exactly 7 days, Monday first")

    @classmethod
    def of(cls, **spans: str | None) -> WeeklyHours:
        """Build from day names: ``WeeklyHours.of(mon="09:00-19:00", sun=None)``.

        Every one of ``mon`` … ``sun`` must be given, so a missing day is an error.
        """
        unknown = set(spans) - set(DAY_KEYS)
        if unknown:
            raise ValueError(f"unknown days {sorted(unknown)}")
        missing = [day for day in DAY_KEYS if day not in spans]
        if missing:
            raise ValueError(f"missing days {missing}")
        return cls(
            tuple(None if spans[d] is None else Hours.parse(str(spans[d])) for d in DAY_KEYS)
        )

    @classmethod
    def always(cls) -> WeeklyHours:
        """Open all day, every day."""
        whole = Hours(time(0, 0), time(23, 59, 59))
        return cls((whole,) * 7)

    def on(self, day: date) -> Hours | None:
        """The hours on ``day``: its exception if it has one, else its weekday's."""
        if day in self.exceptions:
            return self.exceptions[day]
        return self.days[day.weekday()]

    def describe(self) -> str:
        """Runs of equal days, e.g. ``Mon–Sat 09:00–19:00, Sun 10:00–17:00``."""
        parts: list[str] = []
        start = 0
        for index in range(1, 8):
            if index < 7 and self.days[index] == self.days[start]:
                continue
            hours = self.days[start]
            label = WEEKDAYS[start]
            if index - 1 > start:
                label += "–" + WEEKDAYS[index - 1]
            parts.append(f"{label} {hours if hours is not None else 'closed'}")
            start = index
        return ", ".join(parts)

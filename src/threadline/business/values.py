"""Frozen value types of a retail business: stores, customers, orders, queues, people."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo

#: Every time the demo business states is local to this zone.
TIMEZONE: Final = ZoneInfo("America/Los_Angeles")
#: The repair counter takes one appointment per slot of this length.
SLOT_LENGTH: Final = timedelta(minutes=30)

WEEKDAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

OrderStatus = Literal["processing", "shipped", "delayed", "delivered", "cancelled"]


@dataclass(frozen=True, slots=True)
class Hours:
    """Opening and closing time on one day (local time)."""

    opens: time
    closes: time

    def __post_init__(self) -> None:
        if self.closes <= self.opens:
            raise ValueError(f"closing {self.closes} is not after opening {self.opens}")

    def __str__(self) -> str:
        return f"{self.opens:%H:%M}–{self.closes:%H:%M}"


@dataclass(frozen=True, slots=True)
class WeeklyHours:
    """Hours for each weekday, Monday first; ``None`` is closed."""

    days: tuple[Hours | None, ...]

    def __post_init__(self) -> None:
        if len(self.days) != 7:
            raise ValueError("weekly hours need exactly 7 days, Monday first")

    @classmethod
    def of(cls, **spans: str | None) -> WeeklyHours:
        """Build from day names: ``WeeklyHours.of(mon="09:00-19:00", sun=None)``.

        Every one of ``mon`` … ``sun`` must be given, so a missing day is an error.
        """
        days: list[Hours | None] = []
        for name in WEEKDAYS:
            span = spans.pop(name.lower())
            if span is None:
                days.append(None)
            else:
                opens, closes = span.split("-")
                days.append(Hours(time.fromisoformat(opens), time.fromisoformat(closes)))
        if spans:
            raise ValueError(f"unknown days {sorted(spans)}")
        return cls(tuple(days))

    def on(self, day: date) -> Hours | None:
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


@dataclass(frozen=True, slots=True)
class Store:
    """A store with a repair counter."""

    id: str
    name: str
    address: str
    city: str
    hours: WeeklyHours


@dataclass(frozen=True, slots=True)
class Customer:
    """A known customer; ``phone`` is E.164, ``member_id`` is the loyalty number."""

    id: str
    name: str
    phone: str
    email: str
    member_id: str | None
    postcode: str

    @property
    def first_name(self) -> str:
        return self.name.split()[0]


@dataclass(frozen=True, slots=True)
class OrderOption:
    """Something the customer may choose for an order: a replacement shipped, or a pickup."""

    kind: Literal["ship_replacement", "pickup"]
    days: int | None = None
    store_id: str | None = None


@dataclass(frozen=True, slots=True)
class Order:
    """An online order. ``detail`` is the account of it the business gives."""

    number: str
    customer_id: str
    item: str
    status: OrderStatus
    detail: str
    reason: str | None = None
    options: tuple[OrderOption, ...] = ()
    delivered_on: date | None = None
    expected_on: date | None = None


@dataclass(frozen=True, slots=True)
class Appointment:
    """A booked repair-counter slot; ``start`` is local time in the business's zone."""

    id: str
    store_id: str
    customer_id: str | None
    service: str
    start: datetime

    @property
    def end(self) -> datetime:
        return self.start + SLOT_LENGTH


@dataclass(frozen=True, slots=True)
class HumanAgent:
    """A person who takes conversations from queues."""

    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Queue:
    """A queue of conversations waiting for a human with these skills."""

    id: str
    skills: tuple[str, ...]
    agent_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Associate:
    """A store associate who serves in-person visits."""

    id: str
    name: str
    store_id: str


def e164(phone: str, default_country: str = "1") -> str | None:
    """``phone`` in E.164 (``+14155550123``), or None if it cannot be one.

    Ten digits without a country code are taken as North American numbers.
    """
    digits = re.sub(r"\D", "", phone)
    if phone.strip().startswith("+"):
        return "+" + digits if 8 <= len(digits) <= 15 else None
    if len(digits) == 10:
        return f"+{default_country}{digits}"
    if len(digits) == 11 and digits.startswith(default_country):
        return "+" + digits
    return None

"""Northwind Devices' own systems, as in-process tools of its business pack.

Customers and orders are read from ``records.yaml`` beside this file; dates in
it are relative to the day asked. The repair-counter book is a small SQLite
database in the service's data folder, so every process of the service sees
the same bookings and a restart keeps them. Each tool follows the contract
of :mod:`threadline.tools`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import date, datetime, time, timedelta
from functools import cache, lru_cache
from pathlib import Path
from time import monotonic
from typing import Any

import yaml

from threadline.business import Business
from threadline.tools import NOT_FOUND, ToolContext, ToolFailure

RECORDS = Path(__file__).with_name("records.yaml")
#: Alternatives a refused booking suggests, and how many days ahead it looks.
SUGGESTIONS = 3
LOOKAHEAD_DAYS = 7
#: Seconds the book is kept in memory before it is read again.
KEPT_FOR = 2.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS appointments (
    id TEXT PRIMARY KEY, location TEXT NOT NULL, start TEXT NOT NULL,
    service TEXT NOT NULL, customer_id TEXT, request TEXT UNIQUE,
    UNIQUE (location, start)
)
"""


@cache
def _records() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(RECORDS.read_text(encoding="utf-8"))
    return loaded


def _today(context: ToolContext) -> date:
    return context.business.today(context.now)


# -- customers ----------------------------------------------------------------------------


async def find_customer(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    """The customer record by ``id``, ``phone`` (E.164), ``email`` or ``member`` id."""
    by, value = arguments["by"], str(arguments["value"]).strip()
    field = {"id": "id", "phone": "phone", "email": "email", "member": "member_id"}[by]
    wanted = value.casefold()
    for customer in _records()["customers"]:
        if str(customer.get(field) or "").casefold() == wanted:
            return {
                "id": customer["id"], "name": customer["name"], "phone": customer["phone"],
                "email": customer["email"], "member_id": customer["member_id"],
                "knowledge": {"postcode": customer["postcode"]},
            }  # fmt: skip
    raise ToolFailure(NOT_FOUND, f"no customer with that {by}")


async def search_customers(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    """Customers whose name, email, member id or phone number holds ``q``."""
    wanted = str(arguments["q"]).strip().casefold()
    digits = "".join(c for c in wanted if c.isdigit())
    found = []
    for customer in _records()["customers"]:
        texts = (customer["name"], customer["email"], customer.get("member_id") or "")
        phone_digits = "".join(c for c in customer["phone"] if c.isdigit())
        if any(wanted in t.casefold() for t in texts) or (len(digits) >= 3 and
                                                          digits in phone_digits):  # fmt: skip
            found.append({k: customer[k] for k in ("id", "name", "phone", "email", "member_id")})
    return {"customers": found[: int(arguments.get("limit", 50))]}


# -- orders -------------------------------------------------------------------------------


def _order(order: dict[str, Any], today: date) -> dict[str, Any]:
    out = {k: order[k] for k in ("customer_id", "item", "status", "detail")}
    out["order"] = order["number"]
    out["reason"] = order.get("reason")
    out["options"] = list(order.get("options", ()))
    pickup = next((o for o in out["options"] if o["kind"] == "pickup"), None)
    out["pickup_location"] = pickup["location"] if pickup else None
    if "delivered_days_ago" in order:
        out["delivered_on"] = (today - timedelta(days=order["delivered_days_ago"])).isoformat()
    if "arriving_in_days" in order:
        out["expected_on"] = (today + timedelta(days=order["arriving_in_days"])).isoformat()
    return out


async def lookup_order(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    """The order numbered ``order_number``."""
    number = str(arguments["order_number"]).lstrip("#")
    for order in _records()["orders"]:
        if order["number"] == number:
            return _order(order, _today(context))
    raise ToolFailure(NOT_FOUND, f"there is no order {number}")


async def customer_orders(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    """Every order of ``customer_id``."""
    today = _today(context)
    orders = [_order(o, today) for o in _records()["orders"]
              if o["customer_id"] == arguments["customer_id"]]  # fmt: skip
    return {"orders": orders}


# -- refunds -------------------------------------------------------------------------------


class Refunds:
    """Refunds issued, in a SQLite file of the service's data folder: one per order, and a
    request made again (the same idempotency key) answered with its first result."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=10, isolation_level=None,
                                   check_same_thread=False)  # fmt: skip
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS refunds (id TEXT PRIMARY KEY, order_number TEXT"
                " NOT NULL UNIQUE, reason TEXT NOT NULL, request TEXT NOT NULL UNIQUE)"
            )

    def issue(self, order: str, reason: str, request: str) -> tuple[str, bool]:
        """The refund's id, and whether this request issued it (False: issued before)."""
        with self._lock:
            earlier = self._db.execute(
                "SELECT id, request FROM refunds WHERE order_number = ?", (order,)
            ).fetchone()
            if earlier is not None:
                return str(earlier[0]), earlier[1] == request
            refund_id = f"rf-{order}"
            self._db.execute("INSERT INTO refunds VALUES (?, ?, ?, ?)",
                             (refund_id, order, reason, request))  # fmt: skip
        return refund_id, True


@cache
def _refunds(path: Path) -> Refunds:
    return Refunds(path)


async def refund_order(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    """Refund order ``order_number`` of ``customer_id`` to the original payment method."""
    number = str(arguments["order_number"]).lstrip("#")
    order = next((o for o in _records()["orders"] if o["number"] == number), None)
    if order is None:
        raise ToolFailure(NOT_FOUND, f"there is no order {number}")
    if order["customer_id"] != arguments["customer_id"]:
        raise ToolFailure("not_owner", "that order is another customer's")
    if order["status"] == "cancelled":
        raise ToolFailure("not_refundable", "a cancelled order has nothing to refund")
    ledger = _refunds(context.data_dir / "northwind-refunds.db")
    refund_id, issued = await asyncio.to_thread(
        ledger.issue, number, str(arguments.get("reason") or ""), context.idempotency_key
    )
    if not issued:
        raise ToolFailure("already_refunded", f"order {number} was refunded before")
    return {"refund_id": refund_id, "order": number, "status": "issued",
            "to": "the original payment method", "working_days": 5}  # fmt: skip


# -- the repair-counter book ----------------------------------------------------------------


class Book:
    """The appointments at every location, in a SQLite file of the service's data folder.

    The table is small; it is kept in memory for a moment (:data:`KEPT_FOR` seconds, and
    read again at once after a booking made here), because a trip to a worker thread and the
    file cost more than the questions asked of it. A booking is what decides: two bookings
    of one time are refused by the table's key, whatever a kept copy said was free.
    """

    FIELDS = ("appointment_id", "location", "start", "service", "customer_id")

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=10, isolation_level=None,
                                   check_same_thread=False)  # fmt: skip
        self._lock = threading.Lock()
        self._kept: tuple[float, tuple[dict[str, Any], ...]] = (0.0, ())
        with self._lock:
            self._db.execute(SCHEMA)

    async def rows(self) -> tuple[dict[str, Any], ...]:
        """Every appointment booked here, as recently as :data:`KEPT_FOR` seconds ago."""
        until, rows = self._kept
        if until > monotonic():
            return rows
        rows = await asyncio.to_thread(self._read)
        self._kept = (monotonic() + KEPT_FOR, rows)
        return rows

    def _read(self) -> tuple[dict[str, Any], ...]:
        with self._lock:
            found = self._db.execute(
                "SELECT id, location, start, service, customer_id FROM appointments ORDER BY start"
            ).fetchall()
        return tuple(dict(zip(self.FIELDS, row, strict=True)) for row in found)

    async def taken_on(self, location: str, day: date) -> frozenset[str]:
        """The start times taken at ``location`` on ``day``."""
        prefix = day.isoformat()
        return frozenset(
            r["start"]
            for r in await self.rows()
            if r["location"] == location and r["start"].startswith(prefix)
        )

    async def booked_for(self, customer_id: str) -> list[dict[str, Any]]:
        """The appointments of ``customer_id``, soonest first."""
        return [{k: r[k] for k in self.FIELDS[:4]} for r in await self.rows()
                if r["customer_id"] == customer_id]  # fmt: skip

    def add(self, row: dict[str, Any], request: str) -> dict[str, Any] | None:
        """The appointment booked (or booked before by the same request); None if taken."""
        with self._lock:
            earlier = self._db.execute(
                "SELECT id, location, start, service FROM appointments WHERE request = ?",
                (request,),
            ).fetchone()
            if earlier is not None:
                return dict(zip(self.FIELDS[:4], earlier, strict=True))
            try:
                self._db.execute(
                    "INSERT INTO appointments VALUES (?, ?, ?, ?, ?, ?)",
                    (row["appointment_id"], row["location"], row["start"], row["service"],
                     row["customer_id"], request),
                )  # fmt: skip
            except sqlite3.IntegrityError:
                return None
            finally:
                self._kept = (0.0, ())  # read again: this booking, or the one that won
        return {k: row[k] for k in self.FIELDS[:4]}


@cache
def _book(path: Path) -> Book:
    return Book(path)


def _seeded(context: ToolContext, location: str, day: date) -> set[str]:
    """Appointments booked before any conversation, dated from today."""
    today = _today(context)
    out = set()
    for a in _records()["appointments"]:
        start = datetime.combine(
            today + timedelta(days=a["in_days"]),
            time.fromisoformat(a["time"]),
            context.business.timezone,
        )
        if a["location"] == location and start.date() == day:
            out.add(start.isoformat())
    return out


def _slots(context: ToolContext, location_id: str, service: str, day: date) -> list[datetime]:
    return [start for start, _ in _day_slots(context.business, location_id, service, day)]


@lru_cache(maxsize=256)
def _day_slots(business: Business, location_id: str, service: str,
               day: date) -> tuple[tuple[datetime, str], ...]:  # fmt: skip
    """The service's slot starts at the location on ``day``, each with its ISO form."""
    location = business.require_location(location_id)
    hours = location.hours.on(day)
    minutes = location.services.get(service)
    if hours is None or minutes is None:
        return ()
    length = timedelta(minutes=minutes)
    start = datetime.combine(day, hours.opens, location.timezone)
    closes = datetime.combine(day, hours.closes, location.timezone)
    out = []
    while start + length <= closes:
        out.append((start, start.isoformat()))
        start += length
    return tuple(out)


async def _free(context: ToolContext, location: str, service: str, day: date) -> list[datetime]:
    book = _book(context.data_dir / "northwind-book.db")
    taken = await book.taken_on(location, day) | _seeded(context, location, day)
    now = context.business.local(context.now)
    return [start for start, iso in _day_slots(context.business, location, service, day)
            if iso not in taken and start >= now]  # fmt: skip


async def free_slots(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    """Free start times of ``service`` at ``location`` on ``date``."""
    day = date.fromisoformat(arguments["date"])
    free = await _free(context, arguments["location"], arguments["service"], day)
    return {"slots": [f"{s:%H:%M}" for s in free]}


async def _nearest(context: ToolContext, location: str, service: str,
                   wanted: datetime) -> list[str]:  # fmt: skip
    for offset in range(LOOKAHEAD_DAYS + 1):
        free = await _free(context, location, service, wanted.date() + timedelta(days=offset))
        if free:
            if offset == 0:
                free = sorted(free, key=lambda s: (abs(s - wanted), s))
            return [s.isoformat() for s in sorted(free[:SUGGESTIONS])]
    return []


async def book_appointment(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    """Book ``service`` at ``location`` on ``date`` at ``time`` for ``customer_id``."""
    location_id, service = arguments["location"], arguments["service"]
    location = context.business.require_location(location_id)
    day = date.fromisoformat(arguments["date"])
    start = datetime.combine(day, time.fromisoformat(arguments["time"]), location.timezone)
    book = _book(context.data_dir / "northwind-book.db")
    reason = None
    if location.hours.on(day) is None:
        reason = ("slot_closed", f"{location.name} is closed that day")
    elif start not in _slots(context, location_id, service, day):
        reason = ("slot_outside_hours", f"{start:%H:%M} is not a slot at {location.name}")
    elif start < context.business.local(context.now):
        reason = ("slot_past", "that time has already passed")
    elif start.isoformat() in _seeded(context, location_id, day):
        reason = ("slot_taken", "that time is already booked")
    if reason is None:
        row = {"appointment_id": f"apt-{location_id}-{start:%Y%m%d-%H%M}",
               "location": location_id, "start": start.isoformat(),
               "service": service, "customer_id": arguments.get("customer_id")}  # fmt: skip
        booked = await asyncio.to_thread(book.add, row, context.idempotency_key)
        if booked is not None:
            return booked
        reason = ("slot_taken", "that time is already booked")
    suggestions = await _nearest(context, location_id, service, start)
    raise ToolFailure(reason[0], reason[1], retryable=reason[0] == "slot_taken",
                      details={"suggestions": suggestions})  # fmt: skip


async def customer_appointments(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    """Every appointment of ``customer_id``, seeded or booked."""
    customer_id = arguments["customer_id"]
    book = _book(context.data_dir / "northwind-book.db")
    booked = await book.booked_for(customer_id)
    today = _today(context)
    seeded = [
        {"appointment_id": a["id"], "location": a["location"], "service": a["service"],
         "start": datetime.combine(today + timedelta(days=a["in_days"]),
                                   time.fromisoformat(a["time"]),
                                   context.business.timezone).isoformat()}
        for a in _records()["appointments"] if a["customer_id"] == customer_id
    ]  # fmt: skip
    return {"appointments": sorted(seeded + booked, key=lambda a: a["start"])}

"""Spoke & Chain's workshop system: customers, repair tickets, parts orders and bookings.

A small HTTP service the Spoke & Chain business pack calls as its `kind: http` tools:

    GET  /customers?by=id|phone|email|member&value=…    a customer record (404 if unknown)
    GET  /customers/{customer_id}/tickets                a customer's repair tickets
    GET  /customers/{customer_id}/parts-orders           a customer's parts orders
    GET  /tickets/{ticket}                               a repair ticket (404 if unknown)
    GET  /parts-orders/{order}                           a parts order (404 if unknown)
    GET  /slots?location=…&date=YYYY-MM-DD&service=…     {"slots": ["10:00", …]}
    POST /bookings  {location, date, time, service, customer_id}   the appointment (201)
    GET  /appointments?customer_id=…                     {"appointments": [...]}
    GET  /health                                         no token needed

Every route but /health wants `Authorization: Bearer <token>`, the token being the value of
the WORKSHOP_API_TOKEN environment variable. Errors are application/problem+json with a
`code`; a refused booking carries `details.suggestions` (ISO 8601 start times). POST
/bookings honours the Idempotency-Key header: the same key books once and answers the same.

Records come from shop.yaml beside this file (dates relative to today); bookings live in
SQLite, in memory unless --db names a file.

    WORKSHOP_API_TOKEN=… python examples/bikeshop/workshop/service.py --port 8091
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import sqlite3
import sys
import threading
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

import uvicorn
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

RECORDS = Path(__file__).with_name("shop.yaml")
TOKEN_VARIABLE = "WORKSHOP_API_TOKEN"
PROBLEM_BASE = "https://spokeandchain.example/problems/"
SUGGESTIONS = 3
LOOKAHEAD_DAYS = 7
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SCHEMA = """
CREATE TABLE IF NOT EXISTS appointments (
    id TEXT PRIMARY KEY, customer_id TEXT, location TEXT NOT NULL, service TEXT NOT NULL,
    start TEXT NOT NULL, end TEXT NOT NULL, booked_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, request TEXT NOT NULL, appointment_id TEXT NOT NULL
);
"""


class Problem(Exception):
    """A refusal, answered as application/problem+json."""

    def __init__(self, status: int, code: str, detail: str, **details: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.details = status, code, detail, details

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.code, "title": self.code.replace("_", " "),
            "status": self.status, "detail": self.detail, "code": self.code,
        }  # fmt: skip
        if self.details:
            body["details"] = self.details
        return JSONResponse(body, status_code=self.status, media_type="application/problem+json")


# -- the shop's records -------------------------------------------------------------------


class Shop:
    """The records of shop.yaml and the booking book, with 'today' in the shop's zone."""

    def __init__(self, records: dict[str, Any], db_path: str) -> None:
        self.records = records
        self.zone = ZoneInfo(records["timezone"])
        self.lock = threading.Lock()
        self.db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        self.db.executescript(SCHEMA)

    def now(self) -> datetime:
        return datetime.now(self.zone)

    def today(self) -> date:
        return self.now().date()

    def location(self, location_id: str) -> dict[str, Any]:
        location = self.records["locations"].get(location_id)
        if location is None:
            raise Problem(422, "unknown_location", f"there is no location {location_id!r}",
                          locations=sorted(self.records["locations"]))  # fmt: skip
        return location

    def service(self, location: dict[str, Any], service_id: str) -> dict[str, Any]:
        service = location["services"].get(service_id)
        if service is None:
            raise Problem(422, "unknown_service", f"no service {service_id!r} is booked here",
                          services=sorted(location["services"]))  # fmt: skip
        return service

    def hours(self, location: dict[str, Any], day: date) -> tuple[time, time] | None:
        if day.isoformat() in {str(d) for d in location.get("closed_on", ())}:
            return None
        span = location["hours"].get(WEEKDAYS[day.weekday()])
        if not span:
            return None
        opens, closes = span.split("-")
        return time.fromisoformat(opens), time.fromisoformat(closes)

    def open_day(self, location: dict[str, Any], ahead: int) -> date:
        """The `ahead`-th day after today the location is open."""
        day = self.today()
        while ahead > 0:
            day += timedelta(days=1)
            if self.hours(location, day) is not None:
                ahead -= 1
        return day

    def relative(self, row: dict[str, Any], name: str) -> str | None:
        """`<name>_in_days`, `_days_ago` or `_open_days_ahead` of a record, as an ISO date."""
        if f"{name}_open_days_ahead" in row:
            location = self.records["locations"][row["location"]]
            return self.open_day(location, row[f"{name}_open_days_ahead"]).isoformat()
        if f"{name}_in_days" in row:
            return (self.today() + timedelta(days=row[f"{name}_in_days"])).isoformat()
        if f"{name}_days_ago" in row:
            return (self.today() - timedelta(days=row[f"{name}_days_ago"])).isoformat()
        return None


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _phone_key(text: str) -> str:
    digits = _digits(text)
    return "1" + digits if len(digits) == 10 else digits  # North American numbers


def customer_view(customer: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": customer["id"], "name": customer["name"], "phone": customer["phone"],
        "email": customer["email"], "member_id": customer["member_id"],
        "knowledge": {"phone_last4": _digits(customer["phone"] or "")[-4:]},
    }  # fmt: skip


def ticket_view(shop: Shop, ticket: dict[str, Any]) -> dict[str, Any]:
    out = {k: ticket.get(k) for k in ("customer_id", "location", "bike", "work", "mechanic",
                                      "status", "quote_usd", "note")}  # fmt: skip
    out["ticket"] = ticket["number"]
    out["checked_in_on"] = shop.relative(ticket, "checked_in")
    out["ready_on"] = shop.relative(ticket, "ready")
    out["collected_on"] = shop.relative(ticket, "collected")
    return out


def order_view(shop: Shop, order: dict[str, Any]) -> dict[str, Any]:
    out = {k: order.get(k) for k in ("customer_id", "items", "status", "total_usd")}
    out["order"] = order["number"]
    out["ordered_on"] = shop.relative(order, "ordered")
    out["expected_on"] = shop.relative(order, "expected")
    out["arrived_on"] = shop.relative(order, "arrived")
    out["pickup"] = "parts counter"
    return out


# -- bookings -------------------------------------------------------------------------------


def _starts(shop: Shop, location: dict[str, Any], minutes: int, day: date) -> list[datetime]:
    """Every start time of a `minutes`-long service on `day`, on its own grid from opening."""
    hours = shop.hours(location, day)
    if hours is None:
        return []
    length = timedelta(minutes=minutes)
    start = datetime.combine(day, hours[0], shop.zone)
    closes = datetime.combine(day, hours[1], shop.zone)
    out = []
    while start + length <= closes:
        out.append(start)
        start += length
    return out


def _booked(shop: Shop, location_id: str, day: date) -> list[tuple[datetime, datetime]]:
    """The (start, end) of every appointment at the location on `day`, seeded or booked."""
    rows = shop.db.execute(
        "SELECT start, end FROM appointments WHERE location = ? AND start LIKE ?",
        (location_id, f"{day.isoformat()}%"),
    ).fetchall()
    out = [(datetime.fromisoformat(s), datetime.fromisoformat(e)) for s, e in rows]
    for seeded in _seeded(shop):
        if seeded["location"] == location_id and seeded["start"].date() == day:
            out.append((seeded["start"], seeded["end"]))
    return out


def _seeded(shop: Shop) -> list[dict[str, Any]]:
    out = []
    for row in shop.records.get("appointments", ()):
        location = shop.records["locations"][row["location"]]
        day = shop.open_day(location, row["open_days_ahead"])
        start = datetime.combine(day, time.fromisoformat(row["time"]), shop.zone)
        minutes = location["services"][row["service"]]["minutes"]
        out.append({"id": row["id"], "customer_id": row["customer_id"], "location":
                    row["location"], "service": row["service"], "start": start,
                    "end": start + timedelta(minutes=minutes)})  # fmt: skip
    return out


def _fits(booked: list[tuple[datetime, datetime]], start: datetime, end: datetime,
          benches: int) -> bool:  # fmt: skip
    """Whether a bench is free for all of [start, end)."""
    overlapping = [(s, e) for s, e in booked if s < end and start < e]
    moments = {start} | {s for s, _ in overlapping if start <= s < end}
    return all(sum(1 for s, e in overlapping if s <= m < e) < benches for m in moments)


def free_starts(shop: Shop, location_id: str, service_id: str, day: date) -> list[datetime]:
    location = shop.location(location_id)
    minutes = shop.service(location, service_id)["minutes"]
    booked = _booked(shop, location_id, day)
    now, length, benches = shop.now(), timedelta(minutes=minutes), location["benches"]
    starts = _starts(shop, location, minutes, day)
    return [s for s in starts if s > now and _fits(booked, s, s + length, benches)]


def nearest(shop: Shop, location_id: str, service_id: str, wanted: datetime) -> list[str]:
    """Up to SUGGESTIONS free starts: the closest on the wanted day, else the next day open."""
    for offset in range(LOOKAHEAD_DAYS + 1):
        free = free_starts(shop, location_id, service_id, wanted.date() + timedelta(days=offset))
        if free:
            if offset == 0:
                free = sorted(free, key=lambda s: (abs(s - wanted), s))
            return [s.isoformat() for s in sorted(free[:SUGGESTIONS])]
    return []


def _appointment(row: tuple[Any, ...], shop: Shop) -> dict[str, Any]:
    appointment_id, customer_id, location_id, service_id, start, end = row
    service = shop.records["locations"][location_id]["services"][service_id]
    return {"appointment_id": appointment_id, "customer_id": customer_id,
            "location": location_id, "service": service_id, "service_name": service["name"],
            "start": start, "end": end}  # fmt: skip


def book(shop: Shop, request: dict[str, Any], key: str | None) -> tuple[int, dict[str, Any]]:
    """Book a slot; (status, appointment). The same Idempotency-Key books once."""
    location_id, service_id = request["location"], request["service"]
    location = shop.location(location_id)
    service = shop.service(location, service_id)
    try:
        day = date.fromisoformat(request["date"])
        at = time.fromisoformat(request["time"])
    except ValueError as error:
        raise Problem(400, "invalid_request", f"bad date or time: {error}") from None
    start = datetime.combine(day, at, shop.zone)
    end = start + timedelta(minutes=service["minutes"])
    fingerprint = hashlib.sha256(json.dumps(
        {k: request.get(k) for k in ("location", "date", "time", "service", "customer_id")},
        sort_keys=True).encode()).hexdigest()  # fmt: skip
    with shop.lock:
        if key is not None:
            earlier = shop.db.execute(
                "SELECT i.request, a.id, a.customer_id, a.location, a.service, a.start, a.end"
                " FROM idempotency i JOIN appointments a ON a.id = i.appointment_id"
                " WHERE i.key = ?", (key,),
            ).fetchone()  # fmt: skip
            if earlier is not None:
                if earlier[0] != fingerprint:
                    raise Problem(
                        422,
                        "idempotency_key_reused",
                        "this Idempotency-Key was used for a different booking",
                    )
                return 200, _appointment(earlier[1:], shop)
        refusal = None
        if shop.hours(location, day) is None:
            refusal = (422, "slot_closed", f"{location['name']} is closed on {day.isoformat()}")
        elif start not in _starts(shop, location, service["minutes"], day):
            refusal = (
                422,
                "slot_outside_hours",
                f"{at:%H:%M} is not a {service['name']} time on {day.isoformat()}",
            )
        elif start <= shop.now():
            refusal = (422, "slot_past", "that time has already passed")
        elif not _fits(_booked(shop, location_id, day), start, end, location["benches"]):
            refusal = (409, "slot_taken", "that time is already booked")
        if refusal is not None:
            status, code, detail = refusal
            raise Problem(
                status, code, detail, suggestions=nearest(shop, location_id, service_id, start)
            )
        appointment_id = f"apt-{start:%Y%m%d-%H%M}-{uuid4().hex[:6]}"
        row = (appointment_id, request.get("customer_id"), location_id, service_id,
               start.isoformat(), end.isoformat())  # fmt: skip
        shop.db.execute(
            "INSERT INTO appointments VALUES (?, ?, ?, ?, ?, ?, ?)", (*row, shop.now().isoformat())
        )
        if key is not None:
            shop.db.execute(
                "INSERT INTO idempotency VALUES (?, ?, ?)", (key, fingerprint, appointment_id)
            )
    return 201, _appointment(row, shop)


def appointments_of(shop: Shop, customer_id: str) -> list[dict[str, Any]]:
    rows = shop.db.execute(
        "SELECT id, customer_id, location, service, start, end FROM appointments"
        " WHERE customer_id = ?", (customer_id,),
    ).fetchall()  # fmt: skip
    out = [_appointment(r, shop) for r in rows]
    for s in _seeded(shop):
        if s["customer_id"] == customer_id:
            out.append(
                _appointment(
                    (
                        s["id"],
                        s["customer_id"],
                        s["location"],
                        s["service"],
                        s["start"].isoformat(),
                        s["end"].isoformat(),
                    ),
                    shop,
                )
            )
    now = shop.now().isoformat()
    return sorted((a for a in out if a["end"] > now), key=lambda a: a["start"])


# -- HTTP ---------------------------------------------------------------------------------


def _shop(request: Request) -> Shop:
    shop: Shop = request.app.state.shop
    return shop


def _query(request: Request, *names: str) -> list[str]:
    missing = [n for n in names if not request.query_params.get(n)]
    if missing:
        raise Problem(400, "invalid_request", f"missing query parameter(s): {', '.join(missing)}")
    return [request.query_params[n] for n in names]


def _reference(text: str, what: str) -> str:
    """A ticket or order number as customers write it ("T-48213", "#30118") as digits."""
    digits = _digits(text)
    if not 4 <= len(digits) <= 8:
        raise Problem(404, "not_found", f"there is no {what} {text}")
    return digits


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok", "today": _shop(request).today().isoformat()})


async def find_customer(request: Request) -> Response:
    by, value = _query(request, "by", "value")
    match = {
        "id": lambda c: c["id"] == value.strip(),
        "phone": lambda c: bool(c["phone"]) and _phone_key(c["phone"]) == _phone_key(value),
        "email": lambda c: (c["email"] or "").casefold() == value.strip().casefold(),
        "member": lambda c: (c["member_id"] or "").casefold() == value.strip().casefold(),
    }.get(by)  # fmt: skip
    if match is None:
        raise Problem(400, "invalid_request", "by must be one of id, phone, email, member")
    for customer in _shop(request).records["customers"]:
        if match(customer):
            return JSONResponse(customer_view(customer))
    raise Problem(404, "not_found", f"no customer with that {by}")


def _customer_id(request: Request) -> str:
    customer_id = request.path_params["customer_id"]
    if not any(c["id"] == customer_id for c in _shop(request).records["customers"]):
        raise Problem(404, "not_found", f"no customer {customer_id}")
    return customer_id


async def customer_tickets(request: Request) -> Response:
    shop, customer_id = _shop(request), _customer_id(request)
    tickets = [ticket_view(shop, t) for t in shop.records["tickets"]
               if t["customer_id"] == customer_id]  # fmt: skip
    return JSONResponse({"tickets": tickets})


async def customer_parts_orders(request: Request) -> Response:
    shop, customer_id = _shop(request), _customer_id(request)
    orders = [order_view(shop, o) for o in shop.records["parts_orders"]
              if o["customer_id"] == customer_id]  # fmt: skip
    return JSONResponse({"parts_orders": orders})


async def find_ticket(request: Request) -> Response:
    shop = _shop(request)
    number = _reference(request.path_params["ticket"], "ticket")
    for ticket in shop.records["tickets"]:
        if ticket["number"] == number:
            return JSONResponse(ticket_view(shop, ticket))
    raise Problem(404, "not_found", f"there is no ticket {number}")


async def find_parts_order(request: Request) -> Response:
    shop = _shop(request)
    number = _reference(request.path_params["order"], "parts order")
    for order in shop.records["parts_orders"]:
        if order["number"] == number:
            return JSONResponse(order_view(shop, order))
    raise Problem(404, "not_found", f"there is no parts order {number}")


async def free_slots(request: Request) -> Response:
    location, day, service = _query(request, "location", "date", "service")
    try:
        wanted = date.fromisoformat(day)
    except ValueError:
        raise Problem(400, "invalid_request", f"date must be YYYY-MM-DD, not {day!r}") from None
    starts = free_starts(_shop(request), location, service, wanted)
    return JSONResponse({"location": location, "date": day, "service": service,
                         "slots": [f"{s:%H:%M}" for s in starts]})  # fmt: skip


async def create_booking(request: Request) -> Response:
    try:
        body = await request.json()
    except ValueError:
        raise Problem(400, "invalid_request", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise Problem(400, "invalid_request", "the body must be a JSON object")
    missing = [k for k in ("location", "date", "time", "service") if not body.get(k)]
    if missing:
        raise Problem(400, "invalid_request", f"missing field(s): {', '.join(missing)}")
    key = request.headers.get("idempotency-key")
    status, appointment = book(_shop(request), body, key)
    return JSONResponse(appointment, status_code=status)


async def customer_appointments(request: Request) -> Response:
    (customer_id,) = _query(request, "customer_id")
    return JSONResponse({"appointments": appointments_of(_shop(request), customer_id)})


class Guard:
    """Bearer-token check and problem+json answers around the app."""

    def __init__(self, app: Starlette, token: str) -> None:
        self.app, self.token = app, token.encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] == "/health":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        scheme, _, given = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self.token
        ):
            problem = Problem(401, "unauthorized", "a valid bearer token is required")
            response = problem.response()
            response.headers["WWW-Authenticate"] = 'Bearer realm="workshop"'
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _problem(request: Request, error: Exception) -> Response:
    assert isinstance(error, Problem)
    return error.response()


async def _http_error(request: Request, error: Exception) -> Response:
    status = getattr(error, "status_code", 500)
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "error")
    return Problem(status, code, str(getattr(error, "detail", "")) or code).response()


def create_app(token: str, db_path: str = ":memory:") -> Guard:
    records = yaml.safe_load(RECORDS.read_text(encoding="utf-8"))
    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/customers", find_customer),
            Route("/customers/{customer_id}/tickets", customer_tickets),
            Route("/customers/{customer_id}/parts-orders", customer_parts_orders),
            Route("/tickets/{ticket}", find_ticket),
            Route("/parts-orders/{order}", find_parts_order),
            Route("/slots", free_slots),
            Route("/bookings", create_booking, methods=["POST"]),
            Route("/appointments", customer_appointments),
        ],
        exception_handlers={Problem: _problem, 404: _http_error, 405: _http_error},
    )
    app.state.shop = Shop(records, db_path)
    return Guard(app, token)


def main() -> None:
    parser = argparse.ArgumentParser(description="Spoke & Chain's workshop system")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument(
        "--db", default=":memory:", help="SQLite file for bookings (default: in memory)"
    )
    args = parser.parse_args()
    token = os.environ.get(TOKEN_VARIABLE, "")
    if not token:
        sys.exit(f"error: set {TOKEN_VARIABLE} to the bearer token callers must send")
    uvicorn.run(create_app(token, args.db), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()

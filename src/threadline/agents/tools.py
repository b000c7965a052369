"""Tools the bot calls over the business: order look-up, repair booking, store hours.

Each tool takes plain arguments (strings as the customer gave them, or typed
values), returns a frozen result whose ``to_payload()`` is what
``action.completed`` records, and raises :class:`ToolError` on bad input or
when the business cannot do it. ``ToolError.retryable`` keeps the meaning it has
across Threadline: whether the *same* call may succeed later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Final

from threadline.business import (
    DEFAULT_SERVICE,
    Appointment,
    Business,
    Hours,
    OrderOption,
    OrderStatus,
    SlotUnavailable,
)
from threadline.core.errors import ThreadlineError

LOOKUP_ORDER: Final = "lookup_order"
BOOK_APPOINTMENT: Final = "book_appointment"
STORE_HOURS: Final = "store_hours"
TOOLS: Final = frozenset({LOOKUP_ORDER, BOOK_APPOINTMENT, STORE_HOURS})
#: Requested by the bot, run by the service after the turn: it signs and records a
#: check-in code and sends it to the customer's chat (see threadline.channels.inperson).
SEND_CHECKIN_CODE: Final = "send_checkin_code"

#: How many alternative slots a refused booking suggests.
SUGGESTIONS: Final = 3
#: How far ahead a refused booking looks for another open day.
LOOKAHEAD_DAYS: Final = 7


class ToolError(ThreadlineError):
    """A tool could not do what was asked. ``code`` is stable; ``suggestions`` are
    alternative slot starts when a booking was refused."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        suggestions: tuple[datetime, ...] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.suggestions = suggestions


@dataclass(frozen=True, slots=True)
class OrderLookup:
    """An order's status; the item, account and options only when the owner is verified."""

    order_number: str
    status: OrderStatus
    verified: bool
    item: str | None = None
    detail: str | None = None
    reason: str | None = None
    options: tuple[OrderOption, ...] = ()
    delivered_on: date | None = None
    expected_on: date | None = None

    def to_payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "order": self.order_number,
            "status": self.status,
            "verified": self.verified,
        }
        if self.verified:
            out |= {"item": self.item, "detail": self.detail}
            out["options"] = [o.kind for o in self.options]
            if self.delivered_on:
                out["delivered_on"] = self.delivered_on.isoformat()
            if self.expected_on:
                out["expected_on"] = self.expected_on.isoformat()
        return out


@dataclass(frozen=True, slots=True)
class Booking:
    """A booked slot, and the business with it in the book."""

    appointment: Appointment
    store_name: str
    business: Business

    def to_payload(self) -> dict[str, Any]:
        a = self.appointment
        return {
            "appointment_id": a.id,
            "store": a.store_id,
            "start": a.start.isoformat(),
            "service": a.service,
        }


@dataclass(frozen=True, slots=True)
class StoreHours:
    """A store's hours on one day (``hours`` None when closed) and its week at a glance."""

    store_id: str
    store_name: str
    day: date
    hours: Hours | None
    week: str

    @property
    def closed(self) -> bool:
        return self.hours is None

    def to_payload(self) -> dict[str, Any]:
        return {
            "store": self.store_id,
            "date": self.day.isoformat(),
            "hours": str(self.hours) if self.hours else "closed",
            "week": self.week,
        }


def _day(value: date | str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ToolError("bad_date", f"{value!r} is not a date (YYYY-MM-DD)") from None


def _time(value: time | str) -> time:
    if isinstance(value, time):
        return value
    try:
        return time.fromisoformat(value.strip())
    except ValueError:
        raise ToolError("bad_time", f"{value!r} is not a time (HH:MM)") from None


class BusinessTools:
    """The bot's tools over one :class:`Business` value."""

    def __init__(self, business: Business) -> None:
        self.business = business

    def _store_name(self, store: str) -> str:
        found = self.business.store(store)
        if found is None:
            known = ", ".join(s.id for s in self.business.stores)
            raise ToolError("unknown_store", f"no store {store!r} (known: {known})")
        return found.name

    def verified_owner(
        self,
        order_number: str,
        *,
        customer_id: str | None,
        identity_verified: bool,
        postcode: str | None = None,
    ) -> bool:
        """Whether the person asking has proven they own the order: a verified identity
        of the order's customer, or the postcode on that customer's account."""
        order = self.business.order(order_number)
        if order is None:
            return False
        if identity_verified and customer_id == order.customer_id:
            return True
        owner = self.business.customer(order.customer_id)
        return owner is not None and postcode is not None and postcode == owner.postcode

    def lookup_order(self, order_number: str, verified: bool) -> OrderLookup:
        """The order's status; details only when ``verified`` (see :meth:`verified_owner`)."""
        wanted = order_number.strip().lstrip("#").strip()
        if not wanted.isdigit():
            raise ToolError("bad_order_number", f"{order_number!r} is not an order number")
        order = self.business.order(wanted)
        if order is None:
            raise ToolError("unknown_order", f"there is no order {wanted}")
        if not verified:
            return OrderLookup(order.number, order.status, verified=False)
        return OrderLookup(
            order.number,
            order.status,
            verified=True,
            item=order.item,
            detail=order.detail,
            reason=order.reason,
            options=order.options,
            delivered_on=order.delivered_on,
            expected_on=order.expected_on,
        )

    def book_appointment(
        self,
        store: str,
        day: date | str,
        at: time | str,
        *,
        customer_id: str | None = None,
        service: str = DEFAULT_SERVICE,
        now: datetime | None = None,
    ) -> Booking:
        """Book the repair-counter slot at ``store`` on ``day`` at ``at`` (local time)."""
        name = self._store_name(store)
        start = self.business.slot_at(_day(day), _time(at))
        try:
            business, appointment = self.business.book(
                store, start, customer_id=customer_id, service=service, now=now
            )
        except SlotUnavailable as exc:
            raise ToolError(
                f"slot_{exc.reason}",
                str(exc),
                retryable=exc.reason == "taken",  # a cancellation can free it
                suggestions=self.nearest_free(store, start, now=now),
            ) from None
        return Booking(appointment, name, business)

    def nearest_free(
        self, store: str, wanted: datetime, *, now: datetime | None = None
    ) -> tuple[datetime, ...]:
        """Free slots closest to ``wanted`` on its day, else the first ones on the next open day."""
        business = self.business
        after = business.local(now) if now is not None else None
        day = business.local(wanted).date()
        for offset in range(LOOKAHEAD_DAYS + 1):
            free = business.free_slots(store, day + timedelta(days=offset), after=after)
            if free:
                if offset == 0:
                    free = tuple(sorted(free, key=lambda s: (abs(s - wanted), s)))
                return tuple(sorted(free[:SUGGESTIONS]))
        return ()

    def store_hours(self, store: str, day: date | str) -> StoreHours:
        """The store's hours on ``day``."""
        name = self._store_name(store)
        wanted = _day(day)
        found = self.business.require_store(store)
        return StoreHours(store, name, wanted, found.hours.on(wanted), found.hours.describe())

"""A business as one immutable value: look-ups, opening hours and the repair-counter book.

Booking returns a new :class:`Business` with the appointment added, so every
answer is a pure function of the value it was asked of, and tests and replays
see exactly the bookings they made.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time
from typing import Final
from zoneinfo import ZoneInfo

from threadline.business.values import (
    SLOT_LENGTH,
    TIMEZONE,
    Appointment,
    Associate,
    Customer,
    Hours,
    HumanAgent,
    Order,
    Queue,
    Store,
    e164,
)
from threadline.core.errors import DomainError, NotFound

DEFAULT_SERVICE: Final = "repair"


def _date(day: date) -> str:
    return f"{day:%A} {day.day} {day:%B}"


class SlotUnavailable(DomainError):
    """The slot is outside store hours, already past, misaligned or already booked."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Business:
    """Stores, customers, orders, the appointment book, and the people who serve them."""

    name: str
    stores: tuple[Store, ...]
    customers: tuple[Customer, ...]
    orders: tuple[Order, ...]
    appointments: tuple[Appointment, ...]
    queues: tuple[Queue, ...]
    agents: tuple[HumanAgent, ...]
    supervisor: HumanAgent
    associates: tuple[Associate, ...]
    timezone: ZoneInfo = TIMEZONE

    # -- time ---------------------------------------------------------------------------

    def local(self, moment: datetime) -> datetime:
        """``moment`` in the business's zone; naive datetimes are refused."""
        if moment.tzinfo is None:
            raise ValueError("a naive datetime has no place on the business's clock")
        return moment.astimezone(self.timezone)

    def today(self, now: datetime) -> date:
        return self.local(now).date()

    # -- look-ups -----------------------------------------------------------------------

    def store(self, store_id: str) -> Store | None:
        return next((s for s in self.stores if s.id == store_id), None)

    def require_store(self, store_id: str) -> Store:
        store = self.store(store_id)
        if store is None:
            raise NotFound(f"no store {store_id!r}")
        return store

    def order(self, number: str) -> Order | None:
        """The order numbered ``number`` (``"1042"`` or ``"#1042"``)."""
        wanted = number.strip().lstrip("#").strip()
        return next((o for o in self.orders if o.number == wanted), None)

    def customer(self, customer_id: str) -> Customer | None:
        return next((c for c in self.customers if c.id == customer_id), None)

    def customer_by_phone(self, phone: str) -> Customer | None:
        """The customer with this phone number, in E.164 or any common spelling of it."""
        wanted = e164(phone)
        return next((c for c in self.customers if c.phone == wanted), None) if wanted else None

    def customer_by_email(self, email: str) -> Customer | None:
        wanted = email.strip().casefold()
        return next((c for c in self.customers if c.email.casefold() == wanted), None)

    def customer_by_member_id(self, member_id: str) -> Customer | None:
        wanted = member_id.strip().upper()
        return next((c for c in self.customers if c.member_id == wanted), None)

    def orders_of(self, customer_id: str) -> tuple[Order, ...]:
        return tuple(o for o in self.orders if o.customer_id == customer_id)

    def queue(self, queue_id: str) -> Queue | None:
        return next((q for q in self.queues if q.id == queue_id), None)

    def agent(self, agent_id: str) -> HumanAgent | None:
        people = (*self.agents, self.supervisor)
        return next((a for a in people if a.id == agent_id), None)

    def associates_at(self, store_id: str) -> tuple[Associate, ...]:
        return tuple(a for a in self.associates if a.store_id == store_id)

    # -- hours and the appointment book ----------------------------------------------------

    def hours_on(self, store_id: str, day: date) -> Hours | None:
        """The store's hours on ``day``, or None when it is closed."""
        return self.require_store(store_id).hours.on(day)

    def slots(self, store_id: str, day: date) -> tuple[datetime, ...]:
        """Every repair-counter slot start on ``day``: each 30 minutes within store hours."""
        hours = self.hours_on(store_id, day)
        if hours is None:
            return ()
        start = datetime.combine(day, hours.opens, self.timezone)
        closes = datetime.combine(day, hours.closes, self.timezone)
        out: list[datetime] = []
        while start + SLOT_LENGTH <= closes:
            out.append(start)
            start += SLOT_LENGTH
        return tuple(out)

    def appointments_at(self, store_id: str, day: date) -> tuple[Appointment, ...]:
        return tuple(
            a for a in self.appointments if a.store_id == store_id and a.start.date() == day
        )

    def appointments_for(self, customer_id: str) -> tuple[Appointment, ...]:
        return tuple(a for a in self.appointments if a.customer_id == customer_id)

    def free_slots(
        self, store_id: str, day: date, *, after: datetime | None = None
    ) -> tuple[datetime, ...]:
        """Slots on ``day`` nobody has booked, starting at or after ``after`` if given."""
        taken = {a.start for a in self.appointments_at(store_id, day)}
        return tuple(
            s for s in self.slots(store_id, day) if s not in taken and (after is None or s >= after)
        )

    def slot_at(self, day: date, at: time) -> datetime:
        """The local start time of a slot on ``day`` at ``at``."""
        return datetime.combine(day, at, self.timezone)

    def book(
        self,
        store_id: str,
        start: datetime,
        *,
        customer_id: str | None,
        service: str = DEFAULT_SERVICE,
        now: datetime | None = None,
    ) -> tuple[Business, Appointment]:
        """This business with ``start`` booked at ``store_id``, and the new appointment.

        Raises NotFound for an unknown store and SlotUnavailable when the slot is
        not in store hours, already past (given ``now``) or taken.
        """
        store = self.require_store(store_id)
        local = self.local(start)
        day = local.date()
        if self.hours_on(store_id, day) is None:
            raise SlotUnavailable(f"{store.name} is closed on {_date(day)}", "closed")
        if local not in self.slots(store_id, day):
            raise SlotUnavailable(
                f"{local:%H:%M} is not a repair slot at {store.name} on {day:%A}", "outside_hours"
            )
        if now is not None and local < self.local(now):
            raise SlotUnavailable(f"{_date(day)} {local:%H:%M} has already passed", "past")
        if local not in self.free_slots(store_id, day):
            raise SlotUnavailable(f"{_date(day)} {local:%H:%M} is already booked", "taken")
        appointment = Appointment(
            id=f"apt-{store_id}-{local:%Y%m%d-%H%M}",
            store_id=store_id,
            customer_id=customer_id,
            service=service,
            start=local,
        )
        booked = tuple(sorted((*self.appointments, appointment), key=lambda a: a.start))
        return replace(self, appointments=booked), appointment

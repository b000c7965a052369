"""The booking flow: which location, which day, which time, then the business's system books.

The business's system owns its book: the pack's ``availability`` tool says
which start times are free, its ``book`` tool books one or refuses with a
code (``slot_taken``, ``slot_closed``…) and, in ``details.suggestions``,
other times to offer. The call carries an idempotency key from the turn, so a
redelivered turn books nothing twice.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from threadline.agents.actions import call_tool
from threadline.agents.step import Step
from threadline.business import Location
from threadline.business.behaviour import BookingIntent
from threadline.tools import ToolFailure


def _location_label(step: Step, intent: BookingIntent) -> str:
    return step.business.pack.slots[intent.booking.location_slot].label


def _at(value: str, location: Location) -> datetime | None:
    """A time the system gave, on the location's clock (a naive one is its wall time)."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=location.timezone)
    return moment.astimezone(location.timezone)


def _vars(step: Step, location: Location) -> dict[str, Any]:
    return step.business.location_vars[location.id]


def _place(step: Step, location: Location) -> dict[str, Any]:
    """What a reply about ``location`` sees of it: the place, and the locale its times read in."""
    return {"location": _vars(step, location), "locale": location.locale}


def _refused(step: Step, failure: ToolFailure, location: Location) -> str:
    raw = failure.details.get("suggestions", ())
    suggestions = [s for s in (_at(str(v), location) for v in raw) if s is not None]
    return step.say("refused", error={"code": failure.code, "message": str(failure)},
                    suggestions=suggestions, **_place(step, location))  # fmt: skip


async def _already_booked(step: Step, intent: BookingIntent, location: Location,
                          start: datetime) -> bool:  # fmt: skip
    tool, customer_id = intent.booking.appointments, step.context.customer_id
    if tool is None or customer_id is None:
        return False
    found = await call_tool(step, tool, {"customer_id": customer_id})
    if isinstance(found, ToolFailure):
        return False
    return any(
        a.get("location") == location.id and _at(str(a.get("start")), location) == start
        for a in found.get("appointments", ())
        if isinstance(a, dict)
    )


async def booking(step: Step, intent: BookingIntent) -> str:
    spec = intent.booking
    business = step.business
    offering = [loc for loc in business.locations if spec.service in loc.services]
    location = business.location(step.slots.get(spec.location_slot, ""))
    if location is None and len(offering) == 1:
        location = offering[0]  # one place offers it: nothing to ask
    if location is None or spec.service not in location.services:
        offered = {loc.id: _vars(step, loc) for loc in offering}
        return step.say("ask_location", locations=offered,
                        location_label=_location_label(step, intent))  # fmt: skip
    day_text = step.slots.get(spec.date_slot)
    day = date.fromisoformat(day_text) if day_text else None
    if day is None or day < step.today:
        return step.say("ask_day", **_place(step, location))
    at_text = step.slots.get(spec.time_slot)
    where: dict[str, Any] = {"location": location.id, "date": day.isoformat(),
                             "service": spec.service}  # fmt: skip
    if at_text is None:
        free = await call_tool(step, spec.availability, where)
        if isinstance(free, ToolFailure):
            return _refused(step, free, location)
        starts = [datetime.combine(day, time.fromisoformat(t), location.timezone)
                  for t in free.get("slots", ())]  # fmt: skip
        if not starts:
            closed = location.hours.on(day) is None
            return step.say("none_free", **_place(step, location), day=day, closed=closed)
        return step.say("offer_times", **_place(step, location), day=day, free=starts)
    start = datetime.combine(day, time.fromisoformat(at_text), location.timezone)
    if await _already_booked(step, intent, location, start):
        return step.say("already_booked", **_place(step, location), start=start)
    booked = await call_tool(
        step, spec.book, {**where, "time": at_text, "customer_id": step.context.customer_id}
    )
    if isinstance(booked, ToolFailure):
        return _refused(step, booked, location)
    when = _at(str(booked.get("start", "")), location) or start
    return step.say("booked", appointment=booked, **_place(step, location), start=when,
                    service_name=location.service_names[spec.service])  # fmt: skip

"""What the bot does for each intent, and how a tool call is recorded.

Each action takes the turn's :class:`Step` and returns the reply. Tool calls go
through :func:`call_tool`, which records ``action.requested`` and then
``action.completed`` or ``action.failed``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Final, Protocol, TypeVar

from threadline.agents import replies
from threadline.agents.context import ConversationContext
from threadline.agents.slots import DATE, ORDER_NUMBER, POSTCODE, STORE, TIME, Extraction
from threadline.agents.tools import (
    BOOK_APPOINTMENT,
    LOOKUP_ORDER,
    SEND_CHECKIN_CODE,
    STORE_HOURS,
    BusinessTools,
    StoreHours,
    ToolError,
)
from threadline.agents.turns import TurnWriter
from threadline.business import Business
from threadline.business.values import Store
from threadline.core.conversation import ConversationState


class _Result(Protocol):
    def to_payload(self) -> dict[str, object]: ...


R = TypeVar("R", bound=_Result)


@dataclass(slots=True)
class Step:
    """The working state of one bot turn, shared by the actions it takes.

    ``answers`` are the knowledge answers (the postcode) this contact has given, this
    turn included; only they prove an order is theirs, never ``slots`` from earlier contacts.
    """

    state: ConversationState
    writer: TurnWriter
    context: ConversationContext
    extraction: Extraction
    business: Business
    now: datetime
    today: date
    short: bool
    slots: dict[str, str] = field(default_factory=dict)
    new_slots: dict[str, str] = field(default_factory=dict)
    answers: dict[str, str] = field(default_factory=dict)
    identity_verified: bool = False
    outcomes: list[tuple[str, bool]] = field(default_factory=list)


Action = Callable[[Step], str]


def call_tool(
    step: Step, tool: str, arguments: dict[str, object], run: Callable[[BusinessTools], R]
) -> R | ToolError:
    """Record a tool call around ``run``: requested, then completed or failed."""
    writer = step.writer
    action_id = writer.next_action_id()
    requested = writer.emit(
        "action.requested", {"action_id": action_id, "tool": tool, "arguments": arguments}
    )
    try:
        result = run(BusinessTools(step.business))
    except ToolError as exc:
        writer.emit(
            "action.failed",
            {"action_id": action_id, "error": f"{exc.code}: {exc}", "retryable": exc.retryable},
            caused_by=requested,
        )
        step.outcomes.append((tool, False))
        return exc
    writer.emit(
        "action.completed",
        {"action_id": action_id, "result": result.to_payload()},
        caused_by=requested,
    )
    step.outcomes.append((tool, True))
    return result


def order_status(step: Step) -> str:
    number = step.slots.get(ORDER_NUMBER)
    if number is None:
        return replies.ask_order_number(step.short)
    postcode = step.answers.get(POSTCODE)
    verified = BusinessTools(step.business).verified_owner(
        number,
        customer_id=step.context.customer_id,
        identity_verified=step.identity_verified,
        postcode=postcode,
    )
    found = call_tool(
        step,
        LOOKUP_ORDER,
        {"order_number": number, "verified": verified},
        lambda tools: tools.lookup_order(number, verified),
    )
    if isinstance(found, ToolError):
        return replies.order_not_found(number, step.short)
    # A postcode that did not match is said so, rather than asked for again.
    mismatch = not verified and postcode is not None
    return replies.order_status(found, step.business, step.today, step.short, mismatch=mismatch)


def book_appointment(step: Step) -> str:
    business, short, today = step.business, step.short, step.today
    store = business.store(step.slots.get(STORE, ""))
    if store is None:
        return replies.ask_store(business, short)
    day_text = step.slots.get(DATE)
    day = date.fromisoformat(day_text) if day_text else None
    if day is None or day < today:
        return replies.ask_day(store, short)
    at_text = step.slots.get(TIME)
    if at_text is None:
        free = business.free_slots(store.id, day, after=step.now)
        return replies.offer_times(store, day, free, today, short)
    start = business.slot_at(day, time.fromisoformat(at_text))
    customer_id = step.context.customer_id
    if customer_id and any(
        a.store_id == store.id and a.start == start for a in business.appointments_for(customer_id)
    ):
        return replies.already_booked(store, start, today, short)
    booking = call_tool(
        step,
        BOOK_APPOINTMENT,
        {"store": store.id, "date": day.isoformat(), "time": at_text},
        lambda tools: tools.book_appointment(
            store.id, day, at_text, customer_id=customer_id, now=step.now
        ),
    )
    if isinstance(booking, ToolError):
        return replies.booking_refused(booking, today, short)
    step.business = booking.business
    return replies.booked(booking, today, short)


def store_hours(step: Step) -> str:
    """Hours on the day asked (a follow-up keeps the day asked before), else today."""
    day_text = step.extraction.values.get(DATE)
    if day_text is None and step.context.topic == "store_hours":
        day_text = step.context.slots.get(DATE)
    day = date.fromisoformat(day_text) if day_text else step.today
    known = step.slots.get(STORE)
    store_ids = [known] if known else [s.id for s in step.business.stores]
    answers: list[StoreHours] = []
    for store_id in store_ids:
        arguments: dict[str, object] = {"store": store_id, "date": day.isoformat()}
        found = call_tool(step, STORE_HOURS, arguments, _hours_of(store_id, day))
        if not isinstance(found, ToolError):
            answers.append(found)
    return replies.store_hours(answers, step.today, step.short)


def _hours_of(store_id: str, day: date) -> Callable[[BusinessTools], StoreHours]:
    return lambda tools: tools.store_hours(store_id, day)


def store_visit(step: Step) -> str:
    """A customer who wants to come in: on chat, a check-in code for the store is sent.

    The store is the one named, else the pickup store of the customer's order
    (once they have proven it is theirs), else the customer is asked.
    """
    business = step.business
    store = business.store(step.slots.get(STORE, "")) or _pickup_store(step)
    if store is None:
        return replies.ask_visit_store(business, step.short)
    if step.short:  # a phone cannot show a QR code; the kiosk knows the number
        return replies.visit_by_phone(store)
    writer = step.writer
    request = {"action_id": writer.next_action_id(), "tool": SEND_CHECKIN_CODE,
               "arguments": {"store": store.id}}  # fmt: skip
    writer.emit("action.requested", request)
    return replies.checkin_code_coming(store)


def _pickup_store(step: Step) -> Store | None:
    number = step.slots.get(ORDER_NUMBER)
    order = step.business.order(number) if number else None
    if order is None or not BusinessTools(step.business).verified_owner(
        order.number, customer_id=step.context.customer_id,
        identity_verified=step.identity_verified, postcode=step.answers.get(POSTCODE),
    ):  # fmt: skip
        return None
    pickup = next((o for o in order.options if o.kind == "pickup" and o.store_id), None)
    return step.business.store(pickup.store_id or "") if pickup else None


def greeting(step: Step) -> str:
    customer_id = step.context.customer_id
    customer = step.business.customer(customer_id) if customer_id else None
    return replies.greeting(customer.first_name if customer else None, step.short)


def thanks(step: Step) -> str:
    return replies.thanks(step.short)


def needs_person(step: Step) -> str:
    return replies.needs_person(step.short)


def not_understood(step: Step) -> str:
    return replies.not_understood(step.short)


def expecting(context: ConversationContext) -> str | None:
    """The slot the bot's last question asked for, when a bare answer could be it."""
    if context.topic == "book_appointment" and {STORE, DATE} <= set(context.slots):
        return TIME
    return None


ACTIONS: Final[Mapping[str, Action]] = {
    "order_status": order_status,
    "book_appointment": book_appointment,
    "store_hours": store_hours,
    "store_visit": store_visit,
    "greeting": greeting,
    "thanks": thanks,
    # Reached only when a policy lets these stay with the bot.
    "human": needs_person,
    "cancel_order": needs_person,
    "refund": needs_person,
    "payment_dispute": needs_person,
    "complaint": needs_person,
}

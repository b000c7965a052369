"""What the bot says. Each reply has a chat form and, with ``short``, a voice form
that is quick to listen to: one or two sentences, no addresses or lists."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Final

from threadline.agents.escalation import Handoff
from threadline.agents.tools import Booking, OrderLookup, StoreHours, ToolError
from threadline.business import Business, OrderOption, Store

#: How an order's status is put to someone who has not proven the order is theirs.
GENERAL_STATUS: Final = {
    "processing": "being prepared",
    "shipped": "on its way",
    "delayed": "delayed",
    "delivered": "marked as delivered",
    "cancelled": "cancelled",
}
HELP: Final = "I can help with orders, repair appointments and store hours."


def day_phrase(day: date, today: date) -> str:
    """ "today", "tomorrow", or "on Sunday 9 March"."""
    if day == today:
        return "today"
    if (day - today).days == 1:
        return "tomorrow"
    return f"on {day:%A} {day.day} {day:%B}"


def _times(slots: Sequence[datetime]) -> str:
    labels = [f"{s:%H:%M}" for s in slots]
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " or " + labels[-1]


def _option(option: OrderOption, business: Business, short: bool) -> str:
    if option.kind == "ship_replacement":
        return f"we can ship a replacement in {option.days} days"
    store = business.store(option.store_id or "")
    if store is None:
        return "you can pick it up in store"
    return f"you can pick it up at {store.name if short else f'{store.name}, {store.address}'}"


def order_status(
    found: OrderLookup, business: Business, today: date, short: bool, *, mismatch: bool = False
) -> str:
    """The order's status; with no verified owner, only in general terms and how to verify."""
    n = found.order_number
    if not found.verified:
        general = f"Order {n} is {GENERAL_STATUS.get(found.status, found.status)}."
        if mismatch:
            return f"{postcode_mismatch(short)} {general}"
        ask = "What's the postcode on the account?" if short else (
            "To share the details, I need to check it's yours: what's the postcode on the account?"
        )  # fmt: skip
        return f"{general} {ask}"
    item = "" if short else f" ({found.item})"
    if found.status == "delayed":
        text = f"Order {n}{item} is delayed: {found.reason or found.detail}."
    elif found.status == "delivered" and found.delivered_on:
        ago, on = (today - found.delivered_on).days, day_phrase(found.delivered_on, today)
        text = f"Order {n}{item} was delivered {ago} days ago, {on}."
    elif found.status == "shipped" and found.expected_on:
        text = f"Order {n}{item} has shipped and arrives {day_phrase(found.expected_on, today)}."
    else:
        text = f"Order {n}{item} is {found.status}: {found.detail}."
    if found.options:
        choices = [_option(o, business, short) for o in found.options]
        sentence = ", or ".join(choices)
        text += f" {sentence[0].upper()}{sentence[1:]}. Which would you prefer?"
    return text


def ask_order_number(short: bool) -> str:
    return "What's the order number?" if short else "Sure — what's the order number?"


def postcode_mismatch(short: bool) -> str:
    return "That postcode doesn't match the account." if short else (
        "That postcode doesn't match the account on this order, so I can't share its details."
    )  # fmt: skip


def order_not_found(number: str, short: bool) -> str:
    if short:
        return f"I can't find order {number}. Could you check the number?"
    return f"I couldn't find an order {number}. Could you check the number and send it again?"


def ask_store(business: Business, short: bool) -> str:
    if short:
        return "Which store: Market Street in San Francisco, or Broadway in Oakland?"
    names = " or ".join(f"{s.name} ({s.city})" for s in business.stores)
    return f"Which store would suit you: {names}?"


def ask_visit_store(business: Business, short: bool) -> str:
    if short:
        return "Which store: Market Street in San Francisco, or Broadway in Oakland?"
    names = " or ".join(f"{s.name} ({s.city})" for s in business.stores)
    example = "“I'll come to the Market Street store”"
    return f"Which store will you come to: {names}? Say, for example, {example}."


def visit_by_phone(store: Store) -> str:
    return (f"When you get to {store.name}, check in at the kiosk with the number you are "
            "calling from, and we'll have everything ready.")  # fmt: skip


def checkin_code_coming(store: Store) -> str:
    return (f"Of course: come to {store.name}, {store.address}. I'm sending you a check-in "
            "code now; show it at the counter and we'll take it from there.")  # fmt: skip


def ask_day(store: Store, short: bool) -> str:
    return "Which day?" if short else f"Which day would you like to come in to {store.name}?"


def offer_times(store: Store, day: date, free: Sequence[datetime], today: date, short: bool) -> str:
    when = day_phrase(day, today)
    if not free:
        hours = store.hours.on(day)
        why = "closed" if hours is None else "fully booked"
        return f"{store.name} is {why} {when}. Is another day good for you?"
    shown = free[:3] if short else free[:6]
    return f"Free times at {store.name} {when}: {_times(shown)}. Which suits you?"


def booked(booking: Booking, today: date, short: bool) -> str:
    a = booking.appointment
    when = f"{day_phrase(a.start.date(), today)} at {a.start:%H:%M}"
    if short:
        return f"You're booked at {booking.store_name} {when}."
    return f"You're booked for a {a.service} at {booking.store_name} {when}. See you then!"


def already_booked(store: Store, start: datetime, today: date, short: bool) -> str:
    return (
        f"You're already booked at {store.name} {day_phrase(start.date(), today)} at {start:%H:%M}."
    )


def booking_refused(error: ToolError, today: date, short: bool) -> str:
    reasons = {
        "slot_taken": "that time is already taken",
        "slot_closed": "the store is closed then",
        "slot_outside_hours": "that's outside the repair counter's hours",
        "slot_past": "that time has already passed",
    }
    text = f"Sorry, {reasons.get(error.code, 'I could not book that')}."
    if error.suggestions:
        first = error.suggestions[0]
        when = day_phrase(first.date(), today)
        text += f" Free {when}: {_times(error.suggestions)}."
    return text


def store_hours(answers: Sequence[StoreHours], today: date, short: bool) -> str:
    lines: list[str] = []
    for a in answers:
        when = day_phrase(a.day, today)
        line = (
            f"{a.store_name} is closed {when}"
            if a.closed
            else f"{a.store_name} is open {when}, {a.hours}"
        )
        lines.append(line + ("." if short else f". (Usual hours: {a.week}.)"))
    return " ".join(lines)


def greeting(first_name: str | None, short: bool) -> str:
    hello = f"Hi {first_name}!" if first_name else "Hi!"
    return f"{hello} How can I help?" if short else f"{hello} {HELP} What can I do for you?"


#: How the welcome back names what the conversation was about.
_TOPICS: Final = {
    "order_status": "an order",
    "book_appointment": "booking a repair",
    "store_hours": "our store hours",
}


def welcome_back(
    topic: str | None, order_number: str | None, earlier_on: str, verified: bool, short: bool
) -> str | None:
    """Greeting a returning customer with what is open, without revealing anything sensitive.

    None when there is nothing to pick up. An order number the customer gave
    is theirs to hear; the order's details wait until the contact is verified.
    """
    if order_number:
        about = f"order {order_number}"
    elif topic in _TOPICS:
        about = _TOPICS[topic]
    else:
        return None
    where = {"chat": "our chat", "voice": "your call", "in_person": "your visit"}.get(
        earlier_on, "earlier"
    )
    question = f"Welcome back. Are you calling about {about} from {where} earlier?"
    if order_number and not verified:
        question += " To pick it up, what's the postcode on the account?"
    return question if short else question.replace("calling", "here")


def thanks(short: bool) -> str:
    return "You're welcome!" if short else "You're welcome! Is there anything else I can help with?"


def not_understood(short: bool) -> str:
    if short:
        return "Sorry, I didn't catch that. Could you say it another way?"
    return f"Sorry, I didn't understand that. {HELP} Could you put it another way?"


def needs_person(short: bool) -> str:
    return "A colleague can help with that." if short else (
        "That's something a colleague needs to handle; I'll note it for them."
    )  # fmt: skip


def handoff(decision: Handoff, short: bool) -> str:
    team = f"our {decision.queue} team"
    if short:
        return f"I'm connecting you to {team} now. Please stay on the line."
    opening = {
        "customer_request": "Of course.",
        "sensitive_intent": "A colleague will take care of that.",
        "negative_sentiment": "I'm sorry about this.",
        "tool_failure": "I'm having trouble with that.",
        "low_confidence": "I'm not sure I'm following.",
    }.get(decision.reason_code, "")
    return (
        f"{opening} I'm passing this conversation to {team}; they'll see everything so far,"
        " so you won't need to repeat yourself."
    ).strip()


def waiting(queue: str | None, short: bool) -> str:
    team = f"our {queue} team" if queue else "a colleague"
    if short:
        return f"You're in line for {team}."
    return f"You're in line for {team}; they'll see your messages when they join."

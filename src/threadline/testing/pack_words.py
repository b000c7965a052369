"""How the pack's test provider puts what it was told into words.

Pure functions of the request (:mod:`threadline.testing.chat_request`): a tool result
said back (a record's public fields and the proof it asks for, the whole record for its
proven owner, an error, an approval waiting, a knowledge answer, free times, a booking),
a location's hours on a day read from the prompt's weekly hours, the agents a transfer
tool describes. Nothing here adds a fact the request does not hold.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any, Final

from threadline.business.behaviour import BookingIntent, IntentSpec
from threadline.business.hours import WEEKDAYS
from threadline.testing.chat_request import ChatRequest, Offered, Place, Told
from threadline.tools import NOT_FOUND

#: What a result tells the model about the result, not about the record.
_ABOUT: Final = frozenset({"verified", "ask_for", "proof"})


def words(chat: ChatRequest, spec: IntentSpec | None, done: Sequence[Told]) -> str:
    """This turn's results, said in order."""
    return " ".join(s for c in done if (s := said_of(chat, spec, c))).strip()


def said_of(chat: ChatRequest, spec: IntentSpec | None, done: Told) -> str:
    """One call's result as the customer hears it."""
    told = done.told
    if "error" in told:
        return _error(told)
    if "withheld" in told:
        return "Sorry, I can't use what our system answered just now."
    if "approval_id" in told:
        return f"I've asked for that: {told.get('tell_the_customer') or 'a colleague decides'}."
    if "answer" in told:
        return str(told["answer"])
    if isinstance(spec, BookingIntent) and done.tool == spec.booking.availability:
        return _free(chat, done)
    if isinstance(spec, BookingIntent) and done.tool == spec.booking.book:
        return _booked(chat, told)
    if told.get("verified") is False:
        said = f"I can share this much: {fields(told, chat)}."
        if "proof" in told:  # why not, and perhaps what to do about it ("offer a person")
            why, _, then = str(told["proof"]).partition(": ")
            offer = " A colleague can help you if you like." if "person" in then else ""
            return f"{said} Sorry, I can't share more: {why}.{offer}"
        if "ask_for" in told:
            return (f"{said} To tell you more I need to check it's yours: what's the"
                    f" {told['ask_for']} on the account?")  # fmt: skip
        return said
    shown = fields(told, chat)
    return f"Here are the details: {shown}." if shown else ""


def _error(told: Mapping[str, Any]) -> str:
    if "ask_for" in told:
        return f"I need to check it's you first: what's the {told['ask_for']} on the account?"
    error = str(told["error"])
    code, sep, message = error.partition(": ")
    if not sep or " " in code:
        return f"Sorry, that didn't work: {error}."
    if code == NOT_FOUND:
        return f"Sorry, I couldn't find that: {message}."
    return f"Sorry, that didn't work ({code.replace('_', ' ')}): {message}."


def _free(chat: ChatRequest, done: Told) -> str:
    place = chat.place(str(done.arguments.get("location")))
    where = f" at {place.name}" if place else ""
    day = _date(str(done.arguments.get("date")))
    on = f" on {day_said(day)}" if day else ""
    slots = [str(s) for s in done.told.get("slots") or ()]
    if not slots:
        if place is not None and day is not None and hours_on(place.hours, day) is None:
            return f"{place.name} is closed{on}."
        return f"There are no free times{where}{on}."
    return f"Free times{where}{on}: {', '.join(slots)}. Which time would suit you?"


def _booked(chat: ChatRequest, told: Mapping[str, Any]) -> str:
    place = chat.place(str(told.get("location")))
    where = f" at {place.name}" if place else ""
    try:
        start = datetime.fromisoformat(str(told.get("start")))
    except ValueError:
        return f"You're booked{where}."
    service = f" for a {told['service']}" if told.get("service") else ""
    return f"You're booked{service}{where} on {day_said(start.date())} at {start:%H:%M}."


def fields(record: Mapping[str, Any], chat: ChatRequest) -> str:
    """A record's fields as words, without identifiers and the result's own notes; a
    location's id is said as its name."""
    parts = []
    for key, value in record.items():
        if key in _ABOUT or key == "id" or key.endswith("_id"):
            continue
        shown = _value(value, chat)
        if shown:
            parts.append(f"{key.replace('_', ' ')}: {shown}")
    return "; ".join(parts)


def _value(value: Any, chat: ChatRequest) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        inner = fields(value, chat)
        return f"({inner})" if inner else ""
    if isinstance(value, list | tuple):
        return ", ".join(s for v in value if (s := _value(v, chat)))
    place = chat.place(str(value))
    return place.name if place is not None else str(value)


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def day_said(day: date) -> str:
    """``Wednesday 5 March``."""
    return f"{day:%A} {day.day} {day:%B}"


def asks_which(places: Sequence[Place]) -> str:
    names = [p.name for p in places]
    return " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def hours_on(weekly: str, day: date) -> str | None:
    """The span a location's weekly hours, as the prompt writes them (``Mon–Sat
    09:00–19:00, Sun closed``), give ``day`` (None: closed, or not said)."""
    wanted = WEEKDAYS[day.weekday()]
    for part in weekly.split(", "):
        label, _, span = part.partition(" ")
        first, _, last = label.partition("–")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            continue
        start, end = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
        if start <= WEEKDAYS.index(wanted) <= end:
            return None if span.strip() == "closed" else span.strip()
    return None


def agents_of(transfer: Offered) -> dict[str, str]:
    """The agents a transfer tool names, each with its description (from the tool's)."""
    text = transfer.description
    found = sorted((m.start(1), m.end(), name) for name in transfer.choices("agent")
                   if (m := re.search(rf"(?:^|[:;] )({re.escape(name)}): ", text)))  # fmt: skip
    out = {}
    for index, (_, end, name) in enumerate(found):
        stop = found[index + 1][0] if index + 1 < len(found) else len(text)
        out[name] = text[end:stop].strip().rstrip(";").strip()
    return out

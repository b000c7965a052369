"""What the agent does for each kind of intent: a registry of small flows.

Each flow takes the turn and the intent's spec and returns the reply; tool
calls it makes are recorded on the turn. Which intent runs which flow, over
which slots, tools and words, is the pack's to say.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import date
from types import MappingProxyType
from typing import Any, Final

from threadline.agents.actions import request_action
from threadline.agents.booking import booking
from threadline.agents.codes import offer_code
from threadline.agents.context import ConversationContext
from threadline.agents.lookup import find, lookup
from threadline.agents.step import Step
from threadline.business import Business, Location
from threadline.business.behaviour import (
    BookingIntent,
    HoursIntent,
    IntentSpec,
    LookupIntent,
    VisitIntent,
)
from threadline.core.verification import anonymous, at_least

#: Requested by the agent, carried out by the service after the turn: it signs and records a
#: check-in code and sends it to the customer's chat (see threadline.channels.inperson).
SEND_CHECKIN_CODE: Final = "send_checkin_code"

Flow = Callable[[Step, Any], Awaitable[str]]


async def answer(step: Step, intent: IntentSpec) -> str:
    """The intent's ``text`` reply (a greeting knows the customer's first name)."""
    customer = await step.systems.customers.get(step.context.customer_id)
    return step.say("text", customer=customer)


async def needs_person(step: Step, intent: IntentSpec) -> str:
    """Reached only when the policy lets a person's intent stay with the agent."""
    return step.say("needs_person")


async def hours(step: Step, intent: HoursIntent) -> str:
    """Hours on the day asked (a follow-up keeps the day asked before), else today."""
    day_text = step.extraction.values.get(intent.date_slot)
    if day_text is None and step.context.topic == step.intent:
        day_text = step.context.slots.get(intent.date_slot)
    day = date.fromisoformat(day_text) if day_text else step.today
    known = step.business.location(step.slots.get(intent.location_slot, ""))
    places = [known] if known else list(step.business.locations)
    answers = []
    for place in places:
        span = place.hours.on(day)
        where = step.business.location_vars[place.id]
        answers.append({"location": where, "day": day, "closed": span is None,
                        "hours": str(span) if span else None})  # fmt: skip
    return step.say("answer", answers=answers)


async def visit(step: Step, intent: VisitIntent) -> str:
    """A customer who wants to come in: on chat, a check-in code for the location is sent.

    The location is the one named, else the one the customer's record (found by
    ``from_lookup``, once they have proven it is theirs) names, else they are asked.
    """
    business = step.business
    place = business.location(step.slots.get(intent.location_slot, ""))
    if place is None and intent.from_lookup is not None:
        place = await _record_location(step, business, intent.from_lookup)
    if place is None and len(business.locations) == 1:
        place = business.locations[0]  # one place to come to: nothing to ask
    if place is None:
        label = business.pack.slots[intent.location_slot].label
        return step.say(
            "ask_location",
            location_label=label,
            locations=business.location_vars,
        )
    if step.voice:  # a phone cannot show a QR code; the kiosk knows the number
        return step.say("by_phone", location=business.location_vars[place.id])
    request_action(step, SEND_CHECKIN_CODE, {"store": place.id})
    return step.say("code_coming", location=business.location_vars[place.id])


async def _record_location(step: Step, business: Business, lookup_intent: str) -> Location | None:
    spec = business.intent(lookup_intent)
    if not isinstance(spec, LookupIntent) or spec.lookup.visit_location is None:
        return None
    if spec.lookup.slot not in step.slots:
        return None
    found = await find(step, spec)
    if found is None or not found[1].verified:
        return None
    return business.location(str(found[0].get(spec.lookup.visit_location) or ""))


async def verify(step: Step, intent: IntentSpec) -> str:
    """The customer asks to prove who they are by a code: sent to the conversation's
    customer, else to the owner of the record the conversation is about."""
    owner = None if anonymous(step.customer_id) else step.customer_id
    if owner is None:
        owner = await _topic_owner(step)
    if owner is None:
        return step.say("verify_ask")
    if step.customer_id == owner and at_least(step.level, "possession"):
        return step.say("already_verified")
    offered = await offer_code(step, owner)
    return offered if offered is not None else step.say("proof_unavailable", needed="possession")


async def _topic_owner(step: Step) -> str | None:
    topic = step.business.intent(step.context.topic) if step.context.topic else None
    if not isinstance(topic, LookupIntent):
        return None
    found = await find(step, topic)
    owner = found[0].get(topic.lookup.owner) if found is not None else None
    return str(owner) if owner is not None else None


FLOWS: Final[Mapping[str, Flow]] = MappingProxyType({
    "answer": answer,
    "handoff": needs_person,
    "lookup": lookup,
    "booking": booking,
    "hours": hours,
    "visit": visit,
    "verify": verify,
})  # fmt: skip


def expecting(context: ConversationContext, business: Business) -> str | None:
    """The slot the agent's last question asked for, when a bare answer could be it: the
    time of a booking whose location and day are known."""
    intent = business.intent(context.topic) if context.topic else None
    if isinstance(intent, BookingIntent):
        spec = intent.booking
        if spec.location_slot in context.slots and spec.date_slot in context.slots:
            return spec.time_slot
    return None


def topic_slots(intent: IntentSpec | None, knowledge: frozenset[str]) -> frozenset[str]:
    """The slots that move a topic forward: an answer giving only them continues it."""
    if isinstance(intent, LookupIntent):
        return frozenset({intent.lookup.slot}) | knowledge
    if isinstance(intent, BookingIntent):
        b = intent.booking
        return frozenset({b.location_slot, b.date_slot, b.time_slot})
    if isinstance(intent, HoursIntent):
        return frozenset({intent.location_slot, intent.date_slot})
    return frozenset()

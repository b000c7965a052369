"""The test provider: a local OpenAI-compatible server whose answers follow from each request.

A **deterministic test double** of a language model that plays by the rules it is given.
It exercises the model path of the product end to end (the HTTP provider, redaction,
tool rounds under the proof rules, approvals, guardrails, handovers between agents, the
fallback when it is down); it is **not** a measure of any real model's quality. Run the
evaluation suite against a real model (``threadline eval --agent model --agent-option
url=...``) for that.

It reads only the request (:mod:`threadline.testing.chat_request`): the system prompt's
facts, the customer's messages, the tools offered and what this turn's calls were told;
what the agent withholds from a model (a postcode, read ``[postcode]``) it never learns.
It understands the customer's last message with the pack's own embedded classifier, slot
reader and intents (what it is built with: its understanding of language, never a fact
about a customer), reading earlier messages for the topic a bare answer ("5120",
"tomorrow") continues, and then:

- calls a tool it was offered, its arguments from the text or the prompt's "Known in this
  conversation" line: the pack's look-up tool for a question about a record whose
  reference is known (else the customer's records tool, once they proved who they are,
  else it asks for the reference); the availability or booking tool once the location
  and day (and time) are known (else it asks), and the free times after a booking the
  system refused; a tool its name and description say does what the customer asks (a
  refund) once its arguments are known;
- hands to another agent (``transfer_to_agent``) when the tool it needs is not its own:
  to the agent whose description reads most like the request;
- calls ``knowledge_answer`` for a question the pack's knowledge answers, and
  ``handoff_to_person`` for what the pack gives to a person (a request for a person, a
  complaint, a payment dispute) and for an upset customer, to the intent's queue;
- otherwise answers in words: from the tool results (public fields and a request for the
  proof a result asks for; an error; an approval waiting; a knowledge answer), store hours
  from the prompt's locations, a greeting, or that it does not know. It never invents.

Its "today" is the prompt's date (a request without one: the real date). Answers come
whole or streamed (server-sent chunks), in the wire format of
:mod:`threadline.testing.chat_wire`. ``up = False`` makes it answer 503, as a provider
that is down.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from typing import Any, Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from threadline.agents.escalation import EscalationPolicy
from threadline.agents.flows import topic_slots
from threadline.agents.intents import KNOWLEDGE_PREFIX, UNKNOWN, classifier_for
from threadline.agents.model_agent import HANDOFF_TOOL, KNOWLEDGE_LOOKUP, TRANSFER_TOOL
from threadline.agents.model_tools import CUSTOMER_ARGUMENT
from threadline.agents.sentiment import sentiment
from threadline.agents.slots import SlotReader
from threadline.business import Business
from threadline.business.behaviour import BookingIntent, IntentSpec, LookupIntent, ReferenceSlot
from threadline.engine.redaction import PAYMENT_MARK
from threadline.testing.chat_request import (
    ChatRequest,
    Offered,
    Place,
    UnreadableRequest,
    read_request,
)
from threadline.testing.chat_wire import Call, chunks, completion
from threadline.testing.pack_words import agents_of, asks_which, day_said, hours_on, words

#: The agent's own tools: never a pack's.
OWN_TOOLS: Final = frozenset({HANDOFF_TOOL, KNOWLEDGE_LOOKUP, TRANSFER_TOOL})
#: A value the agent took out of the text, by its slot's name: ``[postcode]``.
_MARK: Final = re.compile(r"\[([a-z][a-z0-9_]*)\]")


@dataclass(frozen=True, slots=True)
class Answer:
    """What the double answers: words, or tool calls."""

    text: str = ""
    calls: tuple[Call, ...] = ()


@dataclass(frozen=True, slots=True)
class Understood:
    """The customer's last message as the double reads it."""

    #: The pack's intent (``kb:<entry>`` for a knowledge question); None: not understood.
    intent: str | None
    #: Everything known: the prompt's known slots, this message's over them.
    slots: Mapping[str, str] = field(default_factory=dict)
    #: The slots this message gave.
    said: Mapping[str, str] = field(default_factory=dict)
    #: The topic the earlier messages were about (None: none yet).
    topic: str | None = None


def call(name: str, arguments: Mapping[str, Any]) -> Answer:
    return Answer(calls=(Call(name, json.dumps(dict(arguments))),))


class PackModel:
    """The server's app; run it with :class:`~threadline.testing.live.LiveServer` (see the
    module). ``requests`` keeps the latest requests it was sent."""

    def __init__(self, business: Business, model: str = "pack-model", *, kept: int = 50) -> None:
        self.business = business
        self.model = model
        self.classifier = classifier_for(business)
        self.reader = SlotReader(business)
        self.policy = EscalationPolicy.of(business)
        self.up = True
        self.requests: deque[dict[str, Any]] = deque(maxlen=kept)
        self._readings: dict[tuple[str, str], tuple[str, ...]] = {}
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._answer, methods=["POST"])])

    async def _answer(self, request: Request) -> Response:
        if not self.up:
            return JSONResponse({"error": {"message": "the model is down"}}, status_code=503)
        try:
            body = await request.json()
            self.requests.append(body)
            chat = read_request(body)
        except (ValueError, UnreadableRequest) as exc:
            return JSONResponse({"error": {"message": str(exc)}}, status_code=400)
        answer = self.answer(chat)
        if chat.stream:
            stream = chunks(self.model, answer.text, answer.calls)
            return StreamingResponse(stream, media_type="text/event-stream")
        return JSONResponse(completion(self.model, answer.text, answer.calls))

    # -- deciding ---------------------------------------------------------------------------

    def answer(self, chat: ChatRequest) -> Answer:
        """What the double answers ``chat``: pure, the same request the same answer."""
        understood = self.understand(chat)
        done = [c for c in chat.calls if c.tool != TRANSFER_TOOL]
        if done:
            return self._follow_up(chat, understood) or Answer(
                words(chat, self._intent(understood), done)
            )
        if sentiment(chat.said) <= self.policy.negative_sentiment:
            return self._person(chat, None, "other")  # an upset customer: a person listens
        if (understood.intent or "").startswith(KNOWLEDGE_PREFIX):
            return self._knowledge_answer(chat, understood)
        spec = self._intent(understood)
        act = _ACTS.get(spec.does) if spec is not None else None
        if spec is None or act is None:
            return Answer(self._unknown(chat))
        return act(self, chat, understood, spec)

    def understand(self, chat: ChatRequest) -> Understood:
        """The last message's intent and slots, the topic read from the earlier messages."""
        now = self._now(chat)
        topic: str | None = None
        for text in chat.earlier:
            earlier = self._read(text, topic, chat, now)
            if earlier.intent in self.policy.topics:
                topic = earlier.intent
        return self._read(chat.said, topic, chat, now)

    def _read(self, text: str, topic: str | None, chat: ChatRequest, now: datetime) -> Understood:
        business = self.business
        spec = business.intent(topic) if topic else None
        expecting = None
        if isinstance(spec, BookingIntent):
            b = spec.booking
            if b.location_slot in chat.known and b.date_slot in chat.known:
                expecting = b.time_slot
        slots = business.pack.slots
        # A slot the agent withholds reads "[postcode]": given, though its value is not.
        marks = {m for m in _MARK.findall(text) if m in slots}
        text = _MARK.sub(lambda m: " " if m.group(1) in slots else m.group(0), text)
        extraction = self.reader.read(PAYMENT_MARK.sub(" ", text), now, business,
                                      expecting=expecting)  # fmt: skip
        said = {**{m: f"[{m}]" for m in sorted(marks)}, **extraction.values}
        only_slots = bool(said) and all(w in extraction.fillers for w in extraction.residual)
        prediction = self.classifier.classify(extraction.text)
        sure = prediction.confidence >= self.policy.min_confidence
        intent = prediction.intent if sure and prediction.intent != UNKNOWN else None
        moving = topic_slots(spec, self.policy.knowledge)
        implied = next((slots[n].implies for n in said if slots[n].implies), None)
        if topic is not None and set(said) & moving and (only_slots or intent is None):
            intent = topic  # a bare answer goes on with the topic
        elif implied is not None and (only_slots or intent is None):
            intent = implied  # what an order number alone asks about
        return Understood(intent, {**chat.known, **said}, said, topic)

    def _now(self, chat: ChatRequest) -> datetime:
        """Noon on the prompt's date, on the business's clock (no date: now)."""
        if chat.today is None:
            return datetime.now(UTC)
        return datetime.combine(chat.today, time(12), self.business.timezone)

    def _intent(self, understood: Understood) -> IntentSpec | None:
        return self.business.intent(understood.intent) if understood.intent else None

    # -- what each kind of intent does ------------------------------------------------------

    def _lookup(self, chat: ChatRequest, u: Understood, spec: IntentSpec) -> Answer:
        assert isinstance(spec, LookupIntent)
        lookup = spec.lookup
        if lookup.slot not in u.slots:
            records = self._records(chat, u.intent) if chat.proven else None
            if records is not None:
                return call(records.name, {CUSTOMER_ARGUMENT: ""})
            return Answer(f"Sure, what's the {self._label(lookup.slot)}?")
        return self._use(chat, u, lookup.tool)

    def _booking(self, chat: ChatRequest, u: Understood, spec: IntentSpec) -> Answer:
        assert isinstance(spec, BookingIntent)
        b = spec.booking
        place = chat.place(u.slots.get(b.location_slot))
        if place is None:
            listing = chat.tools.get(b.appointments or "")
            if listing is not None and chat.proven and not u.said:
                return call(listing.name, {CUSTOMER_ARGUMENT: ""})
            return Answer(f"Which store would suit you: {asks_which(chat.places)}?")
        day = u.slots.get(b.date_slot)
        if day is None:
            return Answer(f"Which day would suit you at {place.name}?")
        tool = b.book if b.time_slot in u.slots else b.availability
        return self._use(chat, u, tool, service=spec.booking.service)

    def _hours(self, chat: ChatRequest, u: Understood, spec: IntentSpec) -> Answer:
        where = getattr(spec, "location_slot", None)
        when = getattr(spec, "date_slot", None)
        place = chat.place(u.slots.get(where or ""))
        day_text = u.said.get(when or "") or (u.slots.get(when or "") if u.topic == u.intent
                                              else None)  # fmt: skip
        today = self._now(chat).date()
        day = date.fromisoformat(day_text) if day_text else today
        shown = [place] if place is not None else list(chat.places)
        if not shown:
            return Answer(self._unknown(chat))
        told = "; ".join(_open(p, day) for p in shown)
        return Answer(f"{'Today' if day == today else 'On'} {day_said(day)}: {told}.")

    def _visit(self, chat: ChatRequest, u: Understood, spec: IntentSpec) -> Answer:
        place = chat.place(u.slots.get(getattr(spec, "location_slot", "") or ""))
        if place is None:
            return Answer(f"Which store will you come to: {asks_which(chat.places)}?")
        today = self._now(chat).date()
        return Answer(f"You're welcome at {place.name}, {place.address}."
                      f" Today: {_open(place, today)}.")  # fmt: skip

    def _verify(self, chat: ChatRequest, u: Understood, spec: IntentSpec) -> Answer:
        slots = self.business.pack.slots
        about = next((slots[n].implies for n in u.said if slots[n].implies), None)
        record = self.business.intent(about) if about else None
        if record is not None and record.does != spec.does:  # "order 5120, I can't prove it"
            return _ACTS[record.does](self, chat, replace(u, intent=about), record)
        return Answer("Without it I can't check it's you here. A colleague can help you prove"
                      " it another way: shall I pass you to a person?")  # fmt: skip

    def _greet(self, chat: ChatRequest, u: Understood, spec: IntentSpec) -> Answer:
        if chat.earlier:
            return Answer("You're welcome. Is there anything else I can help with?")
        return Answer("Hello! What can I help you with today?")

    def _to_person(self, chat: ChatRequest, u: Understood, spec: IntentSpec) -> Answer:
        """A tool that does what is asked (a refund, the record's reference known), else a
        person, to the intent's queue."""
        waiting = next((w for w in chat.waiting if self._reading(w, "")[:1] == (u.intent,)),
                       None)  # fmt: skip
        if waiting is not None:
            return Answer(f"A colleague still has to approve the {waiting.replace('_', ' ')};"
                          " you'll hear as soon as they decide.")  # fmt: skip
        tool = next((t for t in self._pack_tools(chat)
                     if self._reading(t.name, t.description)[:1] == (u.intent,)), None)  # fmt: skip
        if tool is not None:
            arguments = self._arguments(chat, u, tool)
            if arguments is not None:
                return call(tool.name, arguments)
        elif self._reference_known(u) and not self._moved(chat):
            agent = self._agent_for(chat, u.intent, only_theirs=True)
            if agent is not None:
                return call(TRANSFER_TOOL, {"agent": agent, "summary": chat.said[:1000]})
        return self._person(chat, spec, getattr(spec, "reason", None) or "other")

    # -- pieces -----------------------------------------------------------------------------

    def _use(self, chat: ChatRequest, u: Understood, name: str, **extra: str) -> Answer:
        """Call ``name`` if offered and its arguments are known; else hand over to the agent
        whose tool it is, or to a person."""
        tool = chat.tools.get(name)
        if tool is None:
            agent = None if self._moved(chat) else self._agent_for(chat, u.intent)
            if agent is not None:
                return call(TRANSFER_TOOL, {"agent": agent, "summary": chat.said[:1000]})
            return self._person(chat, self._intent(u), "other")
        arguments = self._arguments(chat, u, tool, **extra)
        if arguments is None:
            missing = next(p for p in tool.required if p not in self._values(chat, u, extra))
            return Answer(f"Could you tell me the {missing.replace('_', ' ')}?")
        return call(name, arguments)

    def _follow_up(self, chat: ChatRequest, u: Understood) -> Answer | None:
        """After a booking the system refused: the free times that day, if not asked yet."""
        spec = self._intent(u)
        if not isinstance(spec, BookingIntent):
            return None
        b = spec.booking
        last = chat.calls[-1]
        asked = {c.tool for c in chat.calls}
        if last.tool != b.book or "error" not in last.told or "ask_for" in last.told:
            return None
        if b.availability in asked or b.availability not in chat.tools:
            return None
        where = {k: v for k, v in last.arguments.items() if k in {"location", "date", "service"}}
        return call(b.availability, where)

    def _knowledge_answer(self, chat: ChatRequest, u: Understood) -> Answer:
        entry = (u.intent or "").removeprefix(KNOWLEDGE_PREFIX)
        tool = chat.tools.get(KNOWLEDGE_LOOKUP)
        if tool is None or entry not in tool.choices("entry"):
            return Answer(self._unknown(chat))
        return call(KNOWLEDGE_LOOKUP, {"entry": entry})

    def _person(self, chat: ChatRequest, spec: IntentSpec | None, reason: str) -> Answer:
        tool = chat.tools.get(HANDOFF_TOOL)
        if tool is None:
            return Answer("Sorry, I can't help with that here.")
        reasons = tool.choices("reason")
        arguments = {"reason": reason if reason in reasons or not reasons else "other",
                     "summary": chat.said[:500]}  # fmt: skip
        queue = spec.route.queue if spec is not None and spec.route is not None else None
        if queue is not None and queue in tool.choices("queue"):
            arguments["queue"] = queue
        return call(HANDOFF_TOOL, arguments)

    def _arguments(self, chat: ChatRequest, u: Understood, tool: Offered,
                   **extra: str) -> dict[str, Any] | None:  # fmt: skip
        """The call's arguments from what is known (None: a required one is not)."""
        values = self._values(chat, u, extra)
        out: dict[str, Any] = {}
        for name in tool.properties:
            if name == CUSTOMER_ARGUMENT:  # the agent puts the proven customer's own
                if name in tool.required:
                    out[name] = ""
            elif name in values:
                out[name] = values[name]
            elif name in tool.required:
                return None
        return out

    def _values(self, chat: ChatRequest, u: Understood, extra: Mapping[str, str]) -> dict[str, str]:
        """What an argument may be: a slot by its name or its type (``location``), what the
        caller adds, and the customer's words for a reason."""
        slots = self.business.pack.slots
        by_type: dict[str, str] = {slots[n].type: v for n, v in u.slots.items() if n in slots}
        return {"reason": chat.said[:500], **by_type, **u.slots, **extra}

    def _records(self, chat: ChatRequest, intent: str | None) -> Offered | None:
        """An offered tool that lists the customer's own records of this kind."""
        return next((t for t in self._pack_tools(chat) if t.required == (CUSTOMER_ARGUMENT,)
                     and intent in self._reading(t.name, t.description)), None)  # fmt: skip

    def _pack_tools(self, chat: ChatRequest) -> list[Offered]:
        return [t for t in chat.tools.values() if t.name not in OWN_TOOLS]

    def _reading(self, name: str, description: str) -> tuple[str, ...]:
        """The intents a tool's name and description read as, best first (three)."""
        key = (name, description)
        if key not in self._readings:
            text = name.replace("_", " ") + (f": {description}" if description else "")
            scores = self.classifier.scores(text)
            ranked = sorted(scores, key=lambda i: (-scores[i], i))
            self._readings[key] = tuple(ranked[:3])
        return self._readings[key]

    def _agent_for(self, chat: ChatRequest, intent: str | None, *,
                   only_theirs: bool = False) -> str | None:  # fmt: skip
        """The agent (of the transfer tool) whose description reads most like ``intent``;
        ``only_theirs``: only one whose description reads as ``intent`` first."""
        tool = chat.tools.get(TRANSFER_TOOL)
        if tool is None or intent is None:
            return None
        agents = agents_of(tool)
        scored = {name: self.classifier.scores(text).get(intent, 0.0)
                  for name, text in agents.items()}  # fmt: skip
        best = max(sorted(scored), key=lambda name: scored[name], default=None)
        if best is None or scored[best] <= 0.0:
            return None
        if only_theirs and self._reading(best, agents[best])[:1] != (intent,):
            return None
        return best

    def _moved(self, chat: ChatRequest) -> bool:
        """Whether this turn handed over already (once is enough, whatever came of it)."""
        return any(c.tool == TRANSFER_TOOL for c in chat.calls)

    def _reference_known(self, u: Understood) -> bool:
        slots = self.business.pack.slots
        return any(isinstance(slots.get(n), ReferenceSlot) and n not in self.policy.knowledge
                   for n in u.slots)  # fmt: skip

    def _label(self, slot: str) -> str:
        spec = self.business.pack.slots.get(slot)
        return getattr(spec, "label", None) or slot.replace("_", " ")

    def _unknown(self, chat: ChatRequest) -> str:
        """That it does not know, and what it can help with (the agents', the tools' own words)."""
        transfer = chat.tools.get(TRANSFER_TOOL)
        can = [*(agents_of(transfer).values() if transfer else ()),
               *(t.description for t in self._pack_tools(chat) if t.description)]  # fmt: skip
        help_with = f" I can help with: {'; '.join(can)}." if can else ""
        return f"Sorry, I don't know about that.{help_with}"


def _open(place: Place, day: date) -> str:
    span = hours_on(place.hours, day)
    return f"{place.name} is open {span}" if span else f"{place.name} is closed"


_ACTS: Final = {
    "lookup": PackModel._lookup,
    "booking": PackModel._booking,
    "hours": PackModel._hours,
    "visit": PackModel._visit,
    "verify": PackModel._verify,
    "answer": PackModel._greet,
    "handoff": PackModel._to_person,
}

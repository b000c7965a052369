"""NorthwindBot: the embedded, offline agent of the demo business.

One turn is a pure function of the conversation's state, the customer's text,
the channel and the clock: it reads what the conversation already knows,
understands the text, decides whether a person should take over, calls tools,
and returns the canonical events to record — nothing is written or sent here.

A slot already in the state is never asked for again: an order number given on
chat answers the question on the phone. A knowledge answer (the postcode) is
the exception: it proves who is asking only for the contact that gave it, so a
call that claims to be the customer by caller id is asked for it again. A text
that only fills slots the current topic needs ("Oakland", "tomorrow at 11",
"1042") continues that topic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

from threadline.agents import replies
from threadline.agents.actions import ACTIONS, Step, expecting, not_understood
from threadline.agents.context import KNOWLEDGE, ConversationContext
from threadline.agents.escalation import (
    ESCALATION_V1,
    EscalationPolicy,
    Handoff,
    TurnSignals,
    escalate,
)
from threadline.agents.intents import UNKNOWN, IntentClassifier, Prediction, default_classifier
from threadline.agents.sentiment import sentiment
from threadline.agents.slots import DATE, ORDER_NUMBER, POSTCODE, STORE, TIME, extract
from threadline.agents.turns import TurnWriter
from threadline.business import Business
from threadline.core.conversation import (
    AWAITING_HUMAN,
    BOT_ACTIVE,
    WAITING_ON_CUSTOMER,
    ConversationState,
)
from threadline.core.events import Actor, Event, Lineage

BOT_ID: Final = "northwind-bot"
BOT_VERSION: Final = "0.1.0"
BOT_ACTOR: Final = Actor("bot", BOT_ID)
#: The states in which the bot answers; with a human, or closed, it stays silent.
ANSWERS_IN: Final = frozenset({BOT_ACTIVE, WAITING_ON_CUSTOMER, AWAITING_HUMAN})
#: Confidence of a turn read as the answer to the topic's open question.
SLOT_ANSWER_CONFIDENCE: Final = 0.8
#: The slots that move each topic forward.
TOPIC_SLOTS: Final[Mapping[str, frozenset[str]]] = {
    "order_status": frozenset({ORDER_NUMBER, POSTCODE}),
    "book_appointment": frozenset({STORE, DATE, TIME}),
    "store_hours": frozenset({STORE, DATE}),
}
#: A slot that, given on its own with no topic yet, says what the customer wants.
SLOT_IMPLIES: Final = ((ORDER_NUMBER, "order_status"), (TIME, "book_appointment"))
SLOT_ORDER: Final = (ORDER_NUMBER, STORE, DATE, TIME, POSTCODE)
#: The phone menu: a single key pressed when no question is open picks the topic.
KEYPAD_MENU: Final = {
    "0": "human",
    "1": "order_status",
    "2": "book_appointment",
    "3": "store_hours",
}


@dataclass(frozen=True, slots=True)
class Understanding:
    """The turn's intent as the bot acts on it (the classifier's, or the topic continued)."""

    intent: str
    confidence: float
    alternatives: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Turn:
    """The events of one bot turn, the business after it (bookings), the handoff and reply."""

    events: tuple[Event, ...]
    business: Business
    handoff: Handoff | None = None
    reply: str | None = None


class NorthwindBot:
    """The Northwind Devices bot: understands, calls tools, escalates, replies."""

    def __init__(
        self,
        business: Business,
        *,
        classifier: IntentClassifier | None = None,
        policy: EscalationPolicy = ESCALATION_V1,
        version: str = BOT_VERSION,
    ) -> None:
        self.business = business
        self.classifier = classifier or default_classifier()
        self.policy = policy
        self.version = version
        self.lineage = Lineage(BOT_ID, version, model=self.classifier.model_id, policy=policy.name)

    def with_business(self, business: Business) -> NorthwindBot:
        """The same bot over another business value (e.g. ``turn.business`` after a booking)."""
        return NorthwindBot(
            business, classifier=self.classifier, policy=self.policy, version=self.version
        )

    def respond(
        self,
        state: ConversationState,
        text: str,
        channel: str,
        now: datetime,
        *,
        leg_id: str | None = None,
        in_reply_to: str | None = None,
    ) -> list[Event]:
        """The events to record for the bot's answer to ``text``; see :meth:`take_turn`."""
        turn = self.take_turn(state, text, channel, now, leg_id=leg_id, in_reply_to=in_reply_to)
        return list(turn.events)

    def welcome_back(
        self, state: ConversationState, channel: str, now: datetime, *, leg_id: str, anchor: str
    ) -> Turn:
        """Greet a customer who returns on a new leg with what the conversation is about.

        ``anchor`` is the id of the leg's ``leg.started``. No events come back
        when the bot does not hold the conversation, this is its first leg, or
        there is nothing open to pick up.
        """
        earlier = [leg for lid, leg in state.legs.items() if lid != leg_id]
        if state.status not in ANSWERS_IN or not earlier:
            return Turn((), self.business)
        context = ConversationContext.of(state, self.policy)
        latest = max(earlier, key=lambda leg: str(leg.get("started_at")))
        text = replies.welcome_back(
            context.topic,
            context.slots.get(ORDER_NUMBER),
            str(latest.get("channel")),
            context.identity_verified,
            short=channel == "voice",
        )
        if text is None:
            return Turn((), self.business)
        writer = TurnWriter(
            conversation_id=state.conversation_id, channel=channel, now=now, actor=BOT_ACTOR,
            lineage=self.lineage, anchor=anchor, leg_id=leg_id, customer_id=state.customer_id,
            correlation_id=state.correlation_id or "", in_reply_to=anchor,
        )  # fmt: skip
        writer.emit("message.sent", {"text": text, "in_reply_to": None})
        return Turn(tuple(writer.events), self.business, None, text)

    def take_turn(
        self,
        state: ConversationState,
        text: str,
        channel: str,
        now: datetime,
        *,
        leg_id: str | None = None,
        in_reply_to: str | None = None,
    ) -> Turn:
        """Answer ``text``, the customer's latest message, already folded into ``state``.

        ``in_reply_to`` is the id of the customer's event; it anchors the turn's
        idempotency keys, so answering the same message twice yields the same events.
        No events come back when the bot does not hold the conversation.
        """
        if state.status not in ANSWERS_IN:
            return Turn((), self.business)
        writer = TurnWriter(
            conversation_id=state.conversation_id,
            channel=channel,
            now=now,
            actor=BOT_ACTOR,
            lineage=self.lineage,
            anchor=in_reply_to or f"seq-{state.seq}",
            leg_id=leg_id,
            customer_id=state.customer_id,
            correlation_id=state.correlation_id or "",
            in_reply_to=in_reply_to,
        )
        context = ConversationContext.of(state, self.policy)
        extraction = extract(text, now, self.business.timezone, expecting=expecting(context))
        said = extraction.values
        answered = {k: v for k, v in said.items() if k in KNOWLEDGE}
        step = Step(
            state=state,
            writer=writer,
            context=context,
            extraction=extraction,
            business=self.business,
            now=now,
            today=self.business.today(now),
            short=channel == "voice",
            slots={**context.slots, **said},
            # A knowledge answer an earlier contact gave is recorded again for this one.
            new_slots={
                k: v
                for k, v in said.items()
                if context.slots.get(k) != v or (k in KNOWLEDGE and context.answers.get(k) != v)
            },
            answers={**context.answers, **answered},
            identity_verified=context.identity_verified,
        )
        if state.status == AWAITING_HUMAN:
            self._fill_slots(step)
            return self._finish(step, replies.waiting(state.queue, step.short), None)
        choice = KEYPAD_MENU.get(text.strip()) if step.short and not expecting(context) else None
        if choice is not None:  # a key pressed on the phone's menu
            understanding = Understanding(choice, 1.0, {})
            step.new_slots.clear()
            step.slots = dict(context.slots)
            step.answers = dict(context.answers)
        else:
            understanding = self._understand(self.classifier.classify(extraction.text), step)
        writer.emit(
            "intent.detected",
            {
                "intent": understanding.intent,
                "confidence": understanding.confidence,
                "alternatives": dict(understanding.alternatives),
            },
        )
        self._fill_slots(step)
        self._verify_by_postcode(step)
        confident = understanding.confidence >= self.policy.min_confidence
        topical = confident and understanding.intent in self.policy.topics
        signals = TurnSignals(
            intent=understanding.intent,
            confidence=understanding.confidence,
            topic=understanding.intent if topical else context.topic,
            low_confidence_before=context.low_confidence_streak,
            sentiment=sentiment(text),
        )
        handoff = escalate(signals, self.policy)
        if handoff is not None:
            return self._finish(step, replies.handoff(handoff, step.short), handoff)
        action = ACTIONS.get(understanding.intent) if confident else None
        reply = (action or not_understood)(step)
        failed = [tool for tool, ok in step.outcomes if not ok]
        if failed:
            streak = context.tool_failure_streak
            for _, ok in step.outcomes:
                streak = 0 if ok else streak + 1
            signals = replace(signals, tool_failures=streak, failed_tool=failed[-1])
            handoff = escalate(signals, self.policy)
            if handoff is not None:
                reply = replies.handoff(handoff, step.short)
        return self._finish(step, reply, handoff)

    # -- understanding -----------------------------------------------------------------------

    def _understand(self, prediction: Prediction, step: Step) -> Understanding:
        topic = step.context.topic
        found = step.extraction.values
        relevant = topic is not None and bool(set(found) & TOPIC_SLOTS.get(topic, frozenset()))
        unsure = prediction.confidence < self.policy.min_confidence
        if topic is not None and relevant and (step.extraction.only_slots or unsure):
            return self._continued(topic, prediction)
        if not unsure:
            return Understanding(prediction.intent, prediction.confidence, prediction.alternatives)
        if step.extraction.only_slots:
            for slot, intent in SLOT_IMPLIES:
                if slot in found:
                    return self._continued(intent, prediction)
        return Understanding(prediction.intent, prediction.confidence, prediction.alternatives)

    @staticmethod
    def _continued(intent: str, prediction: Prediction) -> Understanding:
        others = {prediction.intent: prediction.confidence, **prediction.alternatives}
        alternatives = {i: c for i, c in others.items() if i not in {intent, UNKNOWN} and c > 0.0}
        return Understanding(intent, SLOT_ANSWER_CONFIDENCE, alternatives)

    def _fill_slots(self, step: Step) -> None:
        for name in SLOT_ORDER:
            if name in step.new_slots:
                step.writer.emit(
                    "slot.filled",
                    {"name": name, "value": step.new_slots[name], "source": "customer"},
                )

    def _verify_by_postcode(self, step: Step) -> None:
        """A postcode said this turn that matches the known customer verifies their claimed
        identifiers, the same postcode again too once a new contact claim has reset them."""
        postcode = step.extraction.values.get(POSTCODE)
        customer_id = step.context.customer_id
        customer = step.business.customer(customer_id) if customer_id else None
        if postcode is None or customer is None or customer.postcode != postcode:
            return
        values = {"phone": customer.phone, "email": customer.email, "member": customer.member_id}
        for kind, verified in sorted(step.state.identities.items()):
            value = values.get(kind)
            if not verified and value:
                payload = {"kind": kind, "value": value, "verified": True, "method": "postcode"}
                step.writer.emit("identity.linked", payload)
                step.identity_verified = True

    def _finish(self, step: Step, reply: str, handoff: Handoff | None) -> Turn:
        writer = step.writer
        if handoff is not None:
            writer.emit("handoff.requested", handoff.to_payload())
        writer.emit("message.sent", {"text": reply, "in_reply_to": writer.in_reply_to})
        return Turn(tuple(writer.events), step.business, handoff, reply)

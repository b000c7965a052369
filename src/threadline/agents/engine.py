"""The embedded agent: offline and deterministic, driven entirely by the business pack.

One turn reads what the conversation already knows, understands the text
(intents learned from the pack's examples, slots from its declarations),
decides whether a person should take over, runs the intent's flow (calling
the business's tools), and returns the canonical events to record; nothing is
written or sent here.

A slot already in the state is never asked for again: an order number given on
chat answers the question on the phone. A knowledge answer (a postcode) is the
exception: it proves who is asking only for the contact that gave it, so a
call that claims to be the customer by caller id is asked for it again. A text
that only fills slots the current topic needs ("Uptown", "tomorrow at 11",
"5120") continues that topic.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Final

import structlog

from threadline.agents.actions import request_action
from threadline.agents.approvals import settle
from threadline.agents.codes import CodeSending, answer_code
from threadline.agents.context import ConversationContext
from threadline.agents.escalation import EscalationPolicy, Handoff, TurnSignals, escalate
from threadline.agents.flows import FLOWS, expecting, topic_slots
from threadline.agents.intents import (
    KNOWLEDGE_PREFIX,
    UNKNOWN,
    IntentClassifier,
    Prediction,
    classifier_for,
)
from threadline.agents.lookup import find, proof_label
from threadline.agents.proofs import by_knowledge, code_in, prove, rejections
from threadline.agents.protocol import LiveTurn, Turn, Understanding
from threadline.agents.sentiment import sentiment
from threadline.agents.slots import SlotReader
from threadline.agents.step import Step
from threadline.agents.turns import TurnWriter
from threadline.business import Business
from threadline.business.behaviour import IntentSpec, LookupIntent
from threadline.core.conversation import (
    AWAITING_HUMAN,
    BOT_ACTIVE,
    WAITING_ON_CUSTOMER,
    ConversationState,
)
from threadline.core.events import Actor, Event, Lineage
from threadline.core.verification import anonymous, at_least, rank
from threadline.engine.redaction import PAYMENT_MARK
from threadline.identity.lockouts import Lockouts
from threadline.privacy import card_talk
from threadline.privacy.consent import AI_PROCESSING, allows
from threadline.systems import Systems

log = structlog.get_logger("threadline.agents")

AGENT_VERSION: Final = "0.2.0"
#: The states in which the agent answers; with a human, or closed, it stays silent.
ANSWERS_IN: Final = frozenset({BOT_ACTIVE, WAITING_ON_CUSTOMER, AWAITING_HUMAN})
#: Confidence of a turn read as the answer to the topic's open question.
SLOT_ANSWER_CONFIDENCE: Final = 0.8
#: The intent a turn that gives card details is recorded as.
PAYMENT_DETAILS: Final = "payment_details"
#: The action a knowledge answer is recorded as (it names the entry and its source).
KNOWLEDGE_TOOL: Final = "knowledge"


def agent_id(business: Business) -> str:
    """The agent's actor id: one per business (``<pack id>-bot``)."""
    return f"{business.id}-bot"


class EmbeddedAgent:
    """Understands, calls the business's tools, escalates, replies."""

    def __init__(
        self,
        systems: Systems,
        *,
        classifier: IntentClassifier | None = None,
        version: str = AGENT_VERSION,
        codes: CodeSending | None = None,
        lockouts: Lockouts | None = None,
    ) -> None:
        business = systems.business
        self.systems = systems
        #: How one-time codes are sent and checked (None: the agent offers none).
        self.codes = codes
        #: The limits on wrong proofs across conversations (None: only per conversation).
        self.lockouts = lockouts
        self.business = business
        self.classifier = classifier or classifier_for(business)
        self.policy = EscalationPolicy.of(business)
        self.reader = SlotReader(business)
        self.version = version
        self.id = agent_id(business)
        self.actor = Actor("bot", self.id)
        self.lineage = Lineage(self.id, version, model=self.classifier.model_id,
                               policy=self.policy.name)  # fmt: skip

    def writer(self, state: ConversationState, channel: str, now: datetime, anchor: str,
               leg_id: str | None, in_reply_to: str | None) -> TurnWriter:  # fmt: skip
        """A writer for one turn of this agent, its keys anchored on ``anchor``."""
        return TurnWriter(
            conversation_id=state.conversation_id, channel=channel, now=now, actor=self.actor,
            lineage=self.lineage, anchor=anchor, leg_id=leg_id, customer_id=state.customer_id,
            correlation_id=state.correlation_id or "", in_reply_to=in_reply_to,
        )  # fmt: skip

    def may_process(self, state: ConversationState) -> bool:
        return allows(self.business, state.consent, AI_PROCESSING)

    async def hand_over(
        self, state: ConversationState, channel: str, now: datetime, *, leg_id: str | None,
        anchor: str,
    ) -> Turn:  # fmt: skip
        """Hand the conversation to a person: the customer does not let the agent process it."""
        if state.status not in {BOT_ACTIVE, WAITING_ON_CUSTOMER}:
            return Turn(())
        writer = self.writer(state, channel, now, anchor, leg_id, None)
        context = ConversationContext.of(state, self.policy)
        step = self.step(state, writer, context, "", now, channel)
        route = self.policy.route(context.topic)
        handoff = Handoff(route.queue, "customer_request", "no consent to AI processing",
                          route.skills)  # fmt: skip
        return self.finish(step, self.handoff_reply(step, handoff), handoff)

    async def welcome_back(
        self, state: ConversationState, channel: str, now: datetime, *, leg_id: str, anchor: str
    ) -> Turn:
        """Greet a customer who returns on a new leg with what the conversation is about.

        ``anchor`` is the id of the leg's ``leg.started``. No events come back
        when the agent does not hold the conversation, this is its first leg, or
        there is nothing open to pick up.
        """
        earlier = [leg for lid, leg in state.legs.items() if lid != leg_id]
        if state.status not in ANSWERS_IN or not earlier:
            return Turn(())
        context = ConversationContext.of(state, self.policy)
        topic = self.business.intent(context.topic) if context.topic else None
        if topic is None:
            return Turn(())
        writer = self.writer(state, channel, now, anchor, leg_id, anchor)
        step = self.step(state, writer, context, "", now, channel)
        step.intent = context.topic
        reference = getattr(getattr(topic, "lookup", None), "slot", None)
        value = context.slots.get(reference) if reference else None
        if value is not None and self.business.has_reply("about", context.topic):
            about = step.say("about", value=value)
        elif topic.label:
            about = topic.label
        else:
            return Turn(())
        latest = max(earlier, key=lambda leg: str(leg.get("started_at")))
        step.intent = None
        needed = self._needed(topic, channel)
        text = step.say(
            "welcome_back",
            about=about,
            earlier_on=str(latest.get("channel")),
            needs_proof=value is not None and not at_least(context.level, needed),
            proof_label=proof_label(step, needed),
        )
        writer.emit("message.sent", {"text": text, "in_reply_to": None})
        return Turn(tuple(writer.events), None, text)

    async def settle(self, state: ConversationState, decision: Event, now: datetime) -> Turn:
        """Answer a person's decision on a sensitive call: run it once approved (then tell the
        customer how it went), or tell the customer why it was denied. No events when the
        agent does not hold the conversation or the decision settles nothing."""
        if state.status not in ANSWERS_IN:
            return Turn(())
        leg_id, channel = reply_leg(state)
        writer = self.writer(state, channel, now, decision.event_id, leg_id, None)
        context = ConversationContext.of(state, self.policy)
        step = self.step(state, writer, context, "", now, channel)
        reply = await settle(step, decision)
        if reply is None:
            return Turn(())
        writer.emit("message.sent", {"text": reply, "in_reply_to": None}, caused_by=decision)
        return Turn(tuple(writer.events), None, reply)

    def _needed(self, topic: IntentSpec, channel: str) -> str | None:
        """The level a topic's record asks for on ``channel`` (None: no proof)."""
        protects = topic.lookup.protects if isinstance(topic, LookupIntent) else None
        return self.business.pack.verification.needed(protects, channel)

    def step(self, state: ConversationState, writer: TurnWriter, context: ConversationContext,
              text: str, now: datetime, channel: str) -> Step:  # fmt: skip
        # A redacted card ("[card ending 1111]") holds digits that are no order number.
        extraction = self.reader.read(
            PAYMENT_MARK.sub(" ", text), now, self.business,
            expecting=expecting(context, self.business),
        )  # fmt: skip
        said = extraction.values
        knowledge = self.policy.knowledge
        answered = {k: v for k, v in said.items() if k in knowledge}
        return Step(
            state=state, writer=writer, context=context, extraction=extraction,
            business=self.business, systems=self.systems, now=now,
            today=self.business.today(now), voice=channel == "voice",
            slots={**context.slots, **said},
            # A knowledge answer an earlier contact gave is recorded again for this one.
            new_slots={k: v for k, v in said.items()
                       if context.slots.get(k) != v
                       or (k in knowledge and context.answers.get(k) != v)},
            answers={**context.answers, **answered},
            customer_id=context.customer_id, level=context.level, channel=channel,
            codes=self.codes, lockouts=self.lockouts,
        )  # fmt: skip

    async def take_turn(
        self,
        state: ConversationState,
        text: str,
        channel: str,
        now: datetime,
        *,
        leg_id: str | None = None,
        in_reply_to: str | None = None,
        live: LiveTurn | None = None,
    ) -> Turn:
        """Answer ``text``, the customer's latest message, already folded into ``state``.

        ``in_reply_to`` is the id of the customer's event; it anchors the turn's
        idempotency keys (and its tool calls'), so answering the same message
        twice yields the same events. No events come back when the agent does
        not hold the conversation.
        """
        if state.status not in ANSWERS_IN or not self.may_process(state):
            return Turn(())
        anchor = in_reply_to or f"seq-{state.seq}"
        writer = self.writer(state, channel, now, anchor, leg_id, in_reply_to)
        return await self.answer(state, text, channel, now, writer)

    async def answer(
        self, state: ConversationState, text: str, channel: str, now: datetime,
        writer: TurnWriter, *, keep_lineage: bool = False,
    ) -> Turn:  # fmt: skip
        """The turn answering ``text``, written on ``writer`` (after what it holds already:
        a model-backed agent's note that the turn came to this agent)."""
        if not keep_lineage:
            writer.lineage = self.lineage
        context = ConversationContext.of(state, self.policy)
        step = self.step(state, writer, context, text, now, channel)
        # The text was redacted before it was recorded: a card in it reads "[card ending 1111]".
        if PAYMENT_MARK.search(text) or card_talk(text):
            return self._payment_details(step)
        code = code_in(text, self.business.pack.verification.codes.length)
        if code is not None and state.challenge is not None and self.codes is not None:
            return await self._answered_code(step, code)
        if state.status == AWAITING_HUMAN:
            return await self._while_waiting(step)
        keypad = self.business.pack.voice.keypad
        menu = step.voice and not expecting(context, self.business)
        choice = keypad.get(text.strip()) if menu else None
        if choice is not None:  # a key pressed on the phone's menu
            understanding = Understanding(choice, 1.0, {})
            step.new_slots.clear()
            step.slots = dict(context.slots)
            step.answers = dict(context.answers)
        else:
            prediction = self.classifier.classify(step.extraction.text)
            understanding = self.understand(prediction, step)
        writer.emit("intent.detected", {
            "intent": understanding.intent, "confidence": understanding.confidence,
            "alternatives": dict(understanding.alternatives),
        })  # fmt: skip
        self.fill_slots(step)
        await self.verify_by_knowledge(step)
        policy = self.policy
        confident = understanding.confidence >= policy.min_confidence
        topical = confident and understanding.intent in policy.topics
        signals = TurnSignals(
            intent=understanding.intent,
            confidence=understanding.confidence,
            topic=understanding.intent if topical else context.topic,
            low_confidence_before=context.low_confidence_streak,
            sentiment=sentiment(text),
        )
        handoff = escalate(signals, policy)
        if handoff is not None:
            return self.finish(step, self.handoff_reply(step, handoff), handoff)
        try:
            reply = await self._act(step, understanding.intent if confident else None)
        except Exception:  # a pack's template or tool result the flow could not use
            log.exception("agent turn failed; handing over", conversation_id=state.conversation_id,
                          intent=understanding.intent)  # fmt: skip
            return self._handed_over_after_failure(step)
        failed = [tool for tool, ok in step.outcomes if not ok]
        if failed:
            streak = context.tool_failure_streak
            for _, ok in step.outcomes:
                streak = 0 if ok else streak + 1
            signals = replace(signals, tool_failures=streak, failed_tool=failed[-1])
            handoff = escalate(signals, policy)
            if handoff is not None:
                reply = self.handoff_reply(step, handoff)
        return self.finish(step, reply, handoff)

    async def _act(self, step: Step, intent_name: str | None) -> str:
        if intent_name is not None and intent_name.startswith(KNOWLEDGE_PREFIX):
            return self._knowledge(step, intent_name.removeprefix(KNOWLEDGE_PREFIX))
        intent = self.business.intent(intent_name) if intent_name else None
        if intent is None:
            return step.say("not_understood")
        step.intent = intent_name
        reply = await FLOWS[intent.does](step, intent)
        step.intent = None
        return reply

    def _knowledge(self, step: Step, entry_id: str) -> str:
        """A knowledge answer, recorded as a use of the pack's entry with its source."""
        entry = next(k for k in self.business.pack.knowledge if k.id == entry_id)
        requested = request_action(step, KNOWLEDGE_TOOL, {"entry": entry.id})
        step.writer.emit("action.completed", {
            "action_id": requested.payload["action_id"],
            "result": {"entry": entry.id, "source": entry.source},
        }, caused_by=requested)  # fmt: skip
        answer = self.business.knowledge_answer(entry.id)
        return answer.render(step.voice, step.variables())

    def _payment_details(self, step: Step) -> Turn:
        """Card details are never taken in a conversation (what was said is redacted before
        it is stored): say so, and how to pay safely."""
        step.writer.emit("intent.detected", {"intent": PAYMENT_DETAILS, "confidence": 1.0,
                                             "alternatives": {}})  # fmt: skip
        step.new_slots.clear()
        return self.finish(step, step.say("payment_details"), None)

    def _handed_over_after_failure(self, step: Step) -> Turn:
        """A turn the agent could not finish goes to a person, never round and round."""
        route = self.policy.default_route
        handoff = Handoff(route.queue, "other", "the agent could not finish this turn",
                          route.skills)  # fmt: skip
        step.intent = None
        try:
            reply = self.handoff_reply(step, handoff)
        except Exception:  # the pack's handoff words fail too: say it plainly
            reply = "Sorry, something went wrong on our side. A colleague will take over."
        return self.finish(step, reply, handoff)

    def handoff_reply(self, step: Step, handoff: Handoff) -> str:
        queue = self.business.queue(handoff.queue)
        return step.say(
            "handoff",
            reason_code=handoff.reason_code,
            queue=handoff.queue,
            queue_name=(queue.name if queue and queue.name else handoff.queue),
        )

    # -- understanding -----------------------------------------------------------------------

    def understand(self, prediction: Prediction, step: Step) -> Understanding:
        topic = step.context.topic
        found = step.extraction.values
        topic_spec = self.business.intent(topic) if topic else None
        moving = topic_slots(topic_spec, self.policy.knowledge)
        relevant = topic is not None and bool(set(found) & moving)
        unsure = prediction.confidence < self.policy.min_confidence
        if topic is not None and relevant and (step.extraction.only_slots or unsure):
            return _continued(topic, prediction)
        if not unsure:
            return Understanding(prediction.intent, prediction.confidence, prediction.alternatives)
        if step.extraction.only_slots:
            for slot, spec in self.business.pack.slots.items():
                if slot in found and spec.implies is not None:
                    return _continued(spec.implies, prediction)
        return Understanding(prediction.intent, prediction.confidence, prediction.alternatives)

    def fill_slots(self, step: Step) -> None:
        for name in self.reader.order:
            if name in step.new_slots:
                step.writer.emit("slot.filled",
                                 {"name": name, "value": step.new_slots[name],
                                  "source": "customer"})  # fmt: skip

    async def verify_by_knowledge(self, step: Step) -> None:
        """A knowledge answer said this turn that matches the conversation's customer's own
        record proves this contact is them (a record's owner is checked by its flow)."""
        said = [k for k in step.extraction.values if k in self.policy.knowledge]
        owner = step.customer_id
        if not said or owner is None or anonymous(owner) or at_least(step.level, "knowledge"):
            return
        slot = await by_knowledge(step, owner)
        if slot is not None:
            await prove(step, owner, slot)

    async def _while_waiting(self, step: Step) -> Turn:
        """In line for a person, the customer's answers still count: a knowledge answer
        proves who they are (the owner of the record they asked about, when the
        conversation does not know yet), and the desk sees it at once."""
        self.fill_slots(step)
        before = step.level
        await self.verify_by_knowledge(step)
        said = any(k in self.policy.knowledge for k in step.extraction.values)
        if said and anonymous(step.customer_id):
            topic = self.business.intent(step.context.topic) if step.context.topic else None
            if isinstance(topic, LookupIntent):
                await find(step, topic)
        state = step.state
        queue = self.business.queue(state.queue or "")
        reply = step.say("waiting", queue=state.queue, queue_name=queue.name if queue else None,
                         verified=rank(step.level) > rank(before))  # fmt: skip
        return self.finish(step, reply, None)

    async def _answered_code(self, step: Step, code: str) -> Turn:
        """A one-time code: checked, and when right the turn answers what the conversation is
        about with the new proof (or, in line for a person, says it is confirmed)."""
        reply = await answer_code(step, code)
        if reply is not None:
            return self.finish(step, reply, None)
        topic = step.context.topic
        if step.state.status == AWAITING_HUMAN or topic is None:
            return self.finish(step, step.say("verified"), None)
        try:
            reply = await self._act(step, topic)
        except Exception:
            log.exception("agent turn failed; handing over",
                          conversation_id=step.state.conversation_id, intent=topic)  # fmt: skip
            return self._handed_over_after_failure(step)
        return self.finish(step, reply, None)

    def finish(self, step: Step, reply: str, handoff: Handoff | None) -> Turn:
        writer = step.writer
        rejections(step)
        if handoff is not None:
            writer.emit("handoff.requested", handoff.to_payload())
        writer.emit("message.sent", {"text": reply, "in_reply_to": writer.in_reply_to})
        return Turn(tuple(writer.events), handoff, reply)


def reply_leg(state: ConversationState) -> tuple[str | None, str]:
    """The leg (and its channel) a reply the customer did not prompt goes to: the latest
    live one, else the conversation's origin."""
    live = state.live_legs
    if live:
        leg_id, leg = max(live.items(), key=lambda item: str(item[1].get("started_at")))
        return leg_id, str(leg.get("channel") or state.origin or "chat")
    return None, str(state.origin or "chat")


def _continued(intent: str, prediction: Prediction) -> Understanding:
    others = {prediction.intent: prediction.confidence, **prediction.alternatives}
    alternatives = {i: c for i, c in others.items() if i not in {intent, UNKNOWN} and c > 0.0}
    return Understanding(intent, SLOT_ANSWER_CONFIDENCE, alternatives)

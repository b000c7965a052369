"""The model-backed agent: a language model reasons over the business's tools and knowledge.

It takes the same turns as the embedded agent (:mod:`threadline.agents.engine`) and
records the same events, with the model, the prompt's version and the policy in their
lineage. A turn:

1. keeps to the embedded agent what must be exact: card details, one-time codes, a
   customer waiting in line for a person, a key pressed at the phone's menu;
2. reads the customer's text as the embedded agent does (the intent, the slots, a
   knowledge answer that proves who they are), so the conversation's state stays the same
   whichever agent answers, and hands to a person at once when the customer asks for one;
3. checks the message for prompt injection and for a question asked over and over;
4. asks the model, with the conversation's context and the pack's tools, as often as the
   pack's ``steps`` allow; its tool calls run under the proof rules
   (:mod:`threadline.agents.model_tools`): a sensitive call waits for a person's approval;
5. checks the reply: no personal data the customer may not hear, no promise that an
   action is done when it is not.

Each guardrail's hit is a ``guardrail.triggered`` event. When the model cannot answer
(down, timing out past its retries, its circuit open, or refusing the request) the turn
goes to the embedded agent or a person, as the pack says, after a ``model.fell_back``
event; a turn whose tools already changed something goes to a person, so nothing runs
twice. Everything sent to the model is redacted first (:class:`RedactingProvider`).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Final

import orjson
import structlog

from threadline.agents.actions import request_action
from threadline.agents.context import ConversationContext
from threadline.agents.engine import ANSWERS_IN, KNOWLEDGE_TOOL, EmbeddedAgent
from threadline.agents.escalation import Handoff
from threadline.agents.flows import SEND_CHECKIN_CODE
from threadline.agents.guardrails import (
    false_promise,
    injection,
    personal_data,
    repeated,
    unbacked_offer,
)
from threadline.agents.intents import UNKNOWN
from threadline.agents.model_tools import GuardedTools
from threadline.agents.model_turn import Profile, Speech, system_prompt
from threadline.agents.proofs import code_in, rejections
from threadline.agents.protocol import LiveTurn, Turn
from threadline.agents.step import Step
from threadline.agents.turns import TurnWriter
from threadline.business import Business
from threadline.business.model import ModelAgent as ModelSpec
from threadline.core.conversation import AWAITING_HUMAN, ConversationState
from threadline.core.errors import ConfigurationError, ModelRefused, ModelUnavailable
from threadline.core.events import Event, Lineage
from threadline.core.model import (
    ChatMessage,
    Completion,
    ModelProvider,
    ModelRequest,
    ToolCall,
    ToolSpec,
)
from threadline.core.payloads import HandoffReason
from threadline.core.verification import anonymous, at_least
from threadline.engine.redaction import PAYMENT_MARK
from threadline.models.offer import offered
from threadline.models.redacting import RedactingProvider
from threadline.privacy import card_talk

log = structlog.get_logger("threadline.agents")

MODEL_AGENT_VERSION: Final = "0.1.0"
#: The agent's own tools, offered beside the pack's.
HANDOFF_TOOL: Final = "handoff_to_person"
KNOWLEDGE_LOOKUP: Final = "knowledge_answer"
TRANSFER_TOOL: Final = "transfer_to_agent"
CHECKIN_TOOL: Final = SEND_CHECKIN_CODE
#: Handovers between the pack's agents in one turn, at most.
MAX_TRANSFERS: Final = 2
#: Words of an answer past which a reply about none of the business's topics is off them.
TOPIC_WORDS: Final = 40
#: Earlier messages of the conversation the model reads.
HISTORY_MESSAGES: Final = 16

History = Callable[[ConversationState], Awaitable[Sequence[ChatMessage]]]


async def no_history(state: ConversationState) -> Sequence[ChatMessage]:
    return ()


class ModelAgent:
    """Answers with a model over the pack's tools (see the module)."""

    def __init__(
        self,
        embedded: EmbeddedAgent,
        provider: ModelProvider,
        spec: ModelSpec | None = None,
        *,
        history: History = no_history,
    ) -> None:
        business = embedded.business
        self.embedded = embedded
        self.business = business
        self.spec = spec or business.pack.model or ModelSpec()
        self._redacted: dict[str, Counter[str]] = {}
        self.provider = RedactingProvider(provider, on_redacted=self._note_redacted)
        self.history = history
        self.id = embedded.id
        self.actor = embedded.actor
        self.lineage = Lineage(self.id, MODEL_AGENT_VERSION, model=provider.id,
                               policy=embedded.policy.name, prompt=self.spec.prompt_version,
                               flags="model on")  # fmt: skip
        directory = {business.pack.customers.lookup, business.pack.customers.search} - {None}
        names = self.spec.tools
        if names is None:
            names = tuple(name for name in business.pack.tools if name not in directory)
        if set(names) & directory:
            raise ConfigurationError("a model may not search the customer directory")
        own = {HANDOFF_TOOL, KNOWLEDGE_LOOKUP, TRANSFER_TOOL, CHECKIN_TOOL}
        if own & set(business.pack.tools):
            raise ConfigurationError(f"{', '.join(sorted(own))} are the agent's own tools")
        self.allowed = frozenset(names)
        self.profiles = self._profiles(business, names)
        self.sensitive = frozenset(n for n, t in business.pack.tools.items() if t.sensitive)
        #: What the business's policies say, which a reply's offers must be backed by.
        self._policies = " ".join(
            k.answer if isinstance(k.answer, str) else f"{k.answer.chat} {k.answer.voice or ''}"
            for k in business.pack.knowledge
        )
        self.approver = business.pack.escalation.default_route.queue

    # -- the protocol -------------------------------------------------------------------------

    def may_process(self, state: ConversationState) -> bool:
        return self.embedded.may_process(state)

    async def hand_over(
        self, state: ConversationState, channel: str, now: datetime, *, leg_id: str | None,
        anchor: str,
    ) -> Turn:  # fmt: skip
        return await self.embedded.hand_over(state, channel, now, leg_id=leg_id, anchor=anchor)

    async def welcome_back(
        self, state: ConversationState, channel: str, now: datetime, *, leg_id: str, anchor: str
    ) -> Turn:
        return await self.embedded.welcome_back(state, channel, now, leg_id=leg_id, anchor=anchor)

    async def settle(self, state: ConversationState, decision: Event, now: datetime) -> Turn:
        return await self.embedded.settle(state, decision, now)

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
        embedded = self.embedded
        if state.status not in ANSWERS_IN or not self.may_process(state):
            return Turn(())
        if self._embedded_turn(state, text, channel):
            return await embedded.take_turn(state, text, channel, now, leg_id=leg_id,
                                            in_reply_to=in_reply_to)  # fmt: skip
        anchor = in_reply_to or f"seq-{state.seq}"
        writer = embedded.writer(state, channel, now, anchor, leg_id, in_reply_to)
        off = self.flagged_off(state, channel)
        if off is not None:  # the flags keep the model off this turn: said in its lineage
            writer.lineage = replace(embedded.lineage, flags=f"model off: {off}")
            return await embedded.answer(state, text, channel, now, writer, keep_lineage=True)
        writer.lineage = self.lineage
        speech = Speech(live) if live is not None and channel == "voice" else None
        try:
            turn = await self._turn(state, text, channel, now, writer, speech)
        except (ModelUnavailable, ModelRefused) as exc:
            turn = await self._fall_back(state, text, channel, now, writer, exc, speech)
        finally:
            self._redacted.pop(anchor, None)
        if speech is not None and speech.flushed:  # the rest of what the turn recorded early
            return Turn(turn.events[speech.flushed :], turn.handoff, turn.reply)
        return turn

    # -- a turn -------------------------------------------------------------------------------

    def flagged_off(self, state: ConversationState, channel: str) -> str | None:
        """Why the feature flags keep the model off this conversation's turn (None: on).
        The share is sticky: a conversation's place in it is a hash of its id."""
        spec = self.spec
        if channel not in spec.channels:
            return f"channel {channel}"
        if spec.share < 1.0:
            bucket = int(hashlib.sha256(state.conversation_id.encode()).hexdigest()[:8], 16)
            if bucket / 0x1_0000_0000 >= spec.share:
                return f"outside the {spec.share:.0%} share"
        if spec.queues is not None:
            context = ConversationContext.of(state, self.embedded.policy)
            queue = self.embedded.policy.route(context.topic).queue
            if queue not in spec.queues:
                return f"queue {queue}"
        return None

    def _embedded_turn(self, state: ConversationState, text: str, channel: str) -> bool:
        """Whether the embedded agent takes this turn: what must be exact stays its own."""
        business = self.business
        if state.status == AWAITING_HUMAN or PAYMENT_MARK.search(text) or card_talk(text):
            return True
        code = code_in(text, business.pack.verification.codes.length)
        if code is not None and state.challenge is not None and self.embedded.codes is not None:
            return True
        return channel == "voice" and text.strip() in business.pack.voice.keypad

    async def _turn(
        self, state: ConversationState, text: str, channel: str, now: datetime,
        writer: TurnWriter, speech: Speech | None,
    ) -> Turn:  # fmt: skip
        embedded = self.embedded
        guards = self.spec.guardrails
        context = ConversationContext.of(state, embedded.policy)
        step = embedded.step(state, writer, context, text, now, channel)
        # Read as the embedded agent reads it (a bare answer continues the topic), so the
        # conversation's topic and streaks are the same whichever agent answers.
        prediction = embedded.understand(embedded.classifier.classify(step.extraction.text), step)
        writer.emit("intent.detected", {"intent": prediction.intent,
                                        "confidence": prediction.confidence,
                                        "alternatives": dict(prediction.alternatives)})  # fmt: skip
        embedded.fill_slots(step)
        await embedded.verify_by_knowledge(step)
        policy = embedded.policy
        topical = prediction.confidence >= policy.min_confidence and (
            prediction.intent in policy.topics
        )
        topic = prediction.intent if topical else context.topic

        def route(code: HandoffReason, detail: str, queue: str = "") -> Handoff:
            return self._route(code, detail, queue, topic)

        asked_for_person = self._asks_for_person(prediction.intent, prediction.confidence, topic)
        if asked_for_person is not None:
            return self._handed_over(step, asked_for_person)
        history = await self.history(state)
        said = [m.content for m in history if m.role == "user"]
        if repeated(said, text, guards.repeated):
            self._guardrail_on(step, "loop", "message", "escalated", "the same message again")
            return self._handed_over(step, route("other", "the customer repeats"))
        if state.messages_out >= guards.turns * 2:
            self._guardrail_on(step, "autonomy", "message", "escalated", "the turn cap")
            return self._handed_over(step, route("other", "many turns without a person"))
        hit = injection(text)
        if hit is not None and guards.prompt_injection != "note":
            outcome = "refused" if guards.prompt_injection == "refuse" else "escalated"
            self._guardrail_on(step, "prompt_injection", "message", outcome, hit)
            if outcome == "escalated":
                return self._handed_over(step, route("other", "an injected instruction"))
            return embedded.finish(step, step.say("guardrail_refused", business=self.business.name),
                                   None)  # fmt: skip
        if hit is not None:
            self._guardrail_on(step, "prompt_injection", "message", "noted", hit)
        profile = self._profile_of(state)
        writer.lineage = profile.lineage
        # A knowledge answer (the postcode) proves who the customer is, here: the model never
        # needs it, so it never gets it.
        withheld = self._answers(step)
        messages = [await self._system(step, profile),
                    *(replace(m, content=withheld(m.content)) for m in history[-HISTORY_MESSAGES:]),
                    ChatMessage("user", withheld(text))]  # fmt: skip
        tools = GuardedTools(step, profile.allowed, self.approver)
        reply: str | None = None
        handoff: Handoff | None = None
        transfers = 0
        for _ in range(self.spec.steps + MAX_TRANSFERS):
            request = ModelRequest(tuple(messages), profile.tools, request_id=writer.anchor)
            if speech is not None:
                completion = await self._spoken(step, request, speech, tools)
                if speech.live.interrupted:  # the caller spoke over it: say no more
                    self._record_redactions(step)
                    return Turn(tuple(writer.events), None, " ".join(speech.said))
            else:
                completion = await self.provider.complete(request)
            if not completion.tool_calls:
                reply = completion.text.strip()
                break
            messages.append(ChatMessage("assistant", completion.text,
                                        tool_calls=completion.tool_calls))  # fmt: skip
            to: Profile | None = None
            for call in completion.tool_calls:
                if call.name == TRANSFER_TOOL and call.problem is None and to is None:
                    to = self._transfer(step, profile, call, transfers)
                    told: Mapping[str, Any] = (
                        {"status": f"handed to the {to.name} agent"} if to is not None
                        else {"error": "no such agent, or too many handovers: answer yourself"}
                    )  # fmt: skip
                else:
                    told, handoff = await self._call(step, tools, call, topic)
                messages.append(ChatMessage("tool", _json(told), tool_call_id=call.id))
            if handoff is not None:
                break
            if to is not None:  # the next agent goes on with everything said so far
                transfers += 1
                profile = to
                writer.lineage = profile.lineage
                tools.allowed = profile.allowed
                messages[0] = await self._system(step, profile)
        self._record_redactions(step)
        if handoff is not None:
            return self._handed_over(step, handoff)
        failures = _failures_in_a_row(context.tool_failure_streak, step.outcomes)
        if failures >= embedded.policy.tool_failures:
            self._guardrail_on(step, "loop", "tool_result", "escalated", "a tool failing again")
            failing = route("tool_failure", "the business's system keeps failing")
            return self._handed_over(step, failing)
        if not reply:
            self._guardrail_on(step, "autonomy", "reply", "escalated", "no answer in the steps")
            return self._handed_over(step, route("other", "the model gave no answer"))
        if self._below_the_floor(context, prediction.confidence, tools) and not speech:
            self._guardrail_on(step, "confidence", "message", "escalated",
                               "unclear turns in a row, nothing done")  # fmt: skip
            return self._handed_over(step, route("low_confidence", "unclear turns"))
        if speech is not None and speech.said:  # spoken as it came: what is left to say
            rest = speech.pending.strip()
            checked = self._checked(step, rest, tools) if rest else None
            rejections(step)
            if checked:
                writer.emit("message.sent", {"text": checked, "in_reply_to": writer.in_reply_to})
            return Turn(tuple(writer.events), None, " ".join([*speech.said, checked or ""]).strip())
        reply = self._checked(step, reply, tools)
        if reply is None:
            return self._handed_over(step, route("other", "a reply the guardrails stopped"))
        if self._off_topic(prediction.intent, prediction.confidence, reply, tools):
            self._guardrail_on(step, "topic", "reply", "rephrased", "an answer off the topics")
            reply = step.say("guardrail_refused", business=self.business.name)
        return embedded.finish(step, reply, None)

    def _off_topic(self, intent: str, confidence: float, reply: str, tools: GuardedTools) -> bool:
        """The allowed topics: a message about none of the pack's intents or policies that the
        model answers at length without any tool (a poem, an essay, homework)."""
        if tools.ran or len(reply.split()) <= TOPIC_WORDS:
            return False
        return intent == UNKNOWN or confidence < self.embedded.policy.min_confidence

    async def _spoken(
        self, step: Step, request: ModelRequest, speech: Speech, tools: GuardedTools
    ) -> Completion:
        """The model's answer, streamed: each sentence recorded (so spoken) as soon as it is
        whole, the events before it first. A barge-in stops the stream."""
        writer = step.writer
        speech.pending = ""
        completion: Completion | None = None
        stream = self.provider.stream(request)
        try:
            async for piece in stream:
                if isinstance(piece, Completion):
                    completion = piece
                    break
                speech.pending += piece.text
                for sentence in speech.sentences():
                    said = self._checked(step, sentence, tools)
                    if said is None:
                        continue
                    writer.emit("message.sent", {"text": said, "in_reply_to": writer.in_reply_to})
                    await speech.flush(writer)
                    speech.said.append(said)
                if speech.live.interrupted:
                    break
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        if completion is None:  # interrupted
            return Completion(speech.pending)
        return completion

    def _answers(self, step: Step) -> Callable[[str], str]:
        """What takes the conversation's knowledge answers out of a text, as ``[postcode]``."""
        knowledge = self.business.pack.verification.knowledge
        said = {name: value for name, value in step.slots.items() if name in knowledge and value}
        if not said:
            return _same
        pattern = re.compile("|".join(rf"(?<![\w]){re.escape(v)}(?![\w])" for v in said.values()))
        names = {v: n for n, v in said.items()}
        return lambda text: pattern.sub(lambda m: f"[{names.get(m.group(0), 'answer')}]", text)

    def _below_the_floor(
        self, context: ConversationContext, confidence: float, tools: GuardedTools
    ) -> bool:
        """The confidence floor: the customer's messages have been unclear for as many turns
        as the pack's escalation allows, and the model did nothing with this one either (no
        tool that answered): a person should take it rather than guess on."""
        policy = self.embedded.policy
        streak = context.low_confidence_streak + (confidence < policy.min_confidence)
        done = any(r.completed or r.approval for r in tools.ran)
        return streak >= policy.low_confidence_turns and not done

    async def _call(
        self, step: Step, tools: GuardedTools, call: ToolCall, topic: str | None
    ) -> tuple[Mapping[str, Any], Handoff | None]:
        """Run one call of the model's; what it is told, and the handoff it asked for."""
        if call.name == HANDOFF_TOOL and call.problem is None:
            reason = str(call.arguments.get("reason") or "customer_request")
            code: HandoffReason = (
                "sensitive_intent" if reason == "sensitive_intent"
                else "customer_request" if reason == "customer_request" else "other"
            )  # fmt: skip
            queue = str(call.arguments.get("queue") or "")
            handoff = self._route(code, str(call.arguments.get("summary") or ""), queue, topic)
            return {"status": "handed to a person"}, handoff
        if call.name == KNOWLEDGE_LOOKUP and call.problem is None:
            return self._knowledge(step, str(call.arguments.get("entry") or "")), None
        if call.name == CHECKIN_TOOL and call.problem is None:
            return self._checkin(step, str(call.arguments.get("store") or "")), None
        ran = await tools.run(call)
        if ran.withheld is not None:
            guards = self.spec.guardrails
            outcome = "withheld" if guards.tool_results == "withhold" else "escalated"
            self._guardrail_on(step, "prompt_injection", "tool_result", outcome, ran.withheld)
            if outcome == "escalated":
                return ran.told, self._route("other", "a tool result held instructions", "",
                                             topic)  # fmt: skip
        return ran.told, None

    def _checkin(self, step: Step, store: str) -> Mapping[str, Any]:
        """A check-in code for ``store``, sent to the chat by the service after the turn, as
        the embedded agent's visit flow asks for one; on a call, the kiosk instead."""
        place = self.business.location(store)
        if place is None:
            return {"error": "no such store: ask which one"}
        if step.voice:
            return {"status": "a call cannot show a code: the store's kiosk checks the caller"
                    " in by their phone number"}  # fmt: skip
        request_action(step, SEND_CHECKIN_CODE, {"store": place.id})
        return {"status": f"a check-in code for {place.name} is on its way to the chat"}

    def _knowledge(self, step: Step, entry_id: str) -> Mapping[str, Any]:
        """A knowledge entry for the model to answer from, recorded with its source."""
        entry = next((k for k in self.business.pack.knowledge if k.id == entry_id), None)
        if entry is None:
            return {"error": f"there is no entry {entry_id!r}: say you do not know"}
        writer = step.writer
        requested = writer.emit("action.requested", {
            "action_id": writer.next_action_id(), "tool": KNOWLEDGE_TOOL,
            "arguments": {"entry": entry.id},
        })  # fmt: skip
        writer.emit("action.completed", {"action_id": requested.payload["action_id"],
                                         "result": {"entry": entry.id, "source": entry.source}},
                    caused_by=requested)  # fmt: skip
        answer = self.business.knowledge_answer(entry.id).render(step.voice, step.variables())
        return {"entry": entry.id, "answer": answer, "source": entry.source}

    def _checked(self, step: Step, reply: str, tools: GuardedTools) -> str | None:
        """``reply`` as the customer may read it; None when a guardrail escalates."""
        guards = self.spec.guardrails
        needed = self.business.pack.verification.history
        checked = personal_data(reply, contact_allowed=at_least(step.level, needed))
        if checked.removed:
            detail = ", ".join(sorted(set(checked.removed)))
            if guards.personal_data == "escalate":
                self._guardrail_on(step, "personal_data", "reply", "escalated", detail)
                return None
            self._guardrail_on(step, "personal_data", "reply", "rephrased", detail)
            reply = checked.text
        completed = {r.tool for r in tools.ran if r.completed}
        if false_promise(reply, completed, self.sensitive):
            if guards.promise == "escalate":
                self._guardrail_on(step, "promise", "reply", "escalated", "an action not done")
                return None
            self._guardrail_on(step, "promise", "reply", "rephrased", "an action not done")
            waiting = [r for r in tools.ran if r.approval]
            reply = (step.say("approval_waiting", what="it") if waiting
                     else step.say("needs_person"))  # fmt: skip
        offer = unbacked_offer(reply, self._policies + _json({"told": [r.told for r in tools.ran]}))
        if offer is not None:
            if guards.promise == "escalate":
                self._guardrail_on(step, "promise", "reply", "escalated", f"offers {offer}")
                return None
            self._guardrail_on(step, "promise", "reply", "rephrased", f"offers {offer}")
            reply = step.say("needs_person")
        return reply

    # -- falling back -------------------------------------------------------------------------

    async def _fall_back(
        self, state: ConversationState, text: str, channel: str, now: datetime,
        writer: TurnWriter, exc: ModelUnavailable | ModelRefused, speech: Speech | None,
    ) -> Turn:  # fmt: skip
        """The turn the model could not take, taken by the embedded agent or a person."""
        changed = any(e.type in {"action.completed", "approval.requested"} for e in writer.events)
        changed = changed or (speech is not None and speech.flushed > 0)
        to = "person" if changed or self.spec.fallback == "person" else "embedded"
        reason = "refused" if isinstance(exc, ModelRefused) else (
            "circuit_open" if "circuit" in str(exc) else "unavailable")  # fmt: skip
        attempts = exc.attempts if isinstance(exc, ModelUnavailable) else 1
        log.warning("model fell back", conversation_id=state.conversation_id, to=to,
                    reason=reason, attempts=attempts)  # fmt: skip
        if not changed:  # nothing happened that the log must keep: start the turn afresh
            writer = self.embedded.writer(state, channel, now, writer.anchor, writer.leg_id,
                                          writer.in_reply_to)  # fmt: skip
            writer.lineage = self.lineage
        writer.emit("model.fell_back", {
            "model": self.provider.id, "to": to, "reason": reason,
            "detail": type(exc).__name__, "attempts": attempts,
        })  # fmt: skip
        if to == "embedded":
            return await self.embedded.answer(state, text, channel, now, writer)
        context = ConversationContext.of(state, self.embedded.policy)
        step = self.embedded.step(state, writer, context, "" if changed else text, now, channel)
        route = self._route("other", "the model is unavailable", "", context.topic)
        return self._handed_over(step, route)

    # -- pieces -------------------------------------------------------------------------------

    def _asks_for_person(self, intent: str, confidence: float, topic: str | None) -> Handoff | None:
        """A clear request for a person is met at once, whatever the model would say."""
        policy = self.embedded.policy
        spec = self.business.intent(intent)
        if spec is None or spec.does != "handoff" or confidence < policy.min_confidence:
            return None
        if getattr(spec, "reason", None) != "customer_request":
            return None
        return self._route("customer_request", "the customer asked for a person", "", topic)

    def _route(
        self, code: HandoffReason, detail: str, queue: str = "", topic: str | None = None
    ) -> Handoff:
        """A handoff to ``queue`` when the model named one, else to the topic's queue, as the
        embedded agent routes (the pack's default without a topic)."""
        policy = self.embedded.policy
        if queue and self.business.queue(queue) is not None:
            chosen = next((q for q in self.business.pack.queues if q.id == queue), None)
            skills = tuple(chosen.skills[:1]) if chosen else ()
            return Handoff(queue, code, detail, skills)
        route = policy.route(topic)
        return Handoff(route.queue, code, detail, route.skills)

    def _handed_over(self, step: Step, handoff: Handoff) -> Turn:
        embedded = self.embedded
        return embedded.finish(step, embedded.handoff_reply(step, handoff), handoff)

    def _guardrail_on(self, step: Step, guardrail: str, where: str, outcome: str,
                      detail: str) -> None:  # fmt: skip
        step.writer.emit("guardrail.triggered", {
            "guardrail": guardrail, "where": where, "outcome": outcome, "detail": detail[:500],
        })  # fmt: skip

    def _note_redacted(self, request: ModelRequest, counts: Mapping[str, int]) -> None:
        self._redacted.setdefault(request.request_id, Counter()).update(counts)

    def _record_redactions(self, step: Step) -> None:
        taken = self._redacted.pop(step.writer.anchor, None)
        if taken:
            detail = ", ".join(f"{kind} {n}" for kind, n in sorted(taken.items()))
            self._guardrail_on(step, "personal_data", "prompt", "redacted", detail)

    async def _system(self, step: Step, profile: Profile) -> ChatMessage:
        """The system message; it names the customer only once they proved who they are."""
        first_name = None
        needed = self.business.pack.verification.history
        if step.customer_id and not anonymous(step.customer_id) and at_least(step.level, needed):
            record = await step.systems.customers.get(step.customer_id)
            first_name = record.first_name if record is not None else None
        prompt = system_prompt(self.business, self.spec, step, profile, first_name)
        return ChatMessage("system", prompt)

    # -- several agents -----------------------------------------------------------------------

    def _profiles(self, business: Business, names: Sequence[str]) -> dict[str | None, Profile]:
        """The pack's agents (or the one agent it has), each with its tools and lineage."""
        spec = self.spec
        own = self._own_tools(business)
        if not spec.agents:
            return {None: Profile(None, "", frozenset(names),
                                   (*offered(business, names), *own), self.lineage)}  # fmt: skip
        profiles: dict[str | None, Profile] = {}
        for name, specialist in spec.agents.items():
            others = {n: a.description for n, a in spec.agents.items() if n != name}
            transfer = ToolSpec(TRANSFER_TOOL, "hand the conversation to another agent of ours,"
                                " who goes on with everything said so far: "
                                + "; ".join(f"{n}: {d}" for n, d in others.items()),
                                {"type": "object", "required": ["agent", "summary"],
                                 "properties": {"agent": {"enum": sorted(others)},
                                                "summary": {"type": "string",
                                                            "maxLength": 1000}}})  # fmt: skip
            tools = (*offered(business, specialist.tools), *own, transfer)
            lineage = replace(self.lineage, prompt=f"{spec.prompt_version}/{name}")
            profiles[name] = Profile(name, specialist.instructions,
                                      frozenset(specialist.tools), tools, lineage)  # fmt: skip
        return profiles

    def _profile_of(self, state: ConversationState) -> Profile:
        """The agent holding the conversation: the last one handed it, else the first."""
        if None in self.profiles:
            return self.profiles[None]
        return self.profiles.get(state.bot_agent) or self.profiles[self.spec.start]

    def _transfer(self, step: Step, profile: Profile, call: ToolCall,
                  transfers: int) -> Profile | None:  # fmt: skip
        """Record the handover ``call`` asks for; the agent taking over (None: refused)."""
        to = self.profiles.get(str(call.arguments.get("agent") or ""))
        if to is None or to is profile or transfers >= MAX_TRANSFERS:
            return None
        step.writer.emit("bot.transferred", {
            "from_agent": str(profile.name), "to_agent": str(to.name),
            "summary": str(call.arguments.get("summary") or "")[:1000],
        })  # fmt: skip
        return to

    def _own_tools(self, business: Business) -> tuple[ToolSpec, ...]:
        queues = [q.id for q in business.pack.queues]
        entries = [k.id for k in business.pack.knowledge]
        own = [ToolSpec(HANDOFF_TOOL, "hand the conversation to a person, with a summary",
                        {"type": "object", "required": ["reason", "summary"], "properties": {
                            "reason": {"enum": ["customer_request", "sensitive_intent", "other"]},
                            "queue": {"enum": queues},
                            "summary": {"type": "string", "maxLength": 500}}})]  # fmt: skip
        if business.locations:
            own.append(ToolSpec(CHECKIN_TOOL, "send the customer, on chat, a check-in code for"
                                " the store they will come to", {"type": "object",
                                "required": ["store"], "properties": {"store": {
                                    "enum": [p.id for p in business.locations]}}}))  # fmt: skip
        if entries:
            own.append(ToolSpec(KNOWLEDGE_LOOKUP, "the business's answer to a policy or how-to"
                                " question, with its source", {"type": "object",
                                "required": ["entry"],
                                "properties": {"entry": {"enum": entries}}}))  # fmt: skip
        return tuple(own)


def _same(text: str) -> str:
    return text


def _failures_in_a_row(before: int, outcomes: Sequence[tuple[str, bool]]) -> int:
    streak = before
    for _, ok in outcomes:
        streak = 0 if ok else streak + 1
    return streak


def _json(value: Mapping[str, Any]) -> str:
    return orjson.dumps(dict(value), default=str).decode()

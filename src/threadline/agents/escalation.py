"""When the bot hands a conversation to a person, to which queue, and why.

:class:`EscalationPolicy` is a frozen set of thresholds and routes;
:func:`escalate` is a pure function of the policy and one turn's
:class:`TurnSignals`. The rules are small functions tried in order; the first
that fires decides the handoff:

1. ``customer_request`` — the customer asks for a person;
2. ``sensitive_intent`` — cancelling, refunds, payment disputes, complaints;
3. ``negative_sentiment`` — the customer is clearly unhappy;
4. ``tool_failure`` — tool calls failed this many times in a row;
5. ``low_confidence`` — this many turns in a row the bot was unsure.

A handoff goes to the route of the intent when it has one, else to the route
of what the conversation is about (its topic), else to the pack's default
route. Every threshold, intent and route comes from the business pack.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from threadline.business import Business
from threadline.business.behaviour import HandoffIntent
from threadline.core.payloads import HandoffReason


@dataclass(frozen=True, slots=True)
class Route:
    """A queue and the skills a conversation routed there needs."""

    queue: str
    skills: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """Thresholds and routes of the escalation rules."""

    name: str = "escalation-v1"
    #: A turn whose intent confidence is below this is a low-confidence turn.
    min_confidence: float = 0.5
    #: Hand off after this many low-confidence turns in a row.
    low_confidence_turns: int = 2
    #: Hand off after this many failed tool calls in a row.
    tool_failures: int = 2
    #: Hand off when the customer's sentiment is at or below this.
    negative_sentiment: float = -0.6
    human_intents: frozenset[str] = frozenset()
    sensitive_intents: frozenset[str] = frozenset()
    #: Intents that say what the conversation is about, for routing later handoffs.
    topics: frozenset[str] = frozenset()
    routes: Mapping[str, Route] = field(default_factory=dict)
    default_route: Route = Route("default", ())
    #: Slots that prove who is asking (a postcode), and the tools whose failures count.
    knowledge: frozenset[str] = frozenset()
    tools: frozenset[str] = frozenset()

    @classmethod
    def of(cls, business: Business) -> EscalationPolicy:
        """The policy a business pack describes."""
        pack = business.pack
        rules = pack.escalation
        intents = pack.intents
        return cls(
            name=rules.policy,
            min_confidence=rules.min_confidence,
            low_confidence_turns=rules.low_confidence_turns,
            tool_failures=rules.tool_failures,
            negative_sentiment=rules.negative_sentiment,
            human_intents=frozenset(n for n, i in intents.items() if isinstance(i, HandoffIntent)
                                    and i.reason == "customer_request"),
            sensitive_intents=frozenset(n for n, i in intents.items()
                                        if isinstance(i, HandoffIntent)
                                        and i.reason == "sensitive_intent"),
            topics=frozenset(n for n, i in intents.items() if i.topic),
            routes=MappingProxyType({n: Route(i.route.queue, i.route.skills)
                                     for n, i in intents.items() if i.route is not None}),
            default_route=Route(rules.default_route.queue, rules.default_route.skills),
            knowledge=frozenset(pack.verification.knowledge),
            tools=frozenset(pack.tools),
        )  # fmt: skip

    def route(self, *intents: str | None) -> Route:
        """The route of the first of ``intents`` that has one, else the default."""
        for intent in intents:
            if intent is not None and intent in self.routes:
                return self.routes[intent]
        return self.default_route


@dataclass(frozen=True, slots=True)
class TurnSignals:
    """What the policy looks at in one turn."""

    intent: str
    confidence: float
    #: What the conversation is about: its last confident topic intent, if any.
    topic: str | None = None
    #: Low-confidence turns immediately before this one.
    low_confidence_before: int = 0
    #: Failed tool calls in a row, this turn's included, and the last tool that failed.
    tool_failures: int = 0
    failed_tool: str | None = None
    sentiment: float = 0.0


@dataclass(frozen=True, slots=True)
class Handoff:
    """The decision to hand off: the ``handoff.requested`` v2 payload."""

    queue: str
    reason_code: HandoffReason
    reason_detail: str
    skills: tuple[str, ...]

    def to_payload(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "reason_code": self.reason_code,
            "reason_detail": self.reason_detail,
            "skills": list(self.skills),
        }


Rule = Callable[[TurnSignals, EscalationPolicy], Handoff | None]


def _handoff(route: Route, code: HandoffReason, detail: str) -> Handoff:
    return Handoff(route.queue, code, detail, route.skills)


def _confident(s: TurnSignals, p: EscalationPolicy) -> bool:
    return s.confidence >= p.min_confidence


def customer_request(s: TurnSignals, p: EscalationPolicy) -> Handoff | None:
    if s.intent in p.human_intents and _confident(s, p):
        return _handoff(p.route(s.topic), "customer_request", "customer asked for a person")
    return None


def sensitive_intent(s: TurnSignals, p: EscalationPolicy) -> Handoff | None:
    if s.intent in p.sensitive_intents and _confident(s, p):
        detail = f"{s.intent.replace('_', ' ')} needs a person (confidence {s.confidence:.2f})"
        return _handoff(p.route(s.intent, s.topic), "sensitive_intent", detail)
    return None


def negative_sentiment(s: TurnSignals, p: EscalationPolicy) -> Handoff | None:
    if s.sentiment <= p.negative_sentiment:
        detail = f"customer sentiment {s.sentiment:.2f}"
        return _handoff(p.route(s.topic), "negative_sentiment", detail)
    return None


def tool_failure(s: TurnSignals, p: EscalationPolicy) -> Handoff | None:
    if s.tool_failures >= p.tool_failures:
        detail = f"{s.failed_tool or 'a tool'} failed {s.tool_failures} times in a row"
        return _handoff(p.route(s.topic), "tool_failure", detail)
    return None


def low_confidence(s: TurnSignals, p: EscalationPolicy) -> Handoff | None:
    if not _confident(s, p) and s.low_confidence_before + 1 >= p.low_confidence_turns:
        turns = s.low_confidence_before + 1
        detail = f"{turns} turns in a row below confidence {p.min_confidence:.2f}"
        return _handoff(p.route(s.topic), "low_confidence", detail)
    return None


RULES: Final[tuple[Rule, ...]] = (
    customer_request,
    sensitive_intent,
    negative_sentiment,
    tool_failure,
    low_confidence,
)


def escalate(signals: TurnSignals, policy: EscalationPolicy) -> Handoff | None:
    """The handoff the first firing rule decides, or None to let the bot carry on."""
    for rule in RULES:
        handoff = rule(signals, policy)
        if handoff is not None:
            return handoff
    return None

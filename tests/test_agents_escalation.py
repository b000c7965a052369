"""The escalation policy of the Northwind pack: each rule, its queue, and the signals read
from a conversation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from threadline.agents.context import (
    ConversationContext,
    low_confidence_streak,
    tool_failure_streak,
    topic_of,
)
from threadline.agents.escalation import EscalationPolicy, Handoff, Route, TurnSignals, escalate
from threadline.agents.sentiment import sentiment
from threadline.core.conversation import ConversationState, decide, initial
from threadline.core.events import Actor, Event, EventCodec
from threadline.core.payloads import HandoffRequested

T0 = datetime(2025, 3, 4, 17, 0, tzinfo=UTC)
BOT = Actor("bot", "northwind-bot")


@pytest.fixture(scope="module")
def policy(northwind) -> EscalationPolicy:
    return EscalationPolicy.of(northwind)


def signals(intent: str = "order_status", confidence: float = 0.9, **kw: Any) -> TurnSignals:
    return TurnSignals(intent=intent, confidence=confidence, **kw)


def test_the_policy_is_the_one_the_pack_describes(policy: EscalationPolicy) -> None:
    assert (policy.name, policy.min_confidence, policy.low_confidence_turns) == (
        "escalation-v1", 0.5, 2)  # fmt: skip
    assert (policy.tool_failures, policy.negative_sentiment) == (2, -0.6)
    assert policy.human_intents == {"human"}
    assert policy.sensitive_intents == {"cancel_order", "refund", "payment_dispute", "complaint"}
    assert policy.topics == {"order_status", "book_appointment", "store_hours", "cancel_order",
                             "refund", "payment_dispute"}  # fmt: skip
    assert policy.routes["book_appointment"] == Route("repairs", ("appointments",))
    assert policy.default_route == Route("orders", ("orders",))
    assert policy.knowledge == {"postcode"}


def test_a_confident_ordinary_turn_stays_with_the_bot(policy: EscalationPolicy) -> None:
    assert escalate(signals(), policy) is None


def test_asking_for_a_person_hands_off_to_the_topics_queue(policy: EscalationPolicy) -> None:
    handoff = escalate(signals("human", 0.97, topic="order_status"), policy)
    assert handoff == Handoff(
        "orders", "customer_request", "customer asked for a person", ("orders",)
    )


def test_asking_for_a_person_with_no_topic_goes_to_the_default_queue(
    policy: EscalationPolicy,
) -> None:
    handoff = escalate(signals("human", 0.97), policy)
    assert handoff is not None and handoff.queue == policy.default_route.queue == "orders"


def test_cancelling_an_order_goes_to_billing_as_a_sensitive_intent(
    policy: EscalationPolicy,
) -> None:
    handoff = escalate(signals("cancel_order", 0.93, topic="order_status"), policy)
    assert handoff is not None
    assert (handoff.queue, handoff.reason_code, handoff.skills) == (
        "billing",
        "sensitive_intent",
        ("payments",),
    )


def test_a_refund_goes_to_billing_with_the_refunds_skill(policy: EscalationPolicy) -> None:
    handoff = escalate(signals("refund", 0.9), policy)
    assert handoff is not None and (handoff.queue, handoff.skills) == ("billing", ("refunds",))


def test_a_payment_dispute_goes_to_billing(policy: EscalationPolicy) -> None:
    handoff = escalate(signals("payment_dispute", 0.9), policy)
    assert handoff is not None and (handoff.queue, handoff.reason_code) == (
        "billing",
        "sensitive_intent",
    )


def test_a_complaint_goes_to_the_queue_of_what_it_is_about(policy: EscalationPolicy) -> None:
    about_repair = escalate(signals("complaint", 0.9, topic="book_appointment"), policy)
    about_nothing = escalate(signals("complaint", 0.9), policy)
    assert about_repair is not None and about_nothing is not None
    assert (about_repair.queue, about_repair.reason_code) == ("repairs", "sensitive_intent")
    assert about_nothing.queue == "orders"


def test_an_unsure_sensitive_intent_is_not_acted_on(policy: EscalationPolicy) -> None:
    assert escalate(signals("refund", 0.3), policy) is None


def test_one_low_confidence_turn_stays_with_the_bot(policy: EscalationPolicy) -> None:
    assert escalate(signals("unknown", 0.1), policy) is None


def test_the_second_low_confidence_turn_in_a_row_hands_off(policy: EscalationPolicy) -> None:
    handoff = escalate(signals("unknown", 0.1, low_confidence_before=1), policy)
    assert handoff is not None and handoff.reason_code == "low_confidence"


def test_a_second_tool_failure_in_a_row_hands_off(policy: EscalationPolicy) -> None:
    once = escalate(signals(tool_failures=1, failed_tool="lookup_order"), policy)
    twice = escalate(
        signals(tool_failures=2, failed_tool="lookup_order", topic="order_status"), policy
    )
    assert once is None
    assert twice is not None
    assert (twice.queue, twice.reason_code) == ("orders", "tool_failure")
    assert "lookup_order failed 2 times" in twice.reason_detail


def test_strongly_negative_sentiment_hands_off(policy: EscalationPolicy) -> None:
    handoff = escalate(signals(sentiment=sentiment("this is absolutely terrible!!")), policy)
    assert handoff is not None and handoff.reason_code == "negative_sentiment"


def test_a_customer_request_outranks_the_other_rules(policy: EscalationPolicy) -> None:
    handoff = escalate(signals("human", 0.9, sentiment=-0.9, tool_failures=3), policy)
    assert handoff is not None and handoff.reason_code == "customer_request"


def test_thresholds_are_configurable() -> None:
    patient = EscalationPolicy(low_confidence_turns=3, tool_failures=5, negative_sentiment=-0.99)
    assert escalate(signals("unknown", 0.1, low_confidence_before=1), patient) is None
    assert escalate(signals(tool_failures=2), patient) is None
    assert escalate(signals(sentiment=-0.9), patient) is None


def test_a_handoff_is_a_valid_handoff_requested_v2_payload(policy: EscalationPolicy) -> None:
    handoff = escalate(signals("refund", 0.9), policy)
    assert handoff is not None
    HandoffRequested.model_validate(handoff.to_payload())


# -- sentiment -----------------------------------------------------------------------------


def test_sentiment_is_negative_for_anger_and_positive_for_thanks() -> None:
    assert sentiment("this is unacceptable") <= -0.6
    assert sentiment("great, thank you so much") > 0.5
    assert sentiment("where is my order 1042") == 0.0


def test_negation_softens_and_flips_sentiment() -> None:
    assert -0.6 < sentiment("I'm not happy") < 0.0
    assert sentiment("not bad at all") > 0.0


def test_intensifiers_and_shouting_strengthen_sentiment() -> None:
    assert sentiment("really terrible") < sentiment("terrible") < sentiment("bad")
    assert sentiment("TERRIBLE") < sentiment("terrible")


def test_sentiment_stays_within_minus_one_and_one() -> None:
    furious = " ".join(["terrible awful horrible disgusting"] * 20) + "!!!!!!"
    assert -1.0 <= sentiment(furious) < -0.99


# -- signals read from the conversation ---------------------------------------------------------


def state_with(*events: tuple[str, dict[str, Any]]) -> ConversationState:
    codec = EventCodec()
    start = Event("c", "conversation.started", {"origin": "chat"}, occurred_at=T0)
    typed = [
        codec.decode(
            codec.encode(Event("c", t, p, actor=BOT, occurred_at=T0 + timedelta(seconds=i)))
        )
        for i, (t, p) in enumerate(events, 1)
    ]
    return decide(initial("c"), [start, *typed])


def intent(name: str, confidence: float) -> tuple[str, dict[str, Any]]:
    return "intent.detected", {"intent": name, "confidence": confidence}


def action(
    action_id: str, ok: bool, tool: str = "lookup_order"
) -> list[tuple[str, dict[str, Any]]]:
    done = ("action.completed", {"action_id": action_id}) if ok else (
        "action.failed", {"action_id": action_id, "error": "unknown_order"})  # fmt: skip
    return [("action.requested", {"action_id": action_id, "tool": tool}), done]


def test_the_topic_is_the_last_confident_topic_intent(policy: EscalationPolicy) -> None:
    state = state_with(intent("order_status", 0.9), intent("book_appointment", 0.3),
                       intent("human", 0.95))  # fmt: skip
    assert topic_of(state, policy) == "order_status"


def test_the_low_confidence_streak_counts_the_latest_unsure_intents(
    policy: EscalationPolicy,
) -> None:
    state = state_with(intent("unknown", 0.0), intent("greeting", 0.9), intent("unknown", 0.0),
                       intent("refund", 0.2))  # fmt: skip
    assert low_confidence_streak(state, policy) == 2


def test_the_tool_failure_streak_counts_the_latest_failed_calls_of_the_packs_tools(
    policy: EscalationPolicy,
) -> None:
    state = state_with(*action("a1", False), *action("a2", True), *action("a3", False),
                       *action("a4", False, tool="issue_refund"), *action("a5", False))  # fmt: skip
    assert "issue_refund" not in policy.tools
    assert tool_failure_streak(state, policy.tools) == 2


def test_the_context_holds_slots_and_whether_an_identity_is_verified(
    policy: EscalationPolicy,
) -> None:
    state = state_with(
        ("slot.filled", {"name": "order_number", "value": "1042"}),
        ("identity.linked", {"kind": "phone", "value": "+14155550123", "verified": True}),
    )
    context = ConversationContext.of(state, policy)
    assert (dict(context.slots), context.level) == ({"order_number": "1042"}, "knowledge")

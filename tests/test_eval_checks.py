"""A turn's expectations held against the events it recorded: a handoff, or an approval a
turn may ask instead."""

from __future__ import annotations

from typing import Any

import pytest

from threadline.core.events import Actor, Event
from threadline.evaluation.checks import check_turn
from threadline.evaluation.sandbox import Observed
from threadline.evaluation.suite import TurnSpec

BOT = Actor("bot", "northwind-bot")
EITHER = TurnSpec.model_validate({"say": "I want a refund for it", "handoff_or_approval": {
    "queue": "billing", "tool": "refund_order", "reason": "sensitive_intent"}})  # fmt: skip


def _turn(*events: tuple[str, dict[str, Any]]) -> Observed:
    recorded = [Event("c1", kind, payload, channel="chat", actor=BOT) for kind, payload in events]
    reply = ("message.sent", {"text": "A colleague will look at it.", "in_reply_to": None})
    return Observed((*recorded, Event("c1", *reply, channel="chat", actor=BOT)), reply[1]["text"],
                    5.0)  # fmt: skip


def _approval(queue: str) -> tuple[str, dict[str, Any]]:
    return ("approval.requested", {"approval_id": "apr-1", "tool": "refund_order",
                                   "arguments": {}, "queue": queue, "reason": ""})  # fmt: skip


def _handoff(queue: str, reason: str = "sensitive_intent") -> tuple[str, dict[str, Any]]:
    return ("handoff.requested", {"queue": queue, "reason_code": reason})


@pytest.mark.parametrize("done", [_approval("billing"), _handoff("billing")])
def test_either_a_handoff_or_an_approval_takes_the_conversation_to_the_queue(done) -> None:
    result = check_turn(EITHER, _turn(done), timeout=1.0)
    assert result.failures == () and result.went_to == "billing"


@pytest.mark.parametrize(
    ("done", "failure"),
    [
        ((), "expected a handoff to billing or an approval of refund_order, got neither"),
        ((_approval("orders"),), "expected an approval in billing, asked in orders"),
        ((_handoff("orders"),), "expected queue billing, got orders"),
        ((_handoff("billing", "customer_request"),), "expected reason sensitive_intent"),
    ],
)
def test_neither_or_the_wrong_queue_fails_the_turn(done, failure) -> None:
    result = check_turn(EITHER, _turn(*done), timeout=1.0)
    assert len(result.failures) == 1 and failure in result.failures[0]


def test_an_approval_a_turn_was_not_allowed_to_ask_instead_goes_nowhere() -> None:
    plain = TurnSpec.model_validate({"say": "refund it", "approval": "refund_order"})
    result = check_turn(plain, _turn(_approval("billing")), timeout=1.0)
    assert result.failures == () and result.went_to is None

"""What the bot reads from a conversation's folded state before it takes a turn."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from threadline.agents.escalation import EscalationPolicy
from threadline.agents.tools import TOOLS
from threadline.core.conversation import ConversationState

# The fold notes each finished tool call as "<tool> done" or "<tool> failed: <error>".
_ACTION_NOTE: Final = re.compile(r"^(\w+) (done|failed: )")


@dataclass(frozen=True, slots=True)
class ConversationContext:
    """The slots, topic and streaks of a conversation, as the bot needs them."""

    slots: Mapping[str, str]
    topic: str | None
    low_confidence_streak: int
    tool_failure_streak: int
    identity_verified: bool
    customer_id: str | None

    @classmethod
    def of(cls, state: ConversationState, policy: EscalationPolicy) -> ConversationContext:
        return cls(
            slots={name: str(slot["value"]) for name, slot in state.slots.items()},
            topic=topic_of(state, policy),
            low_confidence_streak=low_confidence_streak(state, policy),
            tool_failure_streak=tool_failure_streak(state),
            identity_verified=any(state.identities.values()),
            customer_id=state.customer_id,
        )


def topic_of(state: ConversationState, policy: EscalationPolicy) -> str | None:
    """The last intent detected with confidence that says what the conversation is about."""
    for intent in reversed(state.intents):
        if intent["intent"] in policy.topics and intent["confidence"] >= policy.min_confidence:
            return str(intent["intent"])
    return None


def low_confidence_streak(state: ConversationState, policy: EscalationPolicy) -> int:
    """How many of the latest detected intents in a row fell below the policy's confidence."""
    streak = 0
    for intent in reversed(state.intents):
        if intent["confidence"] >= policy.min_confidence:
            break
        streak += 1
    return streak


def tool_failure_streak(state: ConversationState, tools: frozenset[str] = TOOLS) -> int:
    """How many of the bot's latest tool calls in a row failed.

    The state counts calls done and failed but keeps no order, so the order is
    read from the summary lines the fold writes for finished calls.
    """
    streak = 0
    for line in reversed(state.summary):
        match = _ACTION_NOTE.match(line)
        if match is None or match.group(1) not in tools:
            continue
        if match.group(2) == "done":
            break
        streak += 1
    return streak

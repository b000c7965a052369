"""What the bot reads from a conversation's folded state before it takes a turn."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from threadline.agents.escalation import EscalationPolicy
from threadline.core.conversation import ConversationState

# The fold notes each finished tool call as "<tool> done" or "<tool> failed: <error>".
_ACTION_NOTE: Final = re.compile(r"^(\w+) (done|failed: )")


@dataclass(frozen=True, slots=True)
class ConversationContext:
    """The slots, topic and streaks of a conversation, as the bot needs them.

    ``slots`` is everything the conversation was told; ``answers`` the knowledge
    answers among them that the current contact gave.
    """

    slots: Mapping[str, str]
    answers: Mapping[str, str]
    topic: str | None
    low_confidence_streak: int
    tool_failure_streak: int
    #: The strongest proof the current contact has given (None: none).
    level: str | None
    customer_id: str | None

    @classmethod
    def of(cls, state: ConversationState, policy: EscalationPolicy) -> ConversationContext:
        return cls(
            slots={name: str(slot["value"]) for name, slot in state.slots.items()},
            answers=answers_of(state, policy.knowledge),
            topic=topic_of(state, policy),
            low_confidence_streak=low_confidence_streak(state, policy),
            tool_failure_streak=tool_failure_streak(state, policy.tools),
            level=state.level,
            customer_id=state.customer_id,
        )


def answers_of(state: ConversationState, knowledge: frozenset[str]) -> dict[str, str]:
    """The knowledge answers (slots that prove who is asking) given since the latest contact
    claim: after a new claim (a call's caller id) they are asked for again."""
    return {
        name: str(slot["value"])
        for name, slot in state.slots.items()
        if name in knowledge and slot["seq"] > state.contact_seq
    }


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


def tool_failure_streak(state: ConversationState, tools: frozenset[str]) -> int:
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

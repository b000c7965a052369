"""The automated agent as the runtime sees it: a protocol any agent implements.

The embedded engine (:mod:`threadline.agents.engine`) is one implementation; a
model-backed agent is another. Channels and routing never see which one runs:
they see the events a turn records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from threadline.agents.escalation import Handoff
from threadline.core.conversation import ConversationState
from threadline.core.events import Event


@dataclass(frozen=True, slots=True)
class Understanding:
    """The turn's intent as the agent acts on it (the classifier's, or the topic continued)."""

    intent: str
    confidence: float
    alternatives: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Turn:
    """The events of one turn, and the handoff and reply among them."""

    events: tuple[Event, ...]
    handoff: Handoff | None = None
    reply: str | None = None


class LiveTurn(Protocol):
    """What a turn may do before it ends: record events at once (a streamed reply's first
    sentence, spoken while the rest is generated), and learn that the customer spoke over
    it (a barge-in: stop generating)."""

    async def record(self, events: Sequence[Event]) -> bool:
        """Record ``events`` now; False when the policy or the state refuses them."""

    @property
    def interrupted(self) -> bool:
        """Whether the customer spoke over the turn's reply."""


class Agent(Protocol):
    """Takes a conversation's turns: answers a customer, or greets one who comes back."""

    @property
    def id(self) -> str:
        """The agent's actor id: its events are recorded as ``bot:<id>``."""

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
        """The events answering ``text`` (already folded into ``state``); none when the
        agent does not hold the conversation. The same message yields the same events.
        An agent that streams its reply records part of the turn through ``live`` as it
        goes; the turn's ``events`` are then what is left to record."""

    def may_process(self, state: ConversationState) -> bool:
        """Whether the customer's consent lets this agent process the conversation now
        (never once they withdrew it: a person handles it)."""

    async def hand_over(
        self, state: ConversationState, channel: str, now: datetime, *, leg_id: str | None,
        anchor: str,
    ) -> Turn:  # fmt: skip
        """The events handing the conversation to a person because the customer's consent
        does not let the agent process it; none when the agent does not hold it."""

    async def settle(self, state: ConversationState, decision: Event, now: datetime) -> Turn:
        """The events answering a person's decision on a sensitive call (``approval.granted``
        or ``approval.denied``, already folded into ``state``): the call run, the customer
        told. The same decision yields the same events."""

    async def welcome_back(
        self, state: ConversationState, channel: str, now: datetime, *, leg_id: str, anchor: str
    ) -> Turn:
        """The events greeting a customer who returns on a new leg; none when there is
        nothing to pick up."""

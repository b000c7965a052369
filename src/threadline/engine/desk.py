"""The desk's commands: what human agents and supervisors do to a conversation.

Each is recorded as the human acting. Every one needs the conversation to
exist and the caller to read it; answering an offer needs the offer open and
made to the caller (a supervisor answers any); working a conversation needs
the caller to hold it (:func:`holds`). The policy engine decides both
(:func:`~threadline.security.authz.can_answer_offer`, :func:`~threadline.security.authz.can_work`).
Deciding a sensitive call needs the approval still waiting; whether the caller
may decide it (an agent of the queue it waits in, or a supervisor) is the
policy's rule on the decision event itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from threadline.core.conversation import ConversationState
from threadline.core.errors import DomainError
from threadline.core.events import Actor, Event, Lineage
from threadline.engine.commands import Acting, Command, NoSuchConversation, name_of
from threadline.security.authz import can_answer_offer, can_read_conversation, can_work
from threadline.security.principal import Principal

LINEAGE: Final = Lineage("threadline.desk", "0.1.0")


class StaleOffer(DomainError):
    """The offer answered is no longer open on the conversation."""


class StaleApproval(DomainError):
    """The approval decided no longer waits on the conversation (decided, or never asked)."""


def holds(by: Principal, state: ConversationState) -> None:
    """Forbidden unless ``by`` is the conversation's assignee or oversees every queue."""
    can_work(by, state)


def live_leg(state: ConversationState) -> tuple[str, str | None]:
    """The channel and id of the conversation's first live leg, else chat and no leg."""
    live = sorted(state.live_legs.items(), key=lambda kv: str(kv[1].get("started_at") or ""))
    if not live:
        return "chat", None
    leg_id, leg = live[0]
    return str(leg.get("channel") or "chat"), leg_id


@dataclass(frozen=True, slots=True)
class DeskCommand(Command):
    """One event, by the human acting, on a conversation they may read."""

    def admit(self, by: Principal, state: ConversationState) -> None:
        if state.seq == 0:
            raise NoSuchConversation(f"no conversation {self.conversation_id}")
        can_read_conversation(by, state)

    def event(
        self,
        by: Acting,
        state: ConversationState,
        type_: str,
        payload: Mapping[str, Any],
        *,
        channel: str = "system",
        leg_id: str | None = None,
    ) -> Event:
        return Event(
            conversation_id=self.conversation_id,
            type=type_,
            payload=dict(payload),
            channel=channel,
            leg_id=leg_id,
            actor=Actor("human", name_of(by)),
            customer_id=state.customer_id,
            idempotency_key=self.key,
            lineage=LINEAGE,
        )


@dataclass(frozen=True, slots=True)
class AnswerOffer(DeskCommand):
    """Accept or decline the conversation offered to the caller."""

    offer_id: str
    accept: bool

    def admit(self, by: Principal, state: ConversationState) -> None:
        DeskCommand.admit(self, by, state)
        offer = state.offer or {}
        if offer.get("offer_id") != self.offer_id:
            raise StaleOffer(
                f"offer {self.offer_id} is not open on conversation {self.conversation_id}"
            )
        can_answer_offer(by, state, self.offer_id)

    def decide(self, state: ConversationState, by: Acting) -> list[Event]:
        type_ = "handoff.accepted" if self.accept else "handoff.declined"
        payload = {"offer_id": self.offer_id, "agent_id": _offered_to(state, by)}
        return [self.event(by, state, type_, payload)]


@dataclass(frozen=True, slots=True)
class Decide(DeskCommand):
    """Approve or deny a sensitive call waiting on the conversation; ``text`` is the note
    of an approval or the reason of a denial (which needs one)."""

    approval_id: str
    approve: bool
    text: str = ""

    def admit(self, by: Principal, state: ConversationState) -> None:
        if state.seq == 0:
            raise NoSuchConversation(f"no conversation {self.conversation_id}")
        # Whether it still waits comes first: a decision ends the reading of every desk
        # that showed it but the decider's, and to those "decided meanwhile" is the news.
        self._waiting(state)
        DeskCommand.admit(self, by, state)

    def _waiting(self, state: ConversationState) -> Mapping[str, Any]:
        approval = state.approvals.get(self.approval_id)
        if approval is None or approval["status"] != "pending":
            raise StaleApproval(
                f"approval {self.approval_id} does not wait on conversation {self.conversation_id}"
            )
        return approval

    def decide(self, state: ConversationState, by: Acting) -> list[Event]:
        approval = self._waiting(state)
        payload: dict[str, Any] = {"approval_id": self.approval_id, "agent_id": name_of(by),
                                   "queue": approval["queue"]}  # fmt: skip
        if not self.approve:
            payload["reason"] = self.text
            return [self.event(by, state, "approval.denied", payload)]
        if self.text:
            payload["note"] = self.text
        return [self.event(by, state, "approval.granted", payload)]


def _offered_to(state: ConversationState, by: Acting) -> str:
    offer = state.offer or {}
    return str(offer.get("agent_id") or name_of(by))


@dataclass(frozen=True, slots=True)
class WorkCommand(DeskCommand):
    """A desk command on a conversation the caller holds."""

    def admit(self, by: Principal, state: ConversationState) -> None:
        DeskCommand.admit(self, by, state)
        holds(by, state)


@dataclass(frozen=True, slots=True)
class Reply(WorkCommand):
    """Send the customer a message on the conversation's live channel."""

    text: str

    def decide(self, state: ConversationState, by: Acting) -> list[Event]:
        channel, leg_id = live_leg(state)
        return [self.event(by, state, "message.sent", {"text": self.text},
                           channel=channel, leg_id=leg_id)]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Transfer(WorkCommand):
    """Hand the conversation to another queue (which needs ``skills``)."""

    queue: str
    skills: tuple[str, ...]
    reason: str = ""

    def decide(self, state: ConversationState, by: Acting) -> list[Event]:
        payload = {"queue": self.queue, "reason_code": "transfer", "reason_detail": self.reason,
                   "skills": sorted(self.skills)}  # fmt: skip
        return [self.event(by, state, "handoff.requested", payload)]


@dataclass(frozen=True, slots=True)
class GiveBack(WorkCommand):
    """Hand the conversation back to the bot, with an optional note."""

    note: str | None = None

    def decide(self, state: ConversationState, by: Acting) -> list[Event]:
        payload: dict[str, Any] = {"agent_id": state.assignee or name_of(by)}
        if self.note:
            payload["note"] = self.note
        return [self.event(by, state, "handoff.returned", payload)]


@dataclass(frozen=True, slots=True)
class Resolve(WorkCommand):
    """Close the conversation with an outcome."""

    outcome: str
    note: str | None = None

    def decide(self, state: ConversationState, by: Acting) -> list[Event]:
        payload: dict[str, Any] = {"outcome": self.outcome}
        if self.note:
            payload["note"] = self.note
        return [self.event(by, state, "conversation.resolved", payload)]

"""Visits: the in-person leg of a conversation, worked by a store associate.

Each write is a command (:mod:`threadline.engine.commands`) executed as the
associate (``Actor("human", <associate>)``): the associate must be allowed
each event they write on the live state it follows, and the caller's
idempotency key makes a write replayed by the associate app after a dropped
network count once. What the service writes as a consequence (the reopening
of a resolved conversation) is not the associate's to be allowed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from threadline.channels.inperson.codes import LINEAGE
from threadline.core.conversation import CLOSED_STATES, ConversationState
from threadline.core.errors import NotFound
from threadline.core.events import Actor, Event
from threadline.engine.commands import Acting, Command, Commands, Executed, name_of
from threadline.security import Forbidden, Principal

CHANNEL: Final = "in_person"
#: The conversation after a hand-back: with the bot again, or waiting on the customer.
HAND_BACK_MODES: Final = ("bot", "wait")


@dataclass(frozen=True, slots=True)
class Recorded:
    """What a visit write recorded: the conversation, the visit and the last seq."""

    conversation_id: str
    leg_id: str | None
    seq: int

    def to_dict(self) -> dict[str, Any]:
        return {"conversation_id": self.conversation_id, "leg_id": self.leg_id, "seq": self.seq}


def visit_id(conversation_id: str, key: str) -> str:
    """The visit a request opens: the same for a replay of the same request."""
    digest = hashlib.sha256(f"{conversation_id}\n{key}".encode()).hexdigest()[:20]
    return f"visit-{digest}"


def live_visit(state: ConversationState, store_id: str | None) -> str | None:
    """The live visit at ``store_id`` on the conversation, if there is one."""
    for leg_id, leg in state.live_legs.items():
        if leg.get("channel") == CHANNEL and leg.get("location") == store_id:
            return leg_id
    return None


def _store(by: Acting) -> str | None:
    return by.store_id if isinstance(by, Principal) else None


@dataclass(frozen=True, slots=True)
class VisitCommand(Command):
    """A write on a visit at the associate's store: one act, judged on the state before."""

    stepwise: ClassVar[bool] = False

    def admit(self, by: Principal, state: ConversationState) -> None:
        if state.seq == 0:
            raise NotFound(f"no conversation {self.conversation_id}")

    def judged(self, event: Event) -> bool:
        return event.actor.kind == "human"

    def leg(self, executed: Executed, by: Principal) -> str | None:
        """The visit the answer names: the live one at the associate's store."""
        return live_visit(executed.state, by.store_id)

    def event(self, by: Acting, state: ConversationState, type_: str,
              payload: Mapping[str, Any], suffix: str = "", *, channel: str = CHANNEL,
              leg_id: str | None = None, actor: Actor | None = None) -> Event:  # fmt: skip
        return Event(
            conversation_id=self.conversation_id,
            type=type_,
            payload=dict(payload),
            channel=channel,
            leg_id=leg_id,
            actor=actor or Actor("human", name_of(by)),
            customer_id=state.customer_id,
            idempotency_key=f"{self.key}:{suffix}" if suffix else self.key,
            lineage=LINEAGE,
        )

    def end(self, by: Acting, state: ConversationState, reason: str, suffix: str) -> Event:
        """``leg.ended`` of the live visit at the associate's store; Forbidden if none."""
        leg_id = live_visit(state, _store(by))
        if leg_id is None:
            raise Forbidden(f"associate {name_of(by)}: no live visit at "
                            f"{_store(by)} on {state.conversation_id}")  # fmt: skip
        payload = {"leg_id": leg_id, "reason": reason}
        return self.event(by, state, "leg.ended", payload, suffix, leg_id=leg_id)


@dataclass(frozen=True, slots=True)
class OpenVisit(VisitCommand):
    """Open a visit at the associate's store (reopening a closed conversation); a
    visit live there already is answered as it is."""

    def leg(self, executed: Executed, by: Principal) -> str | None:
        if executed.result is None:
            return live_visit(executed.state, by.store_id)
        return visit_id(self.conversation_id, self.key)

    def decide(self, state: ConversationState, by: Acting) -> list[Event]:
        if live_visit(state, _store(by)) is not None:
            return []
        leg_id = visit_id(self.conversation_id, self.key)
        start = {"leg_id": leg_id, "channel": CHANNEL, "location": _store(by)}
        if state.status not in CLOSED_STATES:
            return [self.event(by, state, "leg.started", start, leg_id=leg_id)]
        return [
            self.event(by, state, "conversation.reopened", {"reason": "store_visit"},
                       actor=Actor("system", "inperson")),
            self.event(by, state, "leg.started", start, "visit", leg_id=leg_id),
        ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class VisitNote(VisitCommand):
    """An internal note on the visit."""

    text: str

    def decide(self, state: ConversationState, by: Acting) -> list[Event]:
        payload = {"author_id": name_of(by), "text": self.text}
        return [self.event(by, state, "note.added", payload, leg_id=live_visit(state, _store(by)))]


@dataclass(frozen=True, slots=True)
class VisitAction(VisitCommand):
    """Something done at the counter ("replaced device"): requested and completed at once."""

    action: str
    detail: str | None = None

    def decide(self, state: ConversationState, by: Acting) -> list[Event]:
        live = live_visit(state, _store(by))
        action_id = f"act-{hashlib.sha256(self.key.encode()).hexdigest()[:16]}"
        arguments = {"detail": self.detail} if self.detail else {}
        return [
            self.event(by, state, "action.requested",
                       {"action_id": action_id, "tool": self.action, "arguments": arguments},
                       leg_id=live),
            self.event(by, state, "action.completed",
                       {"action_id": action_id, "result": {"done_by": name_of(by)}}, "done",
                       leg_id=live),
        ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class EndVisit(VisitCommand):
    """End the visit; the conversation stays open."""

    reason: str = "completed"

    def decide(self, state: ConversationState, by: Acting) -> list[Event]:
        return [self.end(by, state, self.reason, "")]


@dataclass(frozen=True, slots=True)
class ResolveVisit(VisitCommand):
    """Resolve the conversation with an outcome and end the visit."""

    outcome: str
    note: str | None = None

    def decide(self, state: ConversationState, by: Acting) -> list[Event]:
        payload: dict[str, Any] = {"outcome": self.outcome}
        if self.note:
            payload["note"] = self.note
        live = live_visit(state, _store(by))
        return [
            self.event(by, state, "conversation.resolved", payload, leg_id=live),
            self.end(by, state, "resolved", "end"),
        ]


@dataclass(frozen=True, slots=True)
class HandBack(VisitCommand):
    """End the visit and follow up on chat: a message, then the bot or a wait."""

    text: str
    mode: str = "bot"

    def decide(self, state: ConversationState, by: Acting) -> list[Event]:
        chat = next((i for i, leg in state.live_legs.items()
                     if leg.get("channel") == "chat"), None)  # fmt: skip
        events = [
            self.event(by, state, "message.sent", {"text": self.text}, channel="chat",
                       leg_id=chat),
            self.end(by, state, "handed_back", "end"),
        ]  # fmt: skip
        if self.mode == "wait" and state.status != "waiting_on_customer":
            waiting = {"reason": "digital_follow_up"}
            events.append(self.event(by, state, "conversation.waiting", waiting, "wait"))
        return events


class Visits:
    """Runs visit commands as the associate and answers with what they recorded."""

    def __init__(self, commands: Commands) -> None:
        self.commands = commands

    async def state(self, conversation_id: str) -> ConversationState:
        """The conversation's state; NotFound if it has no events."""
        state = await self.commands.conversations.rehydrate(conversation_id)
        if state.seq == 0:
            raise NotFound(f"no conversation {conversation_id}")
        return state

    async def record(self, by: Principal, command: VisitCommand) -> Recorded:
        """Execute ``command`` as ``by``: the conversation, the visit and the last seq."""
        executed = await self.commands.execute(command, by)
        return Recorded(command.conversation_id, command.leg(executed, by), executed.last_seq)

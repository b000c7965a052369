"""The chat adapter: a chat session's traffic as canonical events.

It writes through :mod:`threadline.engine.commands` as the chat channel's
adapter principal, which may write chat events only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from threadline.business.current import CurrentBusiness
from threadline.core.conversation import CLOSED_STATES, ConversationState
from threadline.core.errors import DomainError, NotFound
from threadline.core.events import Actor, Event, Lineage, new_id
from threadline.core.verification import anonymous
from threadline.engine.commands import (
    Acting,
    AppendEvents,
    Command,
    Commands,
    EndLeg,
    channel_adapter,
)
from threadline.privacy.consent import notices
from threadline.security import Principal

LINEAGE: Final = Lineage("chat-adapter", "1")
Notices = Callable[[Mapping[str, bool]], list[dict[str, Any]]]
#: How many joins a chat follows to the conversation it goes on in.
MAX_HOPS: Final = 5
CHANNEL: Final = "chat"


@dataclass(frozen=True, slots=True)
class ChatLeg:
    conversation_id: str
    leg_id: str
    customer_id: str
    seq: int


def _event(
    conversation_id: str,
    customer_id: str,
    type_: str,
    payload: dict[str, object],
    key: str,
    leg_id: str | None = None,
) -> Event:
    return Event(
        conversation_id=conversation_id,
        type=type_,
        payload=payload,
        channel=CHANNEL,
        leg_id=leg_id,
        actor=Actor("customer", customer_id),
        customer_id=customer_id,
        idempotency_key=key,
        lineage=LINEAGE,
    )


def _theirs(state: ConversationState, customer_id: str) -> bool:
    """Whether ``customer_id`` (a customer, or a visitor session that proved itself theirs)
    may open a chat on the conversation."""
    return customer_id == state.customer_id or customer_id in state.aliases


@dataclass(frozen=True, slots=True)
class OpenChat(Command):
    """A chat leg for the customer: on a new conversation, or on their own one (reopened
    if it closed). A visitor session that proved itself the customer's speaks for them
    (the conversation's aliases). The leg's id is the command's key."""

    customer_id: str
    new: bool
    #: The consent the chat's banner gives by notice, given what the customer decided.
    notices: Notices | None = None

    def admit(self, by: Principal, state: ConversationState) -> None:
        if not self.new and (state.seq == 0 or not _theirs(state, self.customer_id)):
            raise NotFound(f"no conversation {self.conversation_id} for this customer")

    def decide(self, state: ConversationState, by: Acting) -> list[Event]:
        cid, customer, leg_id = self.conversation_id, self.customer_id, self.key
        events = []
        if self.new:
            events.append(_event(cid, customer, "conversation.started", {"origin": CHANNEL},
                                 leg_id))  # fmt: skip
        elif state.status in CLOSED_STATES:
            events.append(_event(cid, customer, "conversation.reopened",
                                 {"reason": "customer_returned"}, leg_id))  # fmt: skip
        leg: dict[str, object] = {"leg_id": leg_id, "channel": CHANNEL}
        key = f"{leg_id}:leg" if events else leg_id
        events.append(_event(cid, customer, "leg.started", leg, key, leg_id))
        for payload in self.notices(state.consent) if self.notices is not None else ():
            events.append(_event(cid, customer, "consent.granted", payload,
                                 f"{leg_id}:consent:{payload['purpose']}", leg_id))  # fmt: skip
        return events


@dataclass(frozen=True, slots=True)
class SignIn(Command):
    """A chat visitor signed in: the visitor's conversation is the customer's, proven at
    ``level`` by ``method``. Refused on a conversation the visitor may not read, and on one
    a proof already showed to be someone else's."""

    visitor: str
    customer_id: str
    method: str
    level: str

    def admit(self, by: Principal, state: ConversationState) -> None:
        if state.seq == 0 or (self.visitor != state.customer_id
                              and self.visitor not in state.aliases):  # fmt: skip
            raise NotFound(f"no conversation {self.conversation_id} for this customer")
        if not anonymous(state.customer_id) and state.customer_id != self.customer_id:
            raise DomainError("this conversation is another customer's")

    def decide(self, state: ConversationState, by: Acting) -> list[Event]:
        if (
            self.visitor in state.aliases
            and state.customer_id == self.customer_id
            and any(p["method"] == self.method for p in state.proofs)
        ):
            return []  # signed in already
        payload = {"kind": "device", "value": self.visitor, "verified": True,
                   "method": self.method, "level": self.level,
                   "customer_id": self.customer_id}  # fmt: skip
        event = _event(self.conversation_id, self.customer_id, "identity.linked", payload,
                       self.key)  # fmt: skip
        return [replace(event, actor=Actor("customer", self.visitor))]


class ChatAdapter:
    """Opens chat legs, records customer messages, and closes legs."""

    def __init__(self, commands: Commands, current: CurrentBusiness | None = None) -> None:
        self.commands = commands
        self.principal = channel_adapter(CHANNEL, LINEAGE.producer)
        #: The business served now: the notice its chat banner gives.
        self.current = current

    def _notices(self, decided: Mapping[str, bool]) -> list[dict[str, Any]]:
        return [] if self.current is None else notices(self.current.business, CHANNEL, decided)

    async def open(self, customer_id: str, conversation_id: str | None = None) -> ChatLeg:
        """Start a chat leg: on a new conversation, or on the customer's existing one (or
        the one it goes on in, when it joined another)."""
        leg_id = "chat-" + new_id()
        new = conversation_id is None
        for _ in range(MAX_HOPS):
            if conversation_id is None:
                break
            state = await self.commands.conversations.rehydrate(conversation_id)
            if state.continued_in is None or not _theirs(state, customer_id):
                break
            conversation_id = state.continued_in
        command = OpenChat(conversation_id or new_id(), leg_id, customer_id, new, self._notices)
        executed = await self.commands.execute(command, self.principal)
        return ChatLeg(command.conversation_id, leg_id, customer_id, executed.last_seq)

    async def say(self, leg: ChatLeg, client_id: str, text: str) -> int:
        """Record a customer message; resending the same ``client_id`` records it once."""
        event = _event(leg.conversation_id, leg.customer_id, "message.received", {"text": text},
                       f"chat:{client_id}", leg.leg_id)  # fmt: skip
        executed = await self.commands.execute(AppendEvents.of([event]), self.principal)
        assert executed.result is not None
        return executed.result.seqs[0]

    async def consent(self, leg: ChatLeg, client_id: str, purpose: str, granted: bool) -> int:
        """Record the customer's own decision on ``purpose``; resending records it once."""
        type_ = "consent.granted" if granted else "consent.revoked"
        event = _event(leg.conversation_id, leg.customer_id, type_,
                       {"purpose": purpose, "basis": "express"}, f"chat:{client_id}",
                       leg.leg_id)  # fmt: skip
        executed = await self.commands.execute(AppendEvents.of([event]), self.principal)
        assert executed.result is not None
        return executed.result.seqs[0]

    async def sign_in(
        self, conversation_id: str, visitor: str, customer_id: str, method: str, level: str
    ) -> None:
        """Record that the visitor of ``conversation_id`` signed in as ``customer_id``."""
        command = SignIn(conversation_id, f"sign-in:{visitor}:{customer_id}", visitor,
                         customer_id, method, level)  # fmt: skip
        await self.commands.execute(command, self.principal)

    async def close(self, leg: ChatLeg, reason: str = "disconnected") -> None:
        """End the leg if it is still live."""
        command = EndLeg(leg.conversation_id, f"{leg.leg_id}:end", leg.leg_id, CHANNEL, reason,
                         Actor("customer", leg.customer_id), LINEAGE)  # fmt: skip
        await self.commands.execute(command, self.principal)

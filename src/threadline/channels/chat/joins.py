"""A chat that finds out whose it is joins the customer's open conversation.

A bus consumer. When a proof identifies a chat visitor (``identity.linked``
with a ``customer_id``, on the chat: a postcode and order, a one-time code, an
ID token), and that customer has another conversation that is open, or that
closed within the reopen window, the chat goes on there:

* the other conversation reopens if it closed, takes the chat's proof (the
  visitor's session as a verified device, at the proof's level, on the chat)
  and what the chat collected (its slots, but for knowledge answers);
* the chat is resolved with the outcome ``continued`` and ``continued_in``
  naming it; the widget, which sees that, opens the other conversation and
  shows its earlier turns.

Only a proof at the pack's ``verification.history`` level or above joins:
the earlier turns are the customer's history. A chat a person holds, or that
waits for one, stays where it is. Both writes are keyed on the proof's event,
so a redelivery records nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import structlog

from threadline.business.current import CurrentBusiness
from threadline.core.conversation import CLOSED_STATES, ConversationState
from threadline.core.errors import DomainError, NotFound
from threadline.core.events import Actor, Event, EventRecord, Lineage
from threadline.core.ports import Bus
from threadline.core.state import BOT_ACTIVE, WAITING_ON_CUSTOMER
from threadline.core.verification import anonymous, at_least
from threadline.engine.commands import Acting, Command, Commands, Component
from threadline.engine.projections import ConversationIndex

log = structlog.get_logger("threadline.chat")

GROUP: Final = "chat-joins"
LINEAGE: Final = Lineage("chat-joins", "1")
SELF: Final = Component("chat-joins")
JOINER: Final = Actor("system", "chat-joins")
#: A chat in these states is the bot's: it may move.
MOVABLE: Final = frozenset({BOT_ACTIVE, WAITING_ON_CUSTOMER})


@dataclass(frozen=True, slots=True)
class TakeChat(Command):
    """The customer's conversation takes a chat that proved itself hers: reopened if it
    closed, with the chat's proof and slots."""

    proof: Event
    chat: ConversationState
    #: Slots that are knowledge answers (the postcode): not copied.
    private: frozenset[str]

    def decide(self, state: ConversationState, by: Acting) -> list[Event]:
        if self.proof.payload["value"] in state.aliases:
            return []  # taken already
        events = []
        if state.status in CLOSED_STATES:
            events.append(self._event(state, "conversation.reopened",
                                      {"reason": "customer_returned"}, "reopen"))  # fmt: skip
        proof = {k: v for k, v in self.proof.payload.items() if k != "customer_id"}
        events.append(self._event(state, "identity.linked", proof, "proof"))
        for name, slot in self.chat.slots.items():
            if name in self.private:
                continue  # a knowledge answer proved the chat; the proof is what travels
            if state.slots.get(name, {}).get("value") != slot.get("value"):
                events.append(self._event(state, "slot.filled",
                                          {"name": name, "value": slot["value"],
                                           "source": slot.get("source", "customer")},
                                          f"slot:{name}"))  # fmt: skip
        return events

    def _event(self, state: ConversationState, type_: str, payload: dict[str, object],
               suffix: str) -> Event:  # fmt: skip
        return Event(
            conversation_id=self.conversation_id, type=type_, payload=payload, channel="chat",
            actor=JOINER, customer_id=state.customer_id,
            correlation_id=state.correlation_id or self.proof.correlation_id,
            causation_id=self.proof.event_id, idempotency_key=f"{self.key}:{suffix}",
            lineage=LINEAGE,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class HandOver(Command):
    """The chat is resolved as ``continued`` in the customer's conversation."""

    proof: Event
    into: str

    def decide(self, state: ConversationState, by: Acting) -> list[Event]:
        if state.status in CLOSED_STATES:
            return []
        return [Event(
            conversation_id=self.conversation_id, type="conversation.resolved",
            payload={"outcome": "continued", "continued_in": self.into}, channel="chat",
            actor=JOINER, customer_id=state.customer_id, correlation_id=state.correlation_id or "",
            causation_id=self.proof.event_id, idempotency_key=self.key, lineage=LINEAGE,
        )]  # fmt: skip


class ChatJoins:
    """Moves identified chats into their customers' conversations."""

    def __init__(
        self,
        commands: Commands,
        index: ConversationIndex,
        current: CurrentBusiness,
        reopen_window: timedelta,
    ) -> None:
        self.commands = commands
        self.conversations = commands.conversations
        self.index = index
        self.current = current
        self.reopen_window = reopen_window

    async def start(self, bus: Bus) -> None:
        await bus.subscribe(GROUP, self.handle, concurrency=16, types={"identity.linked"})

    async def handle(self, record: EventRecord) -> None:
        if record.type != "identity.linked" or record.channel != "chat":
            return
        proof = self.conversations.codec.decode(record)
        customer_id = proof.payload.get("customer_id")
        if not proof.payload["verified"] or anonymous(customer_id) or proof.actor == JOINER:
            return
        needed = self.current.business.pack.verification.history
        if not at_least(proof.payload["level"], needed):
            return
        chat = await self.conversations.current(record.conversation_id, record.seq)
        if chat.status not in MOVABLE or chat.customer_id != customer_id:
            return
        assert customer_id is not None
        into = await self._continuable(customer_id, chat.conversation_id)
        if into is None:
            return
        key = f"join:{proof.event_id}"
        try:
            private = frozenset(self.current.business.pack.verification.knowledge)
            await self.commands.execute(TakeChat(into, key, proof, chat, private), SELF)
            await self.commands.execute(HandOver(chat.conversation_id, key, proof, into), SELF)
        except (DomainError, NotFound) as exc:  # it changed in between: the chat stays
            log.info("chat not joined", conversation_id=chat.conversation_id, reason=str(exc))
            return
        log.info("chat joined", conversation_id=chat.conversation_id, continued_in=into)

    async def _continuable(self, customer_id: str, chat_id: str) -> str | None:
        """The customer's other conversation, open or closed within the window, most
        recently active first."""
        now = datetime.now(UTC)
        await self.index.catch_up()
        for entry in self.index.of_customer(customer_id):
            if entry.conversation_id == chat_id:
                continue
            state = entry.state
            if state.is_open:
                return entry.conversation_id
            if state.closed_at and now - datetime.fromisoformat(state.closed_at) <= (
                self.reopen_window
            ):
                return entry.conversation_id
        return None

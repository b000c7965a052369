"""The chat adapter: a chat session's traffic as canonical events."""

from __future__ import annotations

from dataclasses import dataclass

from threadline.core.conversation import CLOSED_STATES
from threadline.core.errors import NotFound
from threadline.core.events import Actor, Event, Lineage, new_id
from threadline.engine.conversations import Conversations

LINEAGE = Lineage("chat-adapter", "1")


@dataclass(frozen=True, slots=True)
class ChatLeg:
    conversation_id: str
    leg_id: str
    customer_id: str
    seq: int


class ChatAdapter:
    """Opens chat legs, records customer messages, and closes legs."""

    def __init__(self, conversations: Conversations) -> None:
        self.conversations = conversations

    def _event(
        self,
        leg: ChatLeg | str | None,
        conversation_id: str,
        customer_id: str,
        type_: str,
        payload: dict[str, object],
        key: str,
    ) -> Event:
        return Event(
            conversation_id=conversation_id,
            type=type_,
            payload=payload,
            channel="chat",
            leg_id=leg if isinstance(leg, str) else leg.leg_id if leg else None,
            actor=Actor("customer", customer_id),
            customer_id=customer_id,
            idempotency_key=key,
            lineage=LINEAGE,
        )

    async def open(self, customer_id: str, conversation_id: str | None = None) -> ChatLeg:
        """Start a chat leg: on a new conversation, or on the customer's existing one."""
        leg_id = "chat-" + new_id()
        events: list[Event] = []
        if conversation_id is None:
            conversation_id = new_id()
            events.append(
                self._event(
                    None,
                    conversation_id,
                    customer_id,
                    "conversation.started",
                    {"origin": "chat"},
                    f"{leg_id}:start",
                )
            )
        else:
            state = await self.conversations.rehydrate(conversation_id)
            if state.seq == 0 or state.customer_id != customer_id:
                raise NotFound(f"no conversation {conversation_id} for this customer")
            if state.status in CLOSED_STATES:
                events.append(
                    self._event(
                        None,
                        conversation_id,
                        customer_id,
                        "conversation.reopened",
                        {"reason": "customer_returned"},
                        f"{leg_id}:reopen",
                    )
                )
        events.append(
            self._event(
                leg_id,
                conversation_id,
                customer_id,
                "leg.started",
                {"leg_id": leg_id, "channel": "chat"},
                f"{leg_id}:leg",
            )
        )
        result = await self.conversations.record(conversation_id, events)
        return ChatLeg(conversation_id, leg_id, customer_id, result.last_seq)

    async def say(self, leg: ChatLeg, client_id: str, text: str) -> int:
        """Record a customer message; resending the same ``client_id`` records it once."""
        event = self._event(
            leg,
            leg.conversation_id,
            leg.customer_id,
            "message.received",
            {"text": text},
            f"chat:{client_id}",
        )
        result = await self.conversations.record(leg.conversation_id, [event])
        return result.seqs[0]

    async def close(self, leg: ChatLeg, reason: str = "disconnected") -> None:
        state = await self.conversations.rehydrate(leg.conversation_id)
        if leg.leg_id in state.live_legs:
            event = self._event(
                leg,
                leg.conversation_id,
                leg.customer_id,
                "leg.ended",
                {"leg_id": leg.leg_id, "reason": reason},
                f"{leg.leg_id}:end",
            )
            await self.conversations.record(leg.conversation_id, [event])

"""Sends the check-in codes that the bot (or an agent) asked for to the customer's chat.

A bus consumer. For each ``action.requested`` of :data:`SEND_CHECKIN_CODE` it
issues a code for the conversation and records ``action.completed`` with a
``message.sent`` that carries the code sealed (:mod:`.cards`), on the chat.
The events are keyed on the request and recorded only while the request is
pending on the live state (:class:`Fulfil`), so a redelivery sends nothing
twice. A conversation that closed in between gets ``action.failed`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import structlog

from threadline.agents.flows import SEND_CHECKIN_CODE
from threadline.business.current import CurrentBusiness
from threadline.channels.inperson.cards import CheckinCards
from threadline.channels.inperson.codes import LINEAGE, CheckinCodes
from threadline.core.conversation import CLOSED_STATES, ConversationState
from threadline.core.errors import IllegalTransition
from threadline.core.events import Actor, Event, EventRecord
from threadline.core.ports import Bus
from threadline.engine.commands import (
    Acting,
    Command,
    Commands,
    Component,
    Fulfil,
    pending_request,
)
from threadline.security import Principal, can_read_conversation

log = structlog.get_logger("threadline.inperson")

GROUP: Final = "checkin-courier"
COURIER: Final = Actor("system", "checkin")
#: The courier acts by itself, as a part of the service.
SELF: Final = Component("checkin-courier")


@dataclass(frozen=True, slots=True)
class PostCard(Command):
    """A check-in card on the customer's chat, posted by the check-in service for a
    customer who may read the conversation; nothing once the conversation closed."""

    message: dict[str, Any]

    def admit(self, by: Principal, state: ConversationState) -> None:
        can_read_conversation(by, state)

    def judged(self, event: Event) -> bool:
        return False  # the service writes it; the customer only asked

    def decide(self, state: ConversationState, by: Acting) -> list[Event]:
        if state.status in CLOSED_STATES:
            return []
        chat = next((i for i, leg in state.live_legs.items() if leg.get("channel") == "chat"),
                    None)  # fmt: skip
        return [Event(conversation_id=self.conversation_id, type="message.sent",
                      payload=self.message, channel="chat", leg_id=chat, actor=COURIER,
                      customer_id=state.customer_id, idempotency_key=self.key,
                      lineage=LINEAGE)]  # fmt: skip


class CheckinCourier:
    """Fulfils ``send_checkin_code`` requests on the conversations they were made on."""

    def __init__(
        self,
        commands: Commands,
        codes: CheckinCodes,
        cards: CheckinCards,
        current: CurrentBusiness,
    ) -> None:
        self.commands = commands
        self.conversations = commands.conversations
        self.codes = codes
        self.cards = cards
        #: The business served now: its words and locations.
        self.current = current

    async def start(self, bus: Bus) -> None:
        await bus.subscribe(GROUP, self.handle, concurrency=64, types={"action.requested"})

    async def handle(self, record: EventRecord) -> None:
        pending = await pending_request(self.conversations, record, SEND_CHECKIN_CODE)
        if pending is None:
            return  # another event, or sent already (a redelivery)
        request, action_id, state = pending.request, pending.action_id, pending.state
        store_id = request.payload["arguments"].get("store")
        if state.status in CLOSED_STATES or state.customer_id is None:
            await self._failed(state, request, action_id, "conversation_closed")
            return
        issued = await self.codes.issue(state.conversation_id, state.customer_id, store_id)
        chat = next((leg_id for leg_id, leg in state.live_legs.items()
                     if leg.get("channel") == "chat"), None)  # fmt: skip
        result = {"token_id": issued.token_id, "store": issued.store_id,
                  "expires_at": issued.expires_at.isoformat()}  # fmt: skip
        events = [
            self._event(state, request, "action.completed",
                        {"action_id": action_id, "result": result}, "done"),
            self._event(state, request, "message.sent",
                        self.cards.message(issued, self.current.business), "message", leg_id=chat),
        ]  # fmt: skip
        try:
            await self.commands.execute(Fulfil.of(action_id, events), SELF)
        except IllegalTransition as exc:  # it closed just now: the code stays unused
            log.info("check-in code not sent", conversation_id=state.conversation_id,
                     reason=str(exc))  # fmt: skip
            await self._failed(state, request, action_id, "conversation_closed")

    async def _failed(
        self, state: ConversationState, request: Event, action_id: str, error: str
    ) -> None:
        payload = {"action_id": action_id, "error": error, "retryable": False}
        event = self._event(state, request, "action.failed", payload, "failed")
        await self.commands.execute(Fulfil.of(action_id, [event]), SELF)

    def _event(
        self,
        state: ConversationState,
        request: Event,
        type_: str,
        payload: dict[str, object],
        suffix: str,
        *,
        leg_id: str | None = None,
    ) -> Event:
        return Event(
            conversation_id=state.conversation_id,
            type=type_,
            payload=payload,
            channel="chat",
            leg_id=leg_id,
            actor=COURIER,
            customer_id=state.customer_id,
            correlation_id=request.correlation_id,
            causation_id=request.event_id,
            idempotency_key=f"{request.event_id}:{suffix}",
            lineage=LINEAGE,
        )

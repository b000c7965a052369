"""Sends the one-time codes that agents ask for, and keeps the limits on them.

A bus consumer. For each ``action.requested`` of :data:`SEND_CODE` it checks
the limits (codes per conversation; codes and wrong codes per customer, across
all channels, from the customer's own stream), finds the phone or email on the
customer's record, and sends the pack's ``code_message`` through the
:class:`~threadline.notify.Notifiers`. It then records, on the conversation,
``action.completed`` with ``verification.challenged`` (a keyed digest of the
code, never the code) and, on the customer's stream, ``verification.code_sent``.

Delivery is at least once. The code and the challenge are derived from the
request's event id, the notifier is given that id as its idempotency key, and
the events are keyed on it and recorded only while the request is pending
(:class:`~threadline.engine.commands.Fulfil`): a redelivered request sends the
same code at most once more and records nothing twice. A code that cannot be
sent is ``action.failed`` and a message saying so.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

import structlog

from threadline.business.current import CurrentBusiness
from threadline.core.conversation import CLOSED_STATES, ConversationState
from threadline.core.errors import IllegalTransition
from threadline.core.events import Actor, Event, EventRecord, Lineage, utcnow
from threadline.core.ports import Bus
from threadline.engine.commands import Commands, Component, Fulfil, pending_request
from threadline.identity.codes import SEND_CODE, CodeKey, told
from threadline.identity.service import Identity
from threadline.notify import Notifier, Notifiers, NotifyFailure, Via
from threadline.systems import CustomerRecords

log = structlog.get_logger("threadline.identity")

GROUP: Final = "code-courier"
COURIER: Final = Actor("system", "codes")
SELF: Final = Component("code-courier")
LINEAGE: Final = Lineage("threadline.identity.codes", "1")
#: How far back a customer's wrong codes count against them.
FAILURE_WINDOW: Final = timedelta(days=1)


def _via(value: object) -> Via | None:
    return "phone" if value == "phone" else "email" if value == "email" else None


class CodeCourier:
    """Fulfils ``send_code`` requests on the conversations they were made on."""

    def __init__(
        self,
        commands: Commands,
        key: CodeKey,
        notifiers: Notifiers,
        current: CurrentBusiness,
        customers: CustomerRecords,
        identity: Identity,
    ) -> None:
        self.commands = commands
        self.conversations = commands.conversations
        self.key = key
        self.notifiers = notifiers
        #: The business served now: its code policy and words.
        self.current = current
        self.customers = customers
        self.identity = identity

    async def start(self, bus: Bus) -> None:
        await bus.subscribe(GROUP, self.handle, concurrency=16, types={"action.requested"})

    async def handle(self, record: EventRecord) -> None:
        pending = await pending_request(self.conversations, record, SEND_CODE)
        if pending is None:
            return  # another event, or sent already (a redelivery)
        request, action_id, state = pending.request, pending.action_id, pending.state
        arguments = request.payload["arguments"]
        customer_id, via = str(arguments["customer_id"]), _via(arguments.get("via"))
        if state.status in CLOSED_STATES:
            await self._failed(state, request, action_id, "conversation_closed", None)
            return
        refused = await self._refused(state, customer_id, utcnow())
        if refused is not None:
            await self._failed(state, request, action_id, refused, "limit")
            return
        customer = await self.customers.get(customer_id)
        to = None if customer is None else customer.phone if via == "phone" else customer.email
        notifier = None if via is None else self.notifiers.for_via(via)
        if via is None or to is None or notifier is None:
            await self._failed(state, request, action_id, "no_contact", "failed")
            return
        await self._send(state, request, action_id, customer_id, (via, to, notifier))

    async def _refused(
        self, state: ConversationState, customer_id: str, at: datetime
    ) -> str | None:
        """Why no code may be sent now, or None."""
        verification = self.current.business.pack.verification
        policy, lockout = verification.codes, verification.lockout
        if state.codes_sent >= policy.per_conversation:
            return "limit_conversation"
        sent = failed = wrong = 0  # wrong: any failed proof since a person last lifted a lockout
        for event in await self.identity.history(customer_id):
            age = at - event.occurred_at
            if event.type == "verification.code_sent" and age < timedelta(hours=1):
                sent += 1
            elif event.type == "verification.unlocked":
                failed = wrong = 0
            elif event.type == "verification.failed":
                failed += event.payload["method"] == "otp" and age < FAILURE_WINDOW
                wrong += age < timedelta(hours=lockout.hours)
        if sent >= policy.per_customer_hour:
            return "limit_customer"
        if failed >= policy.per_customer_failures or wrong >= lockout.customer_failures:
            return "locked_customer"
        return None

    async def _send(
        self,
        state: ConversationState,
        request: Event,
        action_id: str,
        customer_id: str,
        contact: tuple[Via, str, Notifier],
    ) -> None:
        via, to, notifier = contact
        business = self.current.business
        policy = business.pack.verification.codes
        challenge_id = f"otp-{request.event_id}"
        code = self.key.code_for(request.event_id, policy.length)
        # By the request's clock, the agent's: the same expiry on a redelivery.
        expires_at = request.occurred_at + timedelta(minutes=policy.minutes)
        text = business.say("code_message", voice=False, today=expires_at.date(), code=code,
                            minutes=policy.minutes)  # fmt: skip
        try:
            await notifier.send(to, text, key=request.event_id, subject=business.brand_name)
        except NotifyFailure as exc:
            log.warning("one-time code not sent", conversation_id=state.conversation_id,
                        via=via, reason=str(exc))  # fmt: skip
            await self._failed(state, request, action_id, "not_sent", "failed")
            return
        challenge = {
            "challenge_id": challenge_id, "customer_id": customer_id, "via": via,
            "to": told(via, to), "expires_at": expires_at.isoformat(),
            "digest": self.key.digest(state.conversation_id, challenge_id, code),
            "max_attempts": policy.attempts,
        }  # fmt: skip
        result = {"challenge_id": challenge_id, "via": via, "to": challenge["to"]}
        events = [
            self._event(state, request, "action.completed",
                        {"action_id": action_id, "result": result}, "done"),
            self._event(state, request, "verification.challenged", challenge, "challenge"),
        ]  # fmt: skip
        try:
            await self.commands.execute(Fulfil.of(action_id, events), SELF)
        except IllegalTransition:  # it closed just now: the code stays unused
            await self._failed(state, request, action_id, "conversation_closed", None)
            return
        await self.identity.record(
            customer_id, "verification.code_sent",
            {"challenge_id": challenge_id, "conversation_id": state.conversation_id, "via": via,
             "expires_at": expires_at.isoformat()},
            COURIER, key=f"conversation:{request.event_id}",
        )  # fmt: skip

    async def _failed(
        self,
        state: ConversationState,
        request: Event,
        action_id: str,
        error: str,
        reason: str | None,
    ) -> None:
        """``action.failed``, and (unless the conversation closed) a message saying why."""
        payload = {"action_id": action_id, "error": error, "retryable": False}
        events = [self._event(state, request, "action.failed", payload, "failed")]
        if reason is not None:
            business = self.current.business
            voice = request.channel == "voice"
            text = business.say("code_unsent", voice=voice, today=utcnow().date(), reason=reason)
            events.append(self._event(state, request, "message.sent", {"text": text}, "unsent"))
        try:
            await self.commands.execute(Fulfil.of(action_id, events), SELF)
        except IllegalTransition as exc:
            log.info("code request closed", conversation_id=state.conversation_id,
                     reason=str(exc))  # fmt: skip

    def _event(
        self,
        state: ConversationState,
        request: Event,
        type_: str,
        payload: dict[str, Any],
        suffix: str,
    ) -> Event:
        return Event(
            conversation_id=state.conversation_id,
            type=type_,
            payload=payload,
            channel=request.channel,
            leg_id=request.leg_id if request.leg_id in state.live_legs else None,
            actor=COURIER,
            customer_id=state.customer_id,
            correlation_id=request.correlation_id,
            causation_id=request.event_id,
            idempotency_key=f"{request.event_id}:{suffix}",
            lineage=LINEAGE,
        )

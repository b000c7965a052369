"""The voice adapter: a phone call's lifecycle as canonical events.

A call is one voice leg whose id is the provider's call id. Answering it
finds the caller's conversation (a number that matches a customer with an
open conversation continues it; anything else starts a new one), records
the leg, the caller id as an *unverified* phone identity (the bot's postcode
check verifies it), and the greeting that was said. Every event is keyed on
the call id, so a provider's retry records nothing twice. Everything is
written through :mod:`threadline.engine.commands` as the voice channel's
adapter principal.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import structlog

from threadline.channels.voice.telephony.directory import CallerDirectory
from threadline.core.errors import IllegalTransition, ValidationError
from threadline.core.events import Actor, Event, Lineage, new_id
from threadline.engine.commands import AppendEvents, Commands, EndLeg, channel_adapter
from threadline.identity.identifiers import phone as parse_phone

log = structlog.get_logger("threadline.voice")

LINEAGE: Final = Lineage("voice-twilio", "0.1.0")
GATEWAY: Final = Actor("system", "voice-gateway")
UNKNOWN_CALLER: Final = "caller-"
#: Who a caller's number belongs to (the directory, else the business's customer system).
Recognise = Callable[[str], Awaitable[str | None]]


def e164(caller: str) -> str | None:
    """The caller id in E.164, or None when it is not a phone number (anonymous, SIP)."""
    try:
        return parse_phone(caller).value
    except ValidationError:
        return None


@dataclass(frozen=True, slots=True)
class CallLeg:
    """A call as the conversation knows it."""

    call_id: str
    conversation_id: str
    customer_id: str
    caller: str | None
    continued: bool
    seq: int


class VoiceCalls:
    """Answers calls, ends their legs, and records what callers key in."""

    def __init__(
        self,
        commands: Commands,
        directory: CallerDirectory,
        recognise: Recognise,
        greeting: str,
        reopen_window: timedelta = timedelta(hours=72),
    ) -> None:
        self.commands = commands
        self.conversations = commands.conversations
        #: Who the voice channel writes as.
        self.principal = channel_adapter("voice", LINEAGE.producer)
        self.directory = directory
        self.recognise = recognise
        #: Said first on every call: the AI and recording disclosure (the pack's voice greeting).
        self.greeting = greeting
        #: The consent the greeting's disclosure gives by notice, given what the caller decided.
        self.notices: Callable[[Mapping[str, bool]], list[dict[str, Any]]] = lambda _: []
        #: A caller whose conversation closed this recently reopens it rather than starting anew.
        self.reopen_window = reopen_window
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        #: Calls handed to a human: their stream stopping does not end the leg.
        self.handed_over: set[str] = set()
        #: Calls whose media stream is connected to this process.
        self.streaming: set[str] = set()
        #: The base URL each call's webhook came in on (for whisper URLs).
        self.base_urls: dict[str, str] = {}

    def _event(
        self,
        call_id: str,
        conversation_id: str,
        customer_id: str,
        type_: str,
        payload: dict[str, object],
        actor: Actor | None = None,
        key: str | None = None,
    ) -> Event:
        return Event(
            conversation_id=conversation_id,
            type=type_,
            payload=payload,
            channel="voice",
            leg_id=call_id,
            actor=actor or Actor("customer", customer_id),
            customer_id=customer_id,
            idempotency_key=key or f"{call_id}:{type_}",
            lineage=LINEAGE,
        )

    async def answer(self, call_id: str, caller: str) -> CallLeg:
        """Record the call's leg on the caller's conversation (new or continued)."""
        # One answer at a time per call, so a retried webhook waits for the first.
        async with self._locks[call_id]:
            return await self._answer(call_id, caller)

    async def _answer(self, call_id: str, caller: str) -> CallLeg:
        phone = e164(caller) if caller else None
        known = self.directory.conversation_of(call_id)
        if known is not None:  # the provider retried the webhook
            state = await self.conversations.rehydrate(known)
            if state.customer_id is not None and call_id in state.legs:
                return CallLeg(call_id, known, state.customer_id, phone, True, state.seq)
        known_id = await self.recognise(phone) if phone else None
        customer_id = known_id or UNKNOWN_CALLER + new_id()
        if known_id is not None:
            # The directory names the candidate; the conversation's own state decides, since
            # the directory hears of a resolution only once the bus has delivered it.
            for _ in range(2):
                candidate = await self._continuable(known_id)
                if candidate is None:
                    break
                existing, reopen = candidate
                try:
                    return await self._record(
                        call_id, existing, customer_id, phone, new=False, reopen=reopen
                    )
                except IllegalTransition as exc:  # it closed (or opened) just now: look again
                    log.info(
                        "conversation changed before the call joined it",
                        conversation_id=existing,
                        reason=str(exc),
                    )
        return await self._record(call_id, new_id(), customer_id, phone, new=True)

    async def _continuable(self, customer_id: str) -> tuple[str, bool] | None:
        """The conversation a call from ``customer_id`` joins, and whether it reopens it."""
        now = datetime.now(UTC)
        existing = self.directory.open_conversation(customer_id) or (
            self.directory.recently_closed(customer_id, now, self.reopen_window)
        )
        if existing is None:
            return None
        state = await self.conversations.rehydrate(existing)
        if state.is_open:
            return existing, False
        if state.closed_at is None or now - datetime.fromisoformat(state.closed_at) > (
            self.reopen_window
        ):
            return None
        return existing, True

    async def _record(
        self,
        call_id: str,
        conversation_id: str,
        customer_id: str,
        phone: str | None,
        *,
        new: bool,
        reopen: bool = False,
    ) -> CallLeg:
        def event(type_: str, payload: dict[str, object], actor: Actor | None = None) -> Event:
            return self._event(call_id, conversation_id, customer_id, type_, payload, actor)

        events = [event("conversation.started", {"origin": "voice"})] if new else []
        if reopen:
            events.append(event("conversation.reopened", {"reason": "returning_caller"}))
        leg: dict[str, object] = {"leg_id": call_id, "channel": "voice"}
        if phone:
            leg["address"] = phone
        events.append(event("leg.started", leg))
        if phone:
            claim = {"kind": "phone", "value": phone, "verified": False, "method": "caller_id"}
            events.append(event("identity.linked", claim, GATEWAY))
        decided = {} if new else (await self.conversations.rehydrate(conversation_id)).consent
        for given in self.notices(decided):
            key = f"{call_id}:consent:{given['purpose']}"
            events.append(self._event(call_id, conversation_id, customer_id, "consent.granted",
                                      given, key=key))  # fmt: skip
        events.append(event("message.sent", {"text": self.greeting}, GATEWAY))
        executed = await self.commands.execute(AppendEvents.of(events), self.principal)
        assert executed.result is not None
        result = executed.result
        self.directory.remember(conversation_id, customer_id, call_id, result.positions[-1])
        log.info(
            "call answered",
            call_id=call_id,
            conversation_id=conversation_id,
            continued=not new,
            known_caller=not customer_id.startswith(UNKNOWN_CALLER),
        )
        return CallLeg(call_id, conversation_id, customer_id, phone, not new, result.last_seq)

    async def live_seq(self, call_id: str, conversation_id: str) -> int | None:
        """The conversation's seq if ``call_id`` is a live leg of it, else None."""
        state = await self.conversations.rehydrate(conversation_id)
        return state.seq if call_id in state.live_legs else None

    async def end(self, call_id: str, reason: str, key: str | None = None) -> bool:
        """End the call's leg with ``reason``; false if it is not live (or unknown)."""
        conversation_id = self.directory.conversation_of(call_id)
        if conversation_id is None:
            return False
        state = await self.conversations.rehydrate(conversation_id)
        if state.customer_id is None:
            return False
        command = EndLeg(conversation_id, key or f"{call_id}:leg.ended", call_id, "voice", reason,
                         Actor("customer", state.customer_id), LINEAGE)  # fmt: skip
        try:
            executed = await self.commands.execute(command, self.principal)
        except IllegalTransition:
            return False  # ended meanwhile by the stream or a status callback
        if executed.result is None:
            return False  # not live (ended meanwhile by the stream or a status callback)
        self.handed_over.discard(call_id)
        self.base_urls.pop(call_id, None)
        self._locks.pop(call_id, None)
        return not executed.duplicate

    async def keyed_in(
        self, call_id: str, conversation_id: str, customer_id: str, digits: str, key: str
    ) -> int:
        """Record digits the caller keyed in as their message; its seq."""
        event = self._event(
            call_id, conversation_id, customer_id, "message.received", {"text": digits}, key=key
        )
        executed = await self.commands.execute(AppendEvents.of([event]), self.principal)
        assert executed.result is not None
        return executed.result.seqs[0]

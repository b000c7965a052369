"""Warm transfer: when a human accepts a conversation that has a live call here,
the call is connected to them.

A bus consumer. On ``handoff.accepted`` for a conversation whose voice leg
streams to this process, it asks the provider to say the holding message to
the caller and dial the agent's configured number or SIP URI; when the agent
answers, the provider fetches ``/voice/twilio/whisper`` and the agent hears a
short summary before the two are bridged. The transfer is noted on the
conversation; the leg stays live (the caller is still on the phone).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import urlencode

import orjson
import structlog

from threadline.channels.voice.telephony.calls import GATEWAY, LINEAGE, VoiceCalls
from threadline.channels.voice.telephony.port import (
    CallControlFailed,
    DialTarget,
    TelephonyProvider,
    Transfer,
)
from threadline.core.errors import ThreadlineError
from threadline.core.events import Event, EventRecord, new_id
from threadline.core.ports import Bus, CheckpointStore
from threadline.engine.commands import AppendEvents
from threadline.engine.effects import idempotent
from threadline.routing.packet import HandoffPacket

log = structlog.get_logger("threadline.voice.control")

GROUP: Final = "voice-call-control"
WHISPER_PATH: Final = "/voice/twilio/whisper"
_REASONS: Final = {
    "customer_request": "asked for a person",
    "low_confidence": "the bot could not understand",
    "sensitive_intent": "a sensitive request",
    "tool_failure": "the bot's tools failed",
    "negative_sentiment": "the caller is unhappy",
    "transfer": "transferred by a colleague",
}


def whisper_text(packet: HandoffPacket, customer_name: str | None) -> str:
    """The summary an agent hears before being bridged: who, why, and what is known."""
    who = f"Call from {customer_name}" if customer_name else "Call from an unknown caller"
    checked = "verified" if packet.verification == "verified" else "not verified"
    parts = [f"{who}, {checked}."]
    if packet.reason_code:
        parts.append(f"Reason: {_REASONS.get(packet.reason_code, packet.reason_code)}.")
    if packet.intents:
        parts.append(f"Topic: {packet.intents[-1].intent.replace('_', ' ')}.")
    for slot in packet.slots:
        parts.append(f"{slot.name.replace('_', ' ').capitalize()}: {slot.value}.")
    return " ".join(parts)


class CallControl:
    """Transfers and hangs up calls through one telephony provider."""

    def __init__(
        self,
        calls: VoiceCalls,
        provider: TelephonyProvider,
        targets: Mapping[str, str],
        *,
        public_url: str | None = None,
    ) -> None:
        self.calls = calls
        self.conversations = calls.conversations
        self.provider = provider
        self.targets = {agent: DialTarget(address) for agent, address in targets.items()}
        self.public_url = public_url

    def aim(self, targets: Mapping[str, str]) -> None:
        """Dial these numbers or SIP addresses from the next transfer on (a reloaded pack)."""
        self.targets = {agent: DialTarget(address) for agent, address in targets.items()}

    async def start(self, bus: Bus, checkpoints: CheckpointStore) -> None:
        once = idempotent(checkpoints, GROUP, self._accepted)

        async def handle(record: EventRecord) -> None:
            if record.type == "handoff.accepted":
                await once(record)

        await bus.subscribe(GROUP, handle, types={"handoff.accepted"})

    async def _accepted(self, record: EventRecord, key: str) -> None:
        agent_id = str(orjson.loads(record.payload)["agent_id"])
        state = await self.conversations.rehydrate(record.conversation_id)
        for call_id, leg in state.live_legs.items():
            if leg.get("channel") == "voice" and call_id in self.calls.streaming:
                await self.transfer(call_id, record.conversation_id, agent_id, cause=record)

    def whisper_url(self, call_id: str, conversation_id: str, agent_id: str) -> str | None:
        base = self.public_url or self.calls.base_urls.get(call_id)
        if base is None:
            return None
        return f"{base}{WHISPER_PATH}?" + urlencode(
            {"conversation": conversation_id, "agent": agent_id}
        )

    async def transfer(
        self, call_id: str, conversation_id: str, agent_id: str, *, cause: EventRecord | None = None
    ) -> bool:
        """Warm-transfer the call to ``agent_id``; false (and noted) when it cannot be."""
        target = self.targets.get(agent_id)
        if target is None:
            await self._note(
                call_id,
                conversation_id,
                cause,
                f"Call not transferred: no phone or SIP address for {agent_id}",
            )
            return False
        whisper = self.whisper_url(call_id, conversation_id, agent_id)
        self.calls.handed_over.add(call_id)
        try:
            await self.provider.transfer(call_id, Transfer(target, whisper_url=whisper))
        except CallControlFailed as exc:
            self.calls.handed_over.discard(call_id)
            log.warning("transfer failed", call_id=call_id, agent_id=agent_id, reason=str(exc))
            await self._note(
                call_id, conversation_id, cause, f"Call transfer to {agent_id} failed: {exc}"
            )
            return False
        log.info("call transferred", call_id=call_id, agent_id=agent_id, target=target.kind)
        await self._note(
            call_id, conversation_id, cause, f"Call transferred to {agent_id} at {target.address}"
        )
        return True

    async def hang_up(self, call_id: str) -> None:
        """End the call at the provider; its status callback then ends the leg."""
        await self.provider.hang_up(call_id)

    async def _note(
        self, call_id: str, conversation_id: str, cause: EventRecord | None, text: str
    ) -> None:
        anchor = cause.event_id if cause is not None else new_id()
        event = Event(
            conversation_id=conversation_id,
            type="note.added",
            payload={"author_id": GATEWAY.id, "text": text},
            channel="voice",
            leg_id=call_id,
            actor=GATEWAY,
            customer_id=cause.customer_id if cause is not None else None,
            causation_id=cause.event_id if cause is not None else None,
            idempotency_key=f"{call_id}:transfer:{anchor}",
            lineage=LINEAGE,
        )
        try:
            await self.calls.commands.execute(AppendEvents.of([event]), self.calls.principal)
        except ThreadlineError as exc:
            log.warning("transfer note not recorded", call_id=call_id, reason=str(exc))

"""Visits: the in-person leg of a conversation, worked by a store associate.

Every write is recorded through :meth:`Conversations.record` as the associate
(``Actor("human", <associate>)``), after :func:`can_append` allows each event
on the state before it, with the caller's idempotency key, so a write replayed
by the associate app after a dropped network is recorded once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from threadline.channels.inperson.codes import LINEAGE
from threadline.core.conversation import CLOSED_STATES, ConversationState
from threadline.core.errors import DomainError, NotFound
from threadline.core.events import Actor, Event, new_id
from threadline.engine.conversations import Conversations
from threadline.security import Forbidden, Principal, can_append

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


class Visits:
    """Opens, works and closes in-person visits."""

    def __init__(self, conversations: Conversations) -> None:
        self.conversations = conversations

    async def state(self, conversation_id: str) -> ConversationState:
        state = await self.conversations.rehydrate(conversation_id)
        if state.seq == 0:
            raise NotFound(f"no conversation {conversation_id}")
        return state

    def live_visit(self, state: ConversationState, store_id: str | None) -> str | None:
        """The live visit at ``store_id`` on the conversation, if there is one."""
        for leg_id, leg in state.live_legs.items():
            if leg.get("channel") == CHANNEL and leg.get("location") == store_id:
                return leg_id
        return None

    def _event(self, caller: Principal, state: ConversationState, type_: str,
               payload: Mapping[str, Any], key: str, *, channel: str = CHANNEL,
               leg_id: str | None = None, actor: Actor | None = None) -> Event:  # fmt: skip
        return Event(
            conversation_id=state.conversation_id,
            type=type_,
            payload=dict(payload),
            channel=channel,
            leg_id=leg_id,
            actor=actor or Actor("human", caller.subject),
            customer_id=state.customer_id,
            idempotency_key=key,
            lineage=LINEAGE,
        )

    async def _write(
        self,
        caller: Principal,
        conversation_id: str,
        key: str | None,
        build: Callable[[ConversationState, str | None, str], list[Event]],
        leg_id: Callable[[ConversationState, str], str | None] | None = None,
    ) -> Recorded:
        """Record what ``build`` makes of the state, once per ``key``.

        A replayed key answers as the first request did, even when the state
        has moved on since (the visit ended, the conversation was resolved).
        """
        key = key or new_id()
        state = await self.state(conversation_id)
        live = self.live_visit(state, caller.store_id)
        leg = leg_id(state, key) if leg_id is not None else live
        if key in state.recent_keys:
            return await self._repeat(caller, state, key, leg)
        try:
            events = build(state, live, key)
            for event in events:
                if event.actor.kind == "human":
                    can_append(caller, state, event)
            result = await self.conversations.record(conversation_id, events)
        except (Forbidden, DomainError):  # IllegalTransition is a DomainError
            if not await self._was_recorded(conversation_id, key):
                raise
            return await self._repeat(caller, state, key, leg)
        return Recorded(conversation_id, leg, result.last_seq)

    async def _was_recorded(self, conversation_id: str, key: str) -> bool:
        timeline = await self.conversations.timeline(conversation_id)
        return any(e.idempotency_key == key for e in timeline)

    async def _repeat(
        self, caller: Principal, state: ConversationState, key: str, leg_id: str | None
    ) -> Recorded:
        """The first result of a request with ``key``: the seq of the last event it wrote."""
        timeline = await self.conversations.timeline(state.conversation_id)
        seqs = [e.seq for e in timeline
                if e.idempotency_key == key or e.idempotency_key.startswith(key + ":")]  # fmt: skip
        return Recorded(state.conversation_id, leg_id, max(seqs, default=state.seq))

    async def open(self, caller: Principal, conversation_id: str, key: str | None) -> Recorded:
        """Open a visit at the associate's store; a live one there is answered as is."""
        state = await self.state(conversation_id)
        live = self.live_visit(state, caller.store_id)
        if live is not None and (key is None or key not in state.recent_keys):
            return Recorded(conversation_id, live, state.seq)

        def build(state: ConversationState, live: str | None, key: str) -> list[Event]:
            leg_id = visit_id(conversation_id, key)
            start = {"leg_id": leg_id, "channel": CHANNEL, "location": caller.store_id}
            if state.status not in CLOSED_STATES:
                return [self._event(caller, state, "leg.started", start, key, leg_id=leg_id)]
            return [
                self._event(caller, state, "conversation.reopened", {"reason": "store_visit"},
                            key, actor=Actor("system", "inperson")),
                self._event(caller, state, "leg.started", start, f"{key}:visit", leg_id=leg_id),
            ]  # fmt: skip

        return await self._write(caller, conversation_id, key, build,
                                 lambda _state, key: visit_id(conversation_id, key))  # fmt: skip

    async def note(self, caller: Principal, conversation_id: str, text: str,
                   key: str | None) -> Recorded:  # fmt: skip
        def build(state: ConversationState, live: str | None, key: str) -> list[Event]:
            payload = {"author_id": caller.subject, "text": text}
            return [self._event(caller, state, "note.added", payload, key, leg_id=live)]

        return await self._write(caller, conversation_id, key, build)

    async def action(self, caller: Principal, conversation_id: str, action: str,
                     detail: str | None, key: str | None) -> Recorded:  # fmt: skip
        """An action done at the counter ("replaced device"): requested and completed at once."""

        def build(state: ConversationState, live: str | None, key: str) -> list[Event]:
            action_id = f"act-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
            arguments = {"detail": detail} if detail else {}
            return [
                self._event(caller, state, "action.requested",
                            {"action_id": action_id, "tool": action, "arguments": arguments},
                            key, leg_id=live),
                self._event(caller, state, "action.completed",
                            {"action_id": action_id, "result": {"done_by": caller.subject}},
                            f"{key}:done", leg_id=live),
            ]  # fmt: skip

        return await self._write(caller, conversation_id, key, build)

    def _end(self, caller: Principal, state: ConversationState, leg_id: str | None,
             reason: str, key: str) -> Event:  # fmt: skip
        if leg_id is None:
            raise Forbidden(f"{caller.kind} {caller.subject}: no live visit at "
                            f"{caller.store_id} on {state.conversation_id}")  # fmt: skip
        return self._event(caller, state, "leg.ended", {"leg_id": leg_id, "reason": reason},
                           key, leg_id=leg_id)  # fmt: skip

    async def end(self, caller: Principal, conversation_id: str, reason: str,
                  key: str | None) -> Recorded:  # fmt: skip
        def build(state: ConversationState, live: str | None, key: str) -> list[Event]:
            return [self._end(caller, state, live, reason, key)]

        return await self._write(caller, conversation_id, key, build)

    async def resolve(self, caller: Principal, conversation_id: str, outcome: str,
                      note: str | None, key: str | None) -> Recorded:  # fmt: skip
        """Resolve the conversation with an outcome and end the visit."""

        def build(state: ConversationState, live: str | None, key: str) -> list[Event]:
            payload: dict[str, Any] = {"outcome": outcome}
            if note:
                payload["note"] = note
            return [
                self._event(caller, state, "conversation.resolved", payload, key, leg_id=live),
                self._end(caller, state, live, "resolved", f"{key}:end"),
            ]

        return await self._write(caller, conversation_id, key, build)

    async def hand_back(self, caller: Principal, conversation_id: str, text: str, mode: str,
                        key: str | None) -> Recorded:  # fmt: skip
        """End the visit and follow up on chat: a message, then the bot or a wait."""

        def build(state: ConversationState, live: str | None, key: str) -> list[Event]:
            chat = next((i for i, leg in state.live_legs.items()
                         if leg.get("channel") == "chat"), None)  # fmt: skip
            events = [
                self._event(caller, state, "message.sent", {"text": text}, key,
                            channel="chat", leg_id=chat),
                self._end(caller, state, live, "handed_back", f"{key}:end"),
            ]  # fmt: skip
            if mode == "wait" and state.status != "waiting_on_customer":
                events.append(
                    self._event(
                        caller,
                        state,
                        "conversation.waiting",
                        {"reason": "digital_follow_up"},
                        f"{key}:wait",
                    )
                )
            return events

        return await self._write(caller, conversation_id, key, build)

"""Recording human agents' presence and capacity on their own streams.

Each agent has a stream ``agent:<agent_id>`` in the same log as the
conversations, so the router rebuilds presence by replaying it like
everything else. Presence is last-writer-wins: appends use no expected seq.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from threadline.core.events import Actor, Event, EventCodec, Lineage, new_id, utcnow
from threadline.core.ports import AppendResult, EventStore
from threadline.routing.queues import agent_stream

LINEAGE: Final = Lineage("threadline.routing", "0.1.0")


class AgentPresence:
    """Writes ``agent.presence_changed`` and ``agent.capacity_changed`` events."""

    def __init__(self, store: EventStore, codec: EventCodec | None = None) -> None:
        self._store = store
        self._codec = codec or EventCodec()

    async def set_presence(
        self,
        agent_id: str,
        presence: str,
        *,
        key: str = "",
        actor: Actor | None = None,
        occurred_at: datetime | None = None,
    ) -> AppendResult:
        """Make the agent available, away or offline; a repeated ``key`` writes nothing."""
        payload = {"agent_id": agent_id, "presence": presence}
        return await self._append("agent.presence_changed", payload, key, actor, occurred_at)

    async def set_capacity(
        self,
        agent_id: str,
        capacity: int,
        *,
        key: str = "",
        actor: Actor | None = None,
        occurred_at: datetime | None = None,
    ) -> AppendResult:
        """How many conversations the agent may hold at once from now on."""
        payload = {"agent_id": agent_id, "capacity": capacity}
        return await self._append("agent.capacity_changed", payload, key, actor, occurred_at)

    async def _append(
        self,
        type_: str,
        payload: dict[str, Any],
        key: str,
        actor: Actor | None,
        occurred_at: datetime | None,
    ) -> AppendResult:
        stream = agent_stream(payload["agent_id"])
        event = Event(
            conversation_id=stream,
            type=type_,
            payload=payload,
            actor=actor or Actor("human", payload["agent_id"]),
            occurred_at=occurred_at or utcnow(),
            idempotency_key=key or new_id(),
            lineage=LINEAGE,
        )
        return await self._store.append(stream, [self._codec.encode(event)])

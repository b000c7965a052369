"""The agent runtime: runs the bot on every customer turn it holds, once per turn.

A bus consumer. For each customer ``message.received`` or
``utterance.transcribed`` it rehydrates the conversation, lets the bot take
its turn, and records the turn's events. Turn ids are anchored on the
customer's event, so a redelivered event records nothing new.

Conversations are answered concurrently (each in order). A turn's tool calls
carry idempotency keys anchored on the customer's event too, so a turn taken
again after a crash asks the business's systems nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final

import structlog

from threadline.agents.protocol import Agent
from threadline.core.errors import ConflictError, IllegalTransition
from threadline.core.events import EventRecord, utcnow
from threadline.core.ports import Bus
from threadline.core.state import RECENT_KEYS, ConversationState
from threadline.engine.conversations import Conversations

log = structlog.get_logger("threadline.agents")

CUSTOMER_TURNS: Final = frozenset({"message.received", "utterance.transcribed"})
GROUP: Final = "bot"
#: Channels on which a returning customer is greeted with what is open (chat shows history).
GREETED_ON: Final = frozenset({"voice"})
#: Conversations answered at once; each still strictly in order.
CONCURRENCY: Final = 256


class BotRuntime:
    """Lets ``agent`` answer customer turns on conversations it holds."""

    def __init__(
        self,
        conversations: Conversations,
        agent: Agent,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.conversations = conversations
        self.agent = agent
        self.clock = clock

    def replace_agent(self, agent: Agent) -> None:
        """Answer the turns from now on with ``agent`` (a reloaded business pack)."""
        self.agent = agent

    async def start(self, bus: Bus) -> None:
        """Answer turns from the bus."""
        await bus.subscribe(GROUP, self.handle, concurrency=CONCURRENCY)

    async def handle(self, record: EventRecord) -> None:
        self.conversations.observe(record)  # written by another process, perhaps
        returning = record.type == "leg.started" and record.channel in GREETED_ON
        if not returning and (record.type not in CUSTOMER_TURNS or record.actor_kind != "customer"):
            return
        state = await self.conversations.current(record.conversation_id, record.seq)
        agent = self.agent
        if await self._answered(agent, record, state):
            return  # a redelivery
        if returning:
            turn = await agent.welcome_back(
                state, record.channel, self.clock(), leg_id=str(record.leg_id),
                anchor=record.event_id,
            )  # fmt: skip
        else:
            event = self.conversations.codec.decode(record)
            turn = await agent.take_turn(
                state,
                str(event.payload["text"]),
                record.channel,
                self.clock(),
                leg_id=record.leg_id,
                in_reply_to=record.event_id,
            )
        if not turn.events:
            return
        try:
            await self.conversations.record(record.conversation_id, list(turn.events))
        except (ConflictError, IllegalTransition) as exc:
            # The conversation moved on (a human took it, the customer left): stay silent.
            log.info("agent turn not recorded", conversation_id=record.conversation_id,
                     reason=str(exc))  # fmt: skip

    async def _answered(self, agent: Agent, record: EventRecord, state: ConversationState) -> bool:
        """Whether the agent has answered ``record`` already. The state remembers the keys
        of its last events; a turn older than those (delivered again from a checkpoint
        far behind) is looked up in the log: decided again on today's state, it could
        differ from the answer recorded then, and the store would refuse it forever."""
        key = f"{agent.id}/{record.event_id}/0"
        if key in state.recent_keys:
            return True
        if state.seq - record.seq < RECENT_KEYS:
            return False  # an answer would be among the keys the state remembers
        later = await self.conversations.store.read(record.conversation_id, record.seq + 1)
        return any(r.idempotency_key == key for r in later)

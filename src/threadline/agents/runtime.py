"""The agent runtime: runs the bot on every customer turn it holds, once per turn.

A bus consumer. For each customer ``message.received`` or
``utterance.transcribed`` it rehydrates the conversation, lets the bot take
its turn, and records the turn's events. The bot is a principal of its own
(:func:`~threadline.security.authz.automated_agent`): it reads only the
conversations the policy says it holds, and a turn is recorded only if the
policy allows it each event. Turn ids are anchored on the
customer's event, so a redelivered event records nothing new.

Conversations are answered concurrently (each in order). A turn's tool calls
carry idempotency keys anchored on the customer's event too, so a turn taken
again after a crash asks the business's systems nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Final

import structlog

from threadline.agents.approvals import DECISIONS
from threadline.agents.protocol import Agent
from threadline.core.errors import ConflictError, IllegalTransition
from threadline.core.events import Event, EventRecord, utcnow
from threadline.core.ports import Bus
from threadline.core.state import RECENT_KEYS, ConversationState
from threadline.engine.conversations import Conversations
from threadline.security.authz import (
    allows,
    automated_agent,
    can_append_each,
    can_read_conversation,
)
from threadline.security.errors import Forbidden
from threadline.security.principal import Principal

log = structlog.get_logger("threadline.agents")

CUSTOMER_TURNS: Final = frozenset({"message.received", "utterance.transcribed"})
GROUP: Final = "bot"
#: The group that hears barge-ins while turns are taken (apart: a turn holds its conversation).
INTERRUPTIONS: Final = "bot-interruptions"
#: Channels on which a returning customer is greeted with what is open (chat shows history).
GREETED_ON: Final = frozenset({"voice"})
#: Conversations answered at once; each still strictly in order.
CONCURRENCY: Final = 256


class _Live:
    """A turn in progress, as the agent sees it (:class:`LiveTurn`): what it records early
    is authorised and recorded like the rest of the turn; a barge-in marks it."""

    def __init__(self, runtime: BotRuntime, bot: Principal, conversation_id: str) -> None:
        self.runtime = runtime
        self.bot = bot
        self.conversation_id = conversation_id
        self.interrupted = False
        self.recorded = 0

    async def record(self, events: Sequence[Event]) -> bool:
        if not events:
            return True
        conversations = self.runtime.conversations
        state = await conversations.current(self.conversation_id)
        try:
            can_append_each(self.bot, [(state, event) for event in events])
            await conversations.record(self.conversation_id, list(events))
        except (Forbidden, ConflictError, IllegalTransition) as exc:
            log.info("agent turn not recorded", conversation_id=self.conversation_id,
                     reason=str(exc))  # fmt: skip
            return False
        self.recorded += len(events)
        return True


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
        #: Turns being taken, by conversation: a barge-in marks the one it interrupts.
        self.live: dict[str, _Live] = {}

    def replace_agent(self, agent: Agent) -> None:
        """Answer the turns from now on with ``agent`` (a reloaded business pack)."""
        self.agent = agent

    async def start(self, bus: Bus) -> None:
        """Answer turns from the bus, and hear barge-ins while a turn is being taken."""
        await bus.subscribe(GROUP, self.handle, concurrency=CONCURRENCY)
        await bus.subscribe(INTERRUPTIONS, self.interrupt, concurrency=CONCURRENCY,
                            types=("message.heard",))  # fmt: skip

    async def interrupt(self, record: EventRecord) -> None:
        """A reply the caller spoke over: the turn still generating it stops."""
        live = self.live.get(record.conversation_id)
        if live is None:
            return
        if not self.conversations.codec.decode(record).payload.get("complete", True):
            live.interrupted = True

    async def handle(self, record: EventRecord) -> None:
        self.conversations.observe(record)  # written by another process, perhaps
        returning = record.type == "leg.started" and record.channel in GREETED_ON
        withdrawn = record.type == "consent.revoked"
        customer_turn = record.type in CUSTOMER_TURNS and record.actor_kind == "customer"
        decided = record.type in DECISIONS
        if not (returning or withdrawn or customer_turn or decided):
            return
        state = await self.conversations.current(record.conversation_id, record.seq)
        agent = self.agent
        bot = automated_agent(agent.id)
        if not allows(can_read_conversation, bot, state):
            return  # not the bot's to read: a person holds it, or it is closed
        if await self._answered(agent, record, state):
            return  # a redelivery
        if not agent.may_process(state):
            # No consent to AI processing (withdrawn just now, or never given where the pack
            # asks for a yes): a person takes the conversation, the agent reads no further.
            turn = await agent.hand_over(state, record.channel, self.clock(),
                                         leg_id=record.leg_id, anchor=record.event_id)  # fmt: skip
        elif withdrawn:
            return  # another purpose: nothing for the agent to do
        elif decided:
            event = self.conversations.codec.decode(record)
            turn = await agent.settle(state, event, self.clock())
        elif returning:
            turn = await agent.welcome_back(
                state, record.channel, self.clock(), leg_id=str(record.leg_id),
                anchor=record.event_id,
            )  # fmt: skip
        else:
            event = self.conversations.codec.decode(record)
            live = self.live[record.conversation_id] = _Live(self, bot, record.conversation_id)
            try:
                turn = await agent.take_turn(
                    state,
                    str(event.payload["text"]),
                    record.channel,
                    self.clock(),
                    leg_id=record.leg_id,
                    in_reply_to=record.event_id,
                    live=live,
                )
            finally:
                if self.live.get(record.conversation_id) is live:
                    del self.live[record.conversation_id]
        if not turn.events:
            return
        try:
            can_append_each(bot, [(state, event) for event in turn.events])
        except Forbidden as exc:
            log.warning("agent turn refused", conversation_id=record.conversation_id,
                        reason=exc.reason)  # fmt: skip
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

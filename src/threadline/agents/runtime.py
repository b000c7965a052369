"""The agent runtime: runs the bot on every customer turn it holds, once per turn.

A bus consumer. For each customer ``message.received`` or
``utterance.transcribed`` it rehydrates the conversation, lets the bot take
its turn, and records the turn's events. Turn ids are anchored on the
customer's event, so a redelivered event records nothing new.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final

import structlog

from threadline.agents.bot import BOT_ID, NorthwindBot
from threadline.core.errors import ConflictError, IllegalTransition
from threadline.core.events import EventRecord, utcnow
from threadline.core.ports import Bus
from threadline.engine.conversations import Conversations

log = structlog.get_logger("threadline.agents")

CUSTOMER_TURNS: Final = frozenset({"message.received", "utterance.transcribed"})
GROUP: Final = "bot"


class BotRuntime:
    """Lets ``bot`` answer customer turns on conversations it holds."""

    def __init__(
        self,
        conversations: Conversations,
        bot: NorthwindBot,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.conversations = conversations
        self.bot = bot
        self.clock = clock

    async def start(self, bus: Bus) -> None:
        await bus.subscribe(GROUP, self.handle)

    async def handle(self, record: EventRecord) -> None:
        if record.type not in CUSTOMER_TURNS or record.actor_kind != "customer":
            return
        state = await self.conversations.rehydrate(record.conversation_id)
        if f"{BOT_ID}/{record.event_id}/0" in state.recent_keys:
            return  # answered already (a redelivery)
        event = self.conversations.codec.decode(record)
        turn = self.bot.take_turn(
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
            log.info("bot turn not recorded", conversation_id=record.conversation_id,
                     reason=str(exc))  # fmt: skip
            return
        self.bot = self.bot.with_business(turn.business)

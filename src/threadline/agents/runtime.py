"""The agent runtime: runs the bot on every customer turn it holds, once per turn.

A bus consumer. For each customer ``message.received`` or
``utterance.transcribed`` it rehydrates the conversation, lets the bot take
its turn, and records the turn's events. Turn ids are anchored on the
customer's event, so a redelivered event records nothing new.

Conversations are answered concurrently (each in order). A turn is decided
synchronously, and a booking it makes enters the shared book before the
runtime awaits anything, so two customers never get the same slot; a turn
that cannot be recorded takes its bookings back out.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final

import structlog

from threadline.agents.bookings import restore_bookings, with_bookings, without_bookings
from threadline.agents.bot import BOT_ID, NorthwindBot
from threadline.business import Business
from threadline.business.values import Appointment
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

    async def start(self, bus: Bus, *, restore: bool = True) -> None:
        """Restore the appointment book from the log, then answer turns from the bus."""
        if restore:
            business = await restore_bookings(
                self.conversations.store, self.conversations.codec, self.bot.business
            )
            self.bot = self.bot.with_business(business)
        await bus.subscribe(GROUP, self.handle, concurrency=CONCURRENCY)

    async def handle(self, record: EventRecord) -> None:
        self.conversations.observe(record)  # written by another process, perhaps
        returning = record.type == "leg.started" and record.channel in GREETED_ON
        if not returning and (record.type not in CUSTOMER_TURNS or record.actor_kind != "customer"):
            return
        state = await self.conversations.current(record.conversation_id, record.seq)
        if await self._answered(record, state):
            return  # a redelivery
        if returning:
            turn = self.bot.welcome_back(
                state, record.channel, self.clock(), leg_id=str(record.leg_id),
                anchor=record.event_id,
            )  # fmt: skip
        else:
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
        booked = _new_bookings(self.bot.business, turn.business)
        if booked:  # reserve before awaiting, so no concurrent turn can take the slot
            self.bot = self.bot.with_business(with_bookings(self.bot.business, booked))
        try:
            await self.conversations.record(record.conversation_id, list(turn.events))
        except (ConflictError, IllegalTransition) as exc:
            # The conversation moved on (a human took it, the customer left): stay silent.
            log.info("bot turn not recorded", conversation_id=record.conversation_id,
                     reason=str(exc))  # fmt: skip
            self._release(booked)
        except BaseException:
            self._release(booked)  # redelivered later, when it books again
            raise

    async def _answered(self, record: EventRecord, state: ConversationState) -> bool:
        """Whether the bot has answered ``record`` already. The state remembers the keys
        of its last events; a turn older than those (delivered again from a checkpoint
        far behind) is looked up in the log: decided again on today's state, it could
        differ from the answer recorded then, and the store would refuse it forever."""
        key = f"{BOT_ID}/{record.event_id}/0"
        if key in state.recent_keys:
            return True
        if state.seq - record.seq < RECENT_KEYS:
            return False  # an answer would be among the keys the state remembers
        later = await self.conversations.store.read(record.conversation_id, record.seq + 1)
        return any(r.idempotency_key == key for r in later)

    def _release(self, booked: list[Appointment]) -> None:
        if booked:
            ids = [a.id for a in booked]
            self.bot = self.bot.with_business(without_bookings(self.bot.business, ids))


def _new_bookings(before: Business, after: Business) -> list[Appointment]:
    known = {a.id for a in before.appointments}
    return [a for a in after.appointments if a.id not in known]

"""The in-person channel as the service runs it: codes, cards, visits, queue, courier.

:func:`inperson_channel` builds the parts once at start-up and starts the
courier that sends the check-in codes the bot or an agent asks for.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

from threadline.business.current import CurrentBusiness
from threadline.channels.inperson.cards import CheckinCards
from threadline.channels.inperson.codes import CheckinCodes
from threadline.channels.inperson.courier import CheckinCourier
from threadline.channels.inperson.queue import StoreQueue
from threadline.channels.inperson.visits import Visits
from threadline.core.ports import Bus, Storage
from threadline.engine.commands import Commands
from threadline.security import RevocationList, TokenKey
from threadline.settings import Settings

#: Check-in answers kept for retries, at most.
SEEN_CHECKINS: Final = 1000


class CheckinAnswers:
    """Check-ins answered by idempotency key, so a retried check-in finds its visit."""

    def __init__(self, limit: int = SEEN_CHECKINS) -> None:
        self._limit = limit
        self._answers: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def get(self, key: str) -> dict[str, Any] | None:
        return self._answers.get(key)

    def keep(self, key: str, answer: dict[str, Any]) -> None:
        self._answers[key] = answer
        while len(self._answers) > self._limit:
            self._answers.popitem(last=False)


@dataclass(frozen=True, slots=True)
class InPersonChannel:
    """What the in-person endpoints share, built once per service."""

    codes: CheckinCodes
    cards: CheckinCards
    visits: Visits
    queue: StoreQueue
    checkins: CheckinAnswers
    courier: CheckinCourier


async def inperson_channel(
    settings: Settings,
    store: Storage,
    bus: Bus,
    commands: Commands,
    current: CurrentBusiness,
    key: TokenKey,
    revocations: RevocationList,
) -> InPersonChannel:
    """The channel's parts, with the courier following ``bus``."""
    codes = CheckinCodes(
        key, store, revocations, issuer=settings.token_issuer, audience=settings.token_audience
    )
    cards = CheckinCards(key)
    courier = CheckinCourier(commands, codes, cards, current)
    await courier.start(bus)
    return InPersonChannel(
        codes=codes,
        cards=cards,
        visits=Visits(commands),
        queue=StoreQueue(store, commands.conversations.codec),
        checkins=CheckinAnswers(),
        courier=courier,
    )

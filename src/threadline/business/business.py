"""A loaded pack as the service uses it: typed look-ups, hours on a clock, compiled replies.

:class:`Business` is immutable. Reloading a pack builds a new one; parts that
hold the old one keep answering with it until they are handed the new one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

from threadline.business.behaviour import IntentSpec, Reply, ReplyForms
from threadline.business.hours import DAY_KEYS, Hours, WeeklyHours
from threadline.business.model import Location as LocationSpec
from threadline.business.model import OpeningHours, Pack, Person, Queue
from threadline.business.templates import LOCALE, Template, environment
from threadline.core.errors import NotFound

CHANNELS: Final = ("chat", "voice", "in_person")


def weekly(hours: OpeningHours) -> WeeklyHours:
    days = tuple(None if getattr(hours, d) is None else Hours.parse(getattr(hours, d))
                 for d in DAY_KEYS)  # fmt: skip
    exceptions = {
        day: None if span is None else Hours.parse(span) for day, span in hours.exceptions.items()
    }
    return WeeklyHours(days, exceptions)


@dataclass(frozen=True, slots=True)
class Location:
    """A place customers visit, with its hours on the location's own clock."""

    id: str
    name: str
    short_name: str
    address: str
    city: str
    timezone: ZoneInfo
    locale: str  # how its times read: en-US, en-GB
    aliases: tuple[str, ...]
    hours: WeeklyHours
    services: Mapping[str, int]  # service id -> slot minutes
    service_names: Mapping[str, str]  # service id -> what customers call it

    @classmethod
    def of(cls, spec: LocationSpec, default_zone: ZoneInfo, default_locale: str) -> Location:
        return cls(
            id=spec.id, name=spec.name, short_name=spec.short_name or spec.name,
            address=spec.address, city=spec.city,
            timezone=ZoneInfo(spec.timezone) if spec.timezone else default_zone,
            locale=spec.locale or default_locale,
            aliases=spec.aliases, hours=weekly(spec.hours),
            services={s.id: s.slot_minutes for s in spec.services},
            service_names={s.id: s.name for s in spec.services},
        )  # fmt: skip

    def to_vars(self) -> dict[str, Any]:
        """What a reply template sees of it."""
        return {"id": self.id, "name": self.name, "short_name": self.short_name,
                "address": self.address, "city": self.city,
                "week": self.hours.describe()}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ReplyTemplate:
    """A reply's chat form and voice form, compiled."""

    chat: Template
    voice: Template

    def render(self, voice: bool, variables: Mapping[str, Any]) -> str:
        return (self.voice if voice else self.chat).render(variables)


def compile_reply(reply: Reply, locale: str) -> ReplyTemplate:
    """``reply`` compiled; it says times in ``locale`` unless a render gives another."""
    env, defaults = _ENV, {LOCALE: locale}
    if isinstance(reply, ReplyForms):
        chat = Template(env, reply.chat, defaults)
        voice = Template(env, reply.voice, defaults) if reply.voice else chat
        return ReplyTemplate(chat, voice)
    one = Template(env, reply, defaults)
    return ReplyTemplate(one, one)


_ENV: Final = environment()


def _digest(files: tuple[Path, ...]) -> str:
    h = hashlib.sha256()
    for file in files:
        h.update(file.read_bytes() if file.exists() else b"")
    return h.hexdigest()[:12]


class Business:
    """One business, loaded from its pack."""

    def __init__(self, pack: Pack, root: Path, files: tuple[Path, ...] = ()) -> None:
        self.pack = pack
        self.root = root
        self.files = files
        self.timezone = ZoneInfo(pack.timezone)
        #: How the business's replies say times (a location may say them its own way).
        self.locale = pack.locale
        self.locations = tuple(Location.of(spec, self.timezone, self.locale)
                               for spec in pack.locations)  # fmt: skip
        self._locations = {loc.id: loc for loc in self.locations}
        #: What a reply template sees of each location (worked out once: replies are many).
        self.location_vars = {loc.id: loc.to_vars() for loc in self.locations}
        self._queues = {q.id: q for q in pack.queues}
        self._people = {p.id: p for p in pack.staff}
        self._replies = {name: compile_reply(r, self.locale) for name, r in pack.replies.items()}
        self._intent_replies = {
            (intent, name): compile_reply(r, self.locale)
            for intent, spec in pack.intents.items()
            for name, r in spec.replies.items()
        }
        self._knowledge = {k.id: compile_reply(k.answer, self.locale) for k in pack.knowledge}
        #: A short hash of the pack's files as they were read, to tell one version from the next.
        self.digest = _digest(files)

    @property
    def id(self) -> str:
        return self.pack.id

    @property
    def name(self) -> str:
        return self.pack.name

    # -- time -------------------------------------------------------------------------

    def local(self, moment: datetime) -> datetime:
        """``moment`` on the business's clock; naive datetimes are refused."""
        if moment.tzinfo is None:
            raise ValueError("a naive datetime has no place on the business's clock")
        return moment.astimezone(self.timezone)

    def today(self, now: datetime) -> date:
        return self.local(now).date()

    # -- places and people ----------------------------------------------------------------

    def location(self, location_id: str) -> Location | None:
        return self._locations.get(location_id)

    def require_location(self, location_id: str) -> Location:
        found = self._locations.get(location_id)
        if found is None:
            raise NotFound(f"no location {location_id!r}")
        return found

    @property
    def queues(self) -> tuple[Queue, ...]:
        return self.pack.queues

    def queue(self, queue_id: str) -> Queue | None:
        return self._queues.get(queue_id)

    @property
    def staff(self) -> tuple[Person, ...]:
        return self.pack.staff

    def person(self, person_id: str) -> Person | None:
        return self._people.get(person_id)

    def people(self, role: str) -> tuple[Person, ...]:
        return tuple(p for p in self.pack.staff if p.role == role)

    def associates_at(self, location_id: str) -> tuple[Person, ...]:
        return tuple(p for p in self.people("associate") if p.location == location_id)

    def transfer_targets(self) -> dict[str, str]:
        """Where a warm transfer dials each person who has a number or SIP address."""
        return {p.id: p.transfer_to for p in self.pack.staff if p.transfer_to}

    # -- words ----------------------------------------------------------------------------

    def text(self, kind: str, channel: str, locale: str | None = None) -> str | None:
        """The greeting or disclosure (``kind``) for ``channel``, in ``locale`` if the pack
        has it, else in the pack's own locale."""
        texts: Mapping[str, str] = getattr(getattr(self.pack, kind), channel)
        return texts.get(locale or self.pack.locale) or texts.get(self.pack.locale)

    @property
    def brand_name(self) -> str:
        return self.pack.brand.name if self.pack.brand else self.pack.name

    def intent(self, name: str) -> IntentSpec | None:
        return self.pack.intents.get(name)

    def reply(self, name: str, intent: str | None = None) -> ReplyTemplate:
        """The intent's own ``name`` reply if it has one, else the pack's."""
        if intent is not None:
            own = self._intent_replies.get((intent, name))
            if own is not None:
                return own
        found = self._replies.get(name)
        if found is None:
            raise KeyError(f"no reply {name!r}" + (f" for {intent}" if intent else ""))
        return found

    def say(self, name: str, *, voice: bool, today: date, **more: Any) -> str:
        """Reply ``name`` as the service says it outside a turn of the bot (a message it
        sends by itself): the common variables hold no customer and no slots."""
        values = {"voice": voice, "business": self.name, "today": today, "slots": {},
                  "customer": None, "locations": self.location_vars, **more}  # fmt: skip
        return self.reply(name).render(voice, values)

    def has_reply(self, name: str, intent: str | None = None) -> bool:
        return (intent, name) in self._intent_replies or name in self._replies

    def knowledge_answer(self, entry_id: str) -> ReplyTemplate:
        return self._knowledge[entry_id]

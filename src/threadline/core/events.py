"""The canonical event envelope and the codec between events and stored records.

An :class:`Event` is what producers and consumers see: the envelope of
DESIGN.md with a validated payload in its current version. An
:class:`EventRecord` is what the store keeps: the same envelope with the
payload as opaque bytes, so the store never needs to understand payloads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Final, Literal, NamedTuple

import orjson
from uuid_utils import uuid7

from threadline.core import payloads as _payloads  # noqa: F401  (registers the catalogue)
from threadline.core import stream_payloads as _stream_payloads  # noqa: F401
from threadline.core.catalogue import CATALOGUE, Catalogue
from threadline.core.errors import ValidationError

Channel = Literal["voice", "chat", "in_person", "sms", "system"]
ActorKind = Literal["customer", "bot", "human", "system"]
CHANNELS: Final = frozenset({"voice", "chat", "in_person", "sms", "system"})
#: The largest seq or log position a store holds (a signed 64-bit integer): a client's
#: "after" beyond it is refused as bad input, not passed to the database.
MAX_SEQ: Final = 2**63 - 1
ACTOR_KINDS: Final = frozenset({"customer", "bot", "human", "system"})


def new_id() -> str:
    """A fresh UUIDv7 (time-ordered) as a string."""
    return str(uuid7())


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it: a customer, a bot, a human agent or the system."""

    kind: str
    id: str

    def __post_init__(self) -> None:
        if self.kind not in ACTOR_KINDS:
            raise ValidationError(
                f"actor.kind must be one of {sorted(ACTOR_KINDS)}",
                [{"field": "actor.kind", "reason": f"unknown kind {self.kind!r}"}],
            )
        if not self.id:
            raise ValidationError("actor.id is empty", [{"field": "actor.id", "reason": "empty"}])


@dataclass(frozen=True, slots=True)
class Lineage:
    """What produced an event: adapter or agent name and version, model, policy; for a
    model-backed agent also the prompt's version and the feature flags the turn ran under."""

    producer: str
    version: str = "0"
    model: str | None = None
    policy: str | None = None
    prompt: str | None = None
    flags: str | None = None

    def to_dict(self) -> dict[str, str]:
        out = {"producer": self.producer, "version": self.version}
        if self.model is not None:
            out["model"] = self.model
        if self.policy is not None:
            out["policy"] = self.policy
        if self.prompt is not None:
            out["prompt"] = self.prompt
        if self.flags is not None:
            out["flags"] = self.flags
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> Lineage:
        return cls(
            data["producer"], data.get("version", "0"), data.get("model"), data.get("policy"),
            data.get("prompt"), data.get("flags"),
        )  # fmt: skip


SYSTEM: Final = Actor("system", "threadline")
CORE_LINEAGE: Final = Lineage("threadline", "0.1.0")


@dataclass(frozen=True, slots=True)
class Event:
    """A canonical event: the envelope and its payload in the current version.

    ``seq``, ``position`` and ``recorded_at`` are assigned by the store and are
    zero/None on an event that has not been appended yet.
    """

    conversation_id: str
    type: str
    payload: Mapping[str, Any]
    channel: str = "system"
    actor: Actor = SYSTEM
    version: int = 0
    event_id: str = field(default_factory=new_id)
    occurred_at: datetime = field(default_factory=utcnow)
    leg_id: str | None = None
    customer_id: str | None = None
    correlation_id: str = ""
    causation_id: str | None = None
    idempotency_key: str = ""
    lineage: Lineage = CORE_LINEAGE
    seq: int = 0
    position: int = 0
    recorded_at: datetime | None = None


class EventRecord(NamedTuple):
    """An event as the store keeps it: envelope plus opaque payload bytes.

    A named tuple rather than a dataclass: stores build tens of thousands of
    these per replay, and a tuple is the cheapest immutable value to build.
    """

    event_id: str
    conversation_id: str
    type: str
    version: int
    occurred_at: datetime
    channel: str
    leg_id: str | None
    actor_kind: str
    actor_id: str
    customer_id: str | None
    correlation_id: str
    causation_id: str | None
    idempotency_key: str
    lineage: bytes
    payload: bytes
    seq: int = 0
    position: int = 0
    recorded_at: datetime | None = None


_EVENT_FIELDS: Final = tuple(f.name for f in fields(Event))


def _event_builder() -> Callable[..., Event]:
    """A constructor for decoded events that skips the frozen-dataclass ``__init__``.

    Stored events were validated when written; replay builds them by slot, which
    is an order of magnitude cheaper than the checked, frozen ``__init__``.
    """
    names = ", ".join(_EVENT_FIELDS)
    body = "".join(f"    set_{n}(event, {n})\n" for n in _EVENT_FIELDS)
    namespace: dict[str, Any] = {f"set_{n}": getattr(Event, n).__set__ for n in _EVENT_FIELDS}
    namespace["new"] = object.__new__
    namespace["Event"] = Event
    exec(f"def build({names}):\n    event = new(Event)\n{body}    return event\n", namespace)
    build: Callable[..., Event] = namespace["build"]
    return build


_build_event: Final = _event_builder()


class EventCodec:
    """Validates events on the way in, upcasts them on the way out.

    ``encode`` refuses unknown types and versions and invalid payloads before
    anything reaches storage. ``decode`` trusts stored payloads (they were
    validated when written) and only runs the upcaster chain, which keeps
    replay fast.
    """

    def __init__(self, catalogue: Catalogue = CATALOGUE) -> None:
        self.catalogue = catalogue
        # Few distinct actors and producers recur across thousands of events.
        self._actors: dict[tuple[str, str], Actor] = {}
        self._lineages: dict[bytes, Lineage] = {}
        self._lineage_bytes: dict[Lineage, bytes] = {}

    def encode(self, event: Event) -> EventRecord:
        version = event.version or self.catalogue.current_version(event.type)
        payload = self.catalogue.validate(event.type, version, event.payload)
        if event.channel not in CHANNELS:
            raise ValidationError(
                f"channel must be one of {sorted(CHANNELS)}",
                [{"field": "channel", "reason": f"unknown channel {event.channel!r}"}],
            )
        if event.occurred_at.tzinfo is None:
            raise ValidationError(
                "occurred_at must be timezone-aware",
                [{"field": "occurred_at", "reason": "naive datetime"}],
            )
        lineage = self._lineage_bytes.get(event.lineage)
        if lineage is None:
            lineage = orjson.dumps(event.lineage.to_dict())
            if len(self._lineage_bytes) < 10_000:
                self._lineage_bytes[event.lineage] = lineage
        occurred = event.occurred_at
        return EventRecord(
            event_id=event.event_id,
            conversation_id=event.conversation_id,
            type=event.type,
            version=version,
            occurred_at=occurred if occurred.tzinfo is UTC else occurred.astimezone(UTC),
            channel=event.channel,
            leg_id=event.leg_id,
            actor_kind=event.actor.kind,
            actor_id=event.actor.id,
            customer_id=event.customer_id,
            correlation_id=event.correlation_id or event.conversation_id,
            causation_id=event.causation_id,
            idempotency_key=event.idempotency_key or event.event_id,
            lineage=lineage,
            payload=orjson.dumps(payload),
        )

    def decode(self, record: EventRecord) -> Event:
        payload: dict[str, Any] = orjson.loads(record.payload)
        version = record.version
        if version != self.catalogue.current_version(record.type):
            payload, version = self.catalogue.upcast(record.type, version, payload)
        actor_key = (record.actor_kind, record.actor_id)
        actor = self._actors.get(actor_key)
        if actor is None:
            actor = self._actors[actor_key] = Actor(*actor_key)
            if len(self._actors) > 10_000:
                self._actors.clear()
        lineage = self._lineages.get(record.lineage)
        if lineage is None:
            lineage = Lineage.from_dict(orjson.loads(record.lineage))
            self._lineages[record.lineage] = lineage
            if len(self._lineages) > 10_000:
                self._lineages.clear()
        # Field order of Event.
        return _build_event(
            record.conversation_id, record.type, payload, record.channel, actor, version,
            record.event_id, record.occurred_at, record.leg_id, record.customer_id,
            record.correlation_id, record.causation_id, record.idempotency_key, lineage,
            record.seq, record.position, record.recorded_at,
        )  # fmt: skip

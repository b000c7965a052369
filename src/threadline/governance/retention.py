"""Retention: personal data is kept only as long as the business's pack says.

Each rule of the pack's ``retention`` names a channel (or any), event types (or every
type holding personal data) and a number of days; the shortest rule that matches an
event decides. Past it, the event's personal fields are erased in place
(:meth:`~threadline.core.ports.EventStore.expire`): the event stays and reads
``[erased]``, so every stream still replays. Besides the rules, what a caller said on a
call whose recording they did not consent to is kept only while the conversation needs
it: once the conversation is closed, its transcripts are erased.

:meth:`Retention.plan` says what a run would erase (the dry-run report);
:meth:`Retention.run` erases it. A run erases nothing twice, so it may run as often as
wanted: the service runs it on a schedule, ``threadline retention run`` on demand.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Protocol, runtime_checkable

import structlog

from threadline.business import Business
from threadline.business.model import RetentionRule
from threadline.core.catalogue import ERASED
from threadline.core.errors import ConfigurationError
from threadline.core.events import Event, EventCodec, utcnow
from threadline.core.ports import Storage
from threadline.privacy.consent import RECORDING, allows

log = structlog.get_logger("threadline.governance")

#: What a caller said, kept only while the conversation needs it without their consent.
TRANSCRIPTS: Final = frozenset({"utterance.transcribed", "message.heard"})
CLOSING: Final = frozenset({"conversation.resolved", "conversation.abandoned"})
PAGE: Final = 1000
#: Why an event is erased when no rule of the pack says so.
UNRECORDED: Final = "no recording consent, conversation closed"


@runtime_checkable
class Expiring(Protocol):
    """A store that erases the personal fields of chosen events in place."""

    async def expire(self, conversation_id: str, seqs: Sequence[int]) -> int: ...


@dataclass
class RetentionReport:
    """What a run erased (or, dry, would erase): events per reason and type."""

    dry_run: bool
    at: datetime
    #: (conversation id, seq) of each event, by reason ("voice utterance.transcribed > 30
    #: days", or :data:`UNRECORDED`).
    events: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    types: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(len(found) for found in self.events.values())

    def lines(self) -> list[str]:
        verb = "would erase" if self.dry_run else "erased"
        out = [f"retention {verb} the personal data of {self.total} events"
               f" ({self.at.isoformat(timespec='seconds')})"]  # fmt: skip
        out += [f"  {len(found)} by {reason}" for reason, found in sorted(self.events.items())]
        return out


def _label(rule: RetentionRule) -> str:
    types = ", ".join(rule.types) if rule.types else "personal data"
    return f"{rule.channel} {types} > {rule.days} days"


def _personal(event: Event, codec: EventCodec) -> bool:
    """Whether the event still holds personal data (a field not yet erased)."""
    fields = codec.catalogue.pii_fields(event.type, event.version)
    return any(event.payload.get(name) not in (None, ERASED, {}, [], "") for name in fields)


class Retention:
    """Finds and erases the personal data the pack's retention rules let go."""

    def __init__(
        self,
        store: Storage,
        business: Callable[[], Business],
        codec: EventCodec | None = None,
        clock: Callable[[], datetime] = utcnow,
        on_expired: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.business = business
        self.codec = codec or EventCodec()
        self.clock = clock
        #: Told each conversation whose events were erased (the service forgets its state).
        self.on_expired = on_expired

    def _rule(self, rules: Iterable[RetentionRule], event: Event) -> RetentionRule | None:
        """The shortest rule that matches ``event``."""
        matching = [
            rule for rule in rules
            if rule.channel in ("any", event.channel)
            and (not rule.types or event.type in rule.types)
        ]  # fmt: skip
        return min(matching, key=lambda rule: rule.days, default=None)

    async def plan(self) -> RetentionReport:
        """What a run now would erase."""
        business = self.business()
        now = self.clock()
        report = RetentionReport(dry_run=True, at=now)
        rules = business.pack.retention
        # Per conversation: its consent so far, whether it is closed, its transcripts.
        consent: dict[str, dict[str, bool]] = defaultdict(dict)
        closed: dict[str, bool] = {}
        heard: dict[str, list[Event]] = defaultdict(list)
        after = 0
        while True:
            page = await self.store.read_all(after, PAGE)
            if not page:
                break
            after = page[-1].position
            for record in page:
                self._note(record, rules, now, report, consent, closed, heard)
        for conversation_id, events in heard.items():
            if not closed.get(conversation_id) or allows(
                business, consent[conversation_id], RECORDING
            ):
                continue
            for event in events:
                report.events.setdefault(UNRECORDED, []).append((conversation_id, event.seq))
                report.types[event.type] += 1
        return report

    def _note(
        self,
        record: Any,
        rules: list[RetentionRule],
        now: datetime,
        report: RetentionReport,
        consent: dict[str, dict[str, bool]],
        closed: dict[str, bool],
        heard: dict[str, list[Event]],
    ) -> None:
        event = self.codec.decode(record)
        cid = event.conversation_id
        if event.type == "consent.granted":
            consent[cid][str(event.payload["purpose"])] = True
        elif event.type == "consent.revoked":
            consent[cid][str(event.payload["purpose"])] = False
        elif event.type in CLOSING:
            closed[cid] = True
        elif event.type == "conversation.reopened":
            closed[cid] = False
        if not self.codec.catalogue.pii_fields(event.type, event.version):
            return
        if not _personal(event, self.codec):
            return
        rule = self._rule(rules, event)
        if rule is not None and event.occurred_at < now - timedelta(days=rule.days):
            report.events.setdefault(_label(rule), []).append((cid, event.seq))
            report.types[event.type] += 1
        elif event.type in TRANSCRIPTS and event.channel == "voice":
            heard[cid].append(event)

    async def run(self) -> RetentionReport:
        """Erase what :meth:`plan` finds; the report of what was erased."""
        report = await self.plan()
        by_conversation: dict[str, list[int]] = defaultdict(list)
        for found in report.events.values():
            for conversation_id, seq in found:
                by_conversation[conversation_id].append(seq)
        store = self.store
        if not isinstance(store, Expiring):
            raise ConfigurationError(f"{type(store).__name__} cannot erase events in place")
        for conversation_id, seqs in sorted(by_conversation.items()):
            await store.expire(conversation_id, sorted(set(seqs)))
            if self.on_expired is not None:
                self.on_expired(conversation_id)
        report.dry_run = False
        return report


async def run_on_schedule(
    retention: Retention, every: timedelta, first_after: timedelta = timedelta(minutes=1)
) -> None:
    """Run ``retention`` ``first_after`` start-up (not while the service starts), then every
    ``every``, until cancelled; a failed run is logged and tried again at the next turn,
    never the end of the schedule."""
    await asyncio.sleep(first_after.total_seconds())
    while True:
        try:
            report = await retention.run()
            if report.total:
                log.info("retention erased personal data", events=report.total,
                         types=dict(report.types))  # fmt: skip
        except Exception:  # the next turn tries again; the service goes on
            log.exception("retention run failed")
        await asyncio.sleep(every.total_seconds())


def add_retention_parser(commands: Any) -> None:
    retention = commands.add_parser(
        "retention", help="erase the personal data the business pack's retention lets go"
    )
    actions = retention.add_subparsers(dest="retention_command", required=True)
    run = actions.add_parser("run", help="erase it now (as the service does on a schedule)")
    run.add_argument(
        "--dry-run", action="store_true", help="say what would be erased, erase nothing"
    )


async def run_retention_command(args: argparse.Namespace) -> None:
    """``threadline retention run [--dry-run]`` on the configured store and business."""
    from threadline.business import load_configured
    from threadline.security.keys import key_from_settings
    from threadline.security.master_key import key_provider_from_settings
    from threadline.settings import load_settings
    from threadline.store import open_store

    settings = load_settings()
    business = load_configured(settings.business)
    keys = key_provider_from_settings(settings, key_from_settings(settings))
    store = await open_store(settings.store, keys=keys)
    try:
        retention = Retention(store, lambda: business)
        report = await (retention.plan() if args.dry_run else retention.run())
    finally:
        await store.close()
    for line in report.lines():
        print(line)

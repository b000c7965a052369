"""The service's audit part: records privileged actions and signs checkpoints.

:meth:`AuditTrail.record` appends one entry and, when its seq is a multiple of
``checkpoint_every``, signs a checkpoint of it. Before signing, the entries
since the last good checkpoint are checked to lead to the hash about to be
signed, so a checkpoint never vouches for a trail someone has rewritten. The
append is the backend's (a writer thread on SQLite, the pool on PostgreSQL):
nothing here blocks the event loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final

import structlog

from threadline.audit.actions import conversation_read, policy_changed
from threadline.audit.chain import GENESIS, Checkpoint, Head, StoredEntry
from threadline.audit.entry import AuditEntry
from threadline.audit.keys import AuditKey, audit_key_from_settings
from threadline.audit.log import AuditLog, open_audit_log
from threadline.audit.verify import Report, Verification, extends
from threadline.core.errors import ConfigurationError, DomainError, ThreadlineError
from threadline.core.ports import EventStore
from threadline.security.keys import TokenKey
from threadline.security.policy import POLICY_VERSION, policy_files
from threadline.security.principal import Principal
from threadline.settings import Settings

log = structlog.get_logger("threadline.audit")
#: Rows read at a time while verifying.
PAGE: Final = 1000


class BrokenTrail(ThreadlineError):
    """The audit trail does not verify; ``report`` says at which entry and why."""

    def __init__(self, report: Report) -> None:
        super().__init__(report.line())
        self.report = report


class AuditTrail:
    """Records entries in an :class:`AuditLog`, signs checkpoints with an :class:`AuditKey`."""

    def __init__(self, log: AuditLog, key: AuditKey, *, checkpoint_every: int = 100) -> None:
        if checkpoint_every < 1:
            raise ConfigurationError("checkpoint_every must be at least 1")
        self.log = log
        self.key = key
        self.checkpoint_every = checkpoint_every
        self._anchor: Checkpoint | None = None  # the last checkpoint known good
        self._policy_noted = False

    @classmethod
    def open(
        cls, settings: Settings, store: EventStore, token_key: TokenKey | None = None
    ) -> AuditTrail:
        """The trail in ``store``'s database, with the configured key, able to sign."""
        key = audit_key_from_settings(settings, token_key)
        if not key.can_sign:
            raise ConfigurationError(
                "THREADLINE_AUDIT_KEY_FILE holds a public key: recording signs checkpoints and"
                " needs the private key (a public key is enough for `threadline audit verify`)"
            )
        return cls(open_audit_log(store), key, checkpoint_every=settings.audit_checkpoint_every)

    async def note_policy(self) -> StoredEntry | None:
        """Record a ``policy.changed`` entry if the trail's last entry was taken under other
        authorization policies than this process's; once per process (the service does it
        as it starts, and the first entry any process records does it first)."""
        if self._policy_noted:
            return None
        self._policy_noted = True
        head = await self.log.head()
        if head.seq == 0:
            return None  # a new trail: its entries say which policy they were taken under
        (last,) = await self.log.read(head.seq, 1)
        previous = last.entry.policy
        if previous == POLICY_VERSION:
            return None
        log.info("authorization policy changed", previous=previous, policy=POLICY_VERSION)
        return await self._append(policy_changed(previous, policy_files()))

    async def record(self, entry: AuditEntry) -> StoredEntry:
        """Append ``entry``; durable when this returns. Signs a checkpoint every N entries."""
        await self.note_policy()
        return await self._append(entry)

    async def _append(self, entry: AuditEntry) -> StoredEntry:
        (row,) = await self.log.append([entry])
        if row.seq % self.checkpoint_every == 0:
            try:
                await self._sign(Head(row.seq, row.hash))
            except BrokenTrail as exc:  # recorded all the same; `audit verify` will say it too
                log.error("audit checkpoint refused: the trail is broken", problem=str(exc))
        return row

    async def conversation_read(self, caller: Principal, conversation_id: str, view: str) -> None:
        """Record that staff read the conversation's ``view``; nothing for anyone else."""
        entry = conversation_read(caller, conversation_id, view)
        if entry is not None:
            await self.record(entry)

    async def checkpoint(self) -> Checkpoint:
        """Sign and keep a checkpoint of the head now (BrokenTrail if the entries since the
        last good checkpoint do not lead to it)."""
        head = await self.log.head()
        if head.seq == 0:
            raise DomainError("the audit trail is empty: there is nothing to checkpoint")
        return await self._sign(head)

    async def _sign(self, head: Head) -> Checkpoint:
        anchor = await self._anchor_at_most(head.seq)
        if anchor is not None and anchor.seq == head.seq and anchor.hash == head.hash:
            return anchor
        start = Head(anchor.seq, anchor.hash) if anchor is not None else Head(0, GENESIS)
        walk = Verification(self.key, start=start)
        await self._feed(walk, start.seq + 1, head.seq)
        report = walk.finish(head)
        if not report.ok:
            raise BrokenTrail(report)
        signed = self.key.sign(head.seq, head.hash, datetime.now(UTC))
        kept = await self.log.add_checkpoint(signed)
        if self.key.signed(kept) and kept.hash == head.hash:
            self._anchor = kept
        return kept

    async def _anchor_at_most(self, seq: int) -> Checkpoint | None:
        if self._anchor is not None and self._anchor.seq <= seq:
            return self._anchor
        good = [c for c in await self.log.checkpoints() if c.seq <= seq and self.key.signed(c)]
        return good[-1] if good else None

    async def _feed(self, walk: Verification, from_seq: int, through: int | None) -> None:
        seq = from_seq
        while through is None or seq <= through:
            limit = PAGE if through is None else min(PAGE, through - seq + 1)
            rows = await self.log.read(seq, limit)
            if not rows or not walk.feed(rows):
                return
            seq = rows[-1].seq + 1

    async def verify(self, trusted: Iterable[Checkpoint] = ()) -> Report:
        """Check the whole trail: every entry, every stored checkpoint, the recorded head,
        and the ``trusted`` checkpoints kept outside the database."""
        head = await self.log.head()
        walk = Verification(self.key, await self.log.checkpoints(), trusted=trusted)
        await self._feed(walk, 1, None)
        return walk.finish(head)

    async def extends(self, earlier: Checkpoint, later: Checkpoint) -> Report:
        """Whether ``later`` extends ``earlier`` on this trail (:func:`~.verify.extends`)."""
        between: list[StoredEntry] = []
        seq = earlier.seq + 1
        while seq <= later.seq:
            rows = await self.log.read(seq, min(PAGE, later.seq - seq + 1))
            if not rows:
                break
            between += rows
            seq = rows[-1].seq + 1
        return extends(earlier, later, between, self.key)

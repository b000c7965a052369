"""The audit-log contract: every backend subclasses :class:`AuditLogContract`.

A subclass provides the fixture ``backend``: an :class:`AuditBackend` that opens
fresh logs, opens a second log on the same database (as another process
would), reopens one after a restart, and runs raw SQL (``?`` placeholders) on
a log's database the way someone with write access to it could, to tamper.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from datetime import timedelta
from typing import Any

import pytest

from threadline.audit import (
    GENESIS,
    POLICY_VERSION,
    AuditEntry,
    AuditKey,
    AuditLog,
    AuditTrail,
    BrokenTrail,
    Head,
    chain_hash,
    extends,
    subject,
)


class AuditBackend(ABC):
    """What a contract subclass provides for its backend."""

    @abstractmethod
    async def fresh(self) -> AuditLog:
        """A log in a new, empty database."""

    @abstractmethod
    async def another(self, log: AuditLog) -> AuditLog:
        """A second log on ``log``'s database, opened as another process would."""

    @abstractmethod
    async def reopen(self, log: AuditLog) -> AuditLog:
        """Close ``log``'s store and open its database again."""

    @abstractmethod
    async def execute(self, log: AuditLog, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run raw SQL (``?`` placeholders) on ``log``'s database, outside the log."""


def read_by(n: int, who: str = "staff-1") -> AuditEntry:
    return AuditEntry(
        action="conversation.read", subject=subject("conversation", f"conv-{n}"),
        actor_kind="supervisor", actor_id=who, purpose="supervision",
        details={"view": "events", "token_id": f"tok-{n}"},
    )  # fmt: skip


async def filled(
    log: AuditLog, count: int, every: int = 5, key: AuditKey | None = None
) -> AuditTrail:
    """A trail on ``log`` holding ``count`` staff reads, checkpointed every ``every``."""
    trail = AuditTrail(log, key or AuditKey.generate(), checkpoint_every=every)
    for n in range(1, count + 1):
        await trail.record(read_by(n))
    return trail


async def rewrite(backend: AuditBackend, log: AuditLog, seq: int, who: str) -> None:
    """Change entry ``seq`` to another valid entry and recompute every hash after it and
    the head: what someone who can write the tables and knows the scheme would do."""
    rows = await log.read()
    previous = GENESIS if seq == 1 else rows[seq - 2].hash
    for row in rows[seq - 1 :]:
        data = row.data if row.seq != seq else read_by(seq, who).numbered(seq).to_bytes()
        previous = chain_hash(previous, data)
        await backend.execute(log, "UPDATE audit_entries SET entry = ?, hash = ? WHERE seq = ?",
                              data, previous, row.seq)  # fmt: skip
    await backend.execute(log, "UPDATE audit_head SET seq = ?, hash = ?", rows[-1].seq, previous)


def flipped(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


class AuditLogContract:
    """Behaviour every AuditLog backend must show, alone and through an AuditTrail."""

    # -- the chain ------------------------------------------------------------------

    async def test_appends_are_numbered_from_one_and_chained_over_their_bytes(
        self, backend: AuditBackend
    ) -> None:
        log = await backend.fresh()
        assert await log.head() == Head(0, GENESIS)
        made = [read_by(1), read_by(2), read_by(3)]
        first = await log.append(made[:1])
        rest = await log.append(made[1:])
        rows = await log.read()
        assert rows == first + rest and [r.seq for r in rows] == [1, 2, 3]
        previous = GENESIS
        for n, row in enumerate(rows, start=1):
            assert row.data == made[n - 1].numbered(n).to_bytes()
            previous = chain_hash(previous, row.data)
            assert row.hash == previous
            assert row.entry.seq == n and row.entry.policy == POLICY_VERSION
        assert await log.head() == Head(3, previous)

    async def test_reads_start_at_a_seq_and_stop_at_a_limit(self, backend: AuditBackend) -> None:
        log = await backend.fresh()
        await log.append([read_by(n) for n in range(1, 8)])
        assert [r.seq for r in await log.read(3, 2)] == [3, 4]
        assert [r.seq for r in await log.read(6)] == [6, 7]
        assert await log.read(8) == []

    async def test_the_trail_goes_on_after_a_restart(self, backend: AuditBackend) -> None:
        log = await backend.fresh()
        before = await log.append([read_by(1), read_by(2)])
        log = await backend.reopen(log)
        assert await log.read() == before
        (third,) = await log.append([read_by(3)])
        assert third.seq == 3 and third.hash == chain_hash(before[-1].hash, third.data)

    async def test_concurrent_appenders_in_two_processes_never_fork_the_chain(
        self, backend: AuditBackend
    ) -> None:
        log = await backend.fresh()
        other = await backend.another(log)
        key = AuditKey.generate()
        trails = [AuditTrail(each, key, checkpoint_every=7) for each in (log, other)]
        rows = await asyncio.gather(*(trails[n % 2].record(read_by(n)) for n in range(50)))
        assert sorted(r.seq for r in rows) == list(range(1, 51))
        report = await trails[0].verify()
        assert report.ok, report.line()
        assert (report.entries, report.checkpoints) == (50, 7)
        assert {r.entry.actor_id for r in await log.read()} == {"staff-1"}

    # -- checkpoints ---------------------------------------------------------------------

    async def test_a_checkpoint_is_signed_every_n_entries(self, backend: AuditBackend) -> None:
        trail = await filled(await backend.fresh(), 12, every=5)
        kept = await trail.log.checkpoints()
        assert [c.seq for c in kept] == [5, 10]
        rows = await trail.log.read()
        assert all(trail.key.signed(c) and c.hash == rows[c.seq - 1].hash for c in kept)
        report = await trail.verify()
        assert report.ok and (report.entries, report.checkpoints, report.head_seq) == (12, 2, 12)
        assert report.head == rows[-1].hash

    async def test_a_checkpoint_on_demand_signs_the_head_once(self, backend: AuditBackend) -> None:
        trail = await filled(await backend.fresh(), 3, every=100)
        first = await trail.checkpoint()
        again = await trail.checkpoint()
        assert first == again and first.seq == 3 and trail.key.signed(first)
        assert await trail.log.checkpoints() == [first]
        later = trail.key.sign(3, first.hash, first.at + timedelta(seconds=1))
        assert await trail.log.add_checkpoint(later) == first

    async def test_an_empty_trail_verifies_and_has_nothing_to_checkpoint(
        self, backend: AuditBackend
    ) -> None:
        trail = AuditTrail(await backend.fresh(), AuditKey.generate())
        report = await trail.verify()
        assert report.ok and (report.entries, report.head) == (0, GENESIS)
        with pytest.raises(Exception, match="nothing to checkpoint"):
            await trail.checkpoint()

    async def test_a_later_checkpoint_extends_an_earlier_one(self, backend: AuditBackend) -> None:
        trail = await filled(await backend.fresh(), 4, every=100)
        earlier = await trail.checkpoint()
        for n in range(5, 10):
            await trail.record(read_by(n))
        later = await trail.checkpoint()
        proof = await trail.extends(earlier, later)
        assert proof.ok and proof.entries == 5
        assert (await trail.extends(earlier, earlier)).ok

    async def test_a_checkpoint_of_a_forked_trail_does_not_extend(
        self, backend: AuditBackend
    ) -> None:
        key = AuditKey.generate()
        trail = await filled(await backend.fresh(), 4, every=100, key=key)
        earlier = await trail.checkpoint()
        fork = AuditTrail(await backend.fresh(), key, checkpoint_every=100)
        for n in range(1, 10):  # the same entries, but entry 2 says someone else read
            await fork.record(read_by(n, who="staff-2" if n == 2 else "staff-1"))
        forked = await fork.checkpoint()
        proof = extends(earlier, forked, await fork.log.read(), key)
        assert not proof.ok and proof.broken_at == 5
        assert "forked" in proof.reason
        assert not (await trail.verify(trusted=[forked])).ok

    # -- tampering with the stored rows -------------------------------------------------

    async def test_a_flipped_byte_in_an_entry_is_found_at_that_entry(
        self, backend: AuditBackend
    ) -> None:
        trail = await filled(await backend.fresh(), 8)
        row = (await trail.log.read(6, 1))[0]
        at = row.data.index(b"staff-1") + 2
        await backend.execute(trail.log, "UPDATE audit_entries SET entry = ? WHERE seq = ?",
                              flipped(row.data, at), 6)  # fmt: skip
        report = await trail.verify()
        assert not report.ok and report.broken_at == 6
        assert "altered" in report.reason

    async def test_a_flipped_byte_in_a_stored_hash_is_found_at_that_entry(
        self, backend: AuditBackend
    ) -> None:
        trail = await filled(await backend.fresh(), 8)
        row = (await trail.log.read(3, 1))[0]
        await backend.execute(trail.log, "UPDATE audit_entries SET hash = ? WHERE seq = ?",
                              flipped(row.hash, 0), 3)  # fmt: skip
        report = await trail.verify()
        assert (report.ok, report.broken_at) == (False, 3)

    async def test_two_swapped_entries_are_found(self, backend: AuditBackend) -> None:
        trail = await filled(await backend.fresh(), 8)
        third, fourth = await trail.log.read(3, 2)
        for seq, row in ((3, fourth), (4, third)):
            await backend.execute(trail.log, "UPDATE audit_entries SET entry = ?, hash = ?"
                                  " WHERE seq = ?", row.data, row.hash, seq)  # fmt: skip
        report = await trail.verify()
        assert (report.ok, report.broken_at) == (False, 3)
        assert "reordered" in report.reason

    async def test_a_deleted_entry_is_found(self, backend: AuditBackend) -> None:
        trail = await filled(await backend.fresh(), 8)
        await backend.execute(trail.log, "DELETE FROM audit_entries WHERE seq = ?", 4)
        report = await trail.verify()
        assert (report.ok, report.broken_at) == (False, 4)
        assert "missing" in report.reason

    async def test_a_deletion_closed_up_by_renumbering_is_found(
        self, backend: AuditBackend
    ) -> None:
        trail = await filled(await backend.fresh(), 8)
        await backend.execute(trail.log, "DELETE FROM audit_entries WHERE seq = ?", 4)
        for seq in range(5, 9):
            await backend.execute(trail.log, "UPDATE audit_entries SET seq = ? WHERE seq = ?",
                                  seq - 1, seq)  # fmt: skip
        report = await trail.verify()
        assert (report.ok, report.broken_at) == (False, 4)

    async def test_a_rewrite_with_every_hash_recomputed_is_caught_by_a_checkpoint(
        self, backend: AuditBackend
    ) -> None:
        trail = await filled(await backend.fresh(), 8, every=5)
        await rewrite(backend, trail.log, 2, who="staff-2")
        report = await trail.verify()
        assert (report.ok, report.broken_at) == (False, 5)
        assert "1..5 was rewritten" in report.reason

    async def test_no_checkpoint_is_signed_over_a_broken_trail(self, backend: AuditBackend) -> None:
        trail = await filled(await backend.fresh(), 8, every=5)
        row = (await trail.log.read(7, 1))[0]
        await backend.execute(trail.log, "UPDATE audit_entries SET entry = ? WHERE seq = ?",
                              flipped(row.data, row.data.index(b"staff-1")), 7)  # fmt: skip
        with pytest.raises(BrokenTrail, match="broken at entry 7"):
            await trail.checkpoint()
        assert [c.seq for c in await trail.log.checkpoints()] == [5]

    async def test_entries_cut_from_the_end_are_found_from_the_head(
        self, backend: AuditBackend
    ) -> None:
        trail = await filled(await backend.fresh(), 8, every=5)
        await backend.execute(trail.log, "DELETE FROM audit_entries WHERE seq > ?", 6)
        report = await trail.verify()
        assert (report.ok, report.broken_at) == (False, 7)
        assert "removed from its end" in report.reason

    async def test_a_cut_with_the_head_rewound_is_found_by_a_checkpoint_kept_outside(
        self, backend: AuditBackend
    ) -> None:
        trail = await filled(await backend.fresh(), 8, every=5)
        kept_outside = await trail.checkpoint()
        sixth = (await trail.log.read(6, 1))[0]
        await backend.execute(trail.log, "DELETE FROM audit_entries WHERE seq > ?", 6)
        await backend.execute(trail.log, "DELETE FROM audit_checkpoints WHERE seq > ?", 6)
        await backend.execute(trail.log, "UPDATE audit_head SET seq = ?, hash = ?", 6, sixth.hash)
        assert (await trail.verify()).ok  # what the database alone can no longer tell
        report = await trail.verify(trusted=[kept_outside])
        assert (report.ok, report.broken_at) == (False, 7)

    async def test_a_checkpoint_with_a_forged_hash_is_found(self, backend: AuditBackend) -> None:
        trail = await filled(await backend.fresh(), 12, every=5)
        fourth = (await trail.log.read(4, 1))[0]
        await backend.execute(trail.log, "UPDATE audit_checkpoints SET hash = ? WHERE seq = ?",
                              fourth.hash, 10)  # fmt: skip
        report = await trail.verify()
        assert (report.ok, report.broken_at) == (False, 10)
        assert "bad signature" in report.reason

    async def test_a_checkpoint_signed_by_another_key_is_found(self, backend: AuditBackend) -> None:
        trail = await filled(await backend.fresh(), 8, every=5)
        seventh = (await trail.log.read(7, 1))[0]
        forged = AuditKey.generate().sign(7, seventh.hash, seventh.entry.at)
        await trail.log.add_checkpoint(forged)
        report = await trail.verify()
        assert (report.ok, report.broken_at) == (False, 7)
        assert "bad signature" in report.reason

"""The event-store contract: every backend subclasses :class:`EventStoreContract`.

A subclass provides two fixtures: ``store`` (a fresh, empty store) and
``reopen`` (a callable that closes a store and opens the same database again,
as after a restart).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from threadline.core.errors import ConflictError, IdempotencyError, ProgrammingError
from threadline.core.errors import ValidationError as ThreadlineValidationError
from threadline.core.ports import ANY, NO_STREAM, EventStore, Snapshot
from threadline.testing.factories import CODEC, message, record, records

Reopen = Callable[[EventStore], Awaitable[EventStore]]


class EventStoreContract:
    """Behaviour every EventStore, SnapshotStore and CheckpointStore backend must show."""

    #: What a write the database cannot even encode fails with: the encoder's own error,
    #: unless the backend hands writes to another process, which answers with its own.
    unencodable_error: type[BaseException] = UnicodeEncodeError

    # -- appending and reading ---------------------------------------------------

    async def test_append_to_a_new_stream_numbers_events_from_one(self, store: Any) -> None:
        result = await store.append("conv-a", records("conv-a", 3), NO_STREAM)
        assert result.seqs == (1, 2, 3)
        assert list(result.positions) == sorted(result.positions)
        assert len(set(result.positions)) == 3
        assert not result.duplicate

    async def test_read_returns_the_envelope_as_appended(self, store: Any) -> None:
        event = message("conv-a", "my laptop is late", key="key-1", leg_id="chat-1")
        encoded = CODEC.encode(event)
        await store.append("conv-a", [encoded])
        (stored,) = await store.read("conv-a")
        assert stored.seq == 1 and stored.position > 0 and stored.recorded_at is not None
        for name in ("event_id", "type", "version", "channel", "leg_id", "actor_kind",
                     "actor_id", "customer_id", "correlation_id", "causation_id",
                     "idempotency_key", "lineage", "payload"):  # fmt: skip
            assert getattr(stored, name) == getattr(encoded, name), name
        assert abs((stored.occurred_at - encoded.occurred_at).total_seconds()) < 1e-5
        assert CODEC.decode(stored).payload == {"text": "my laptop is late"}

    async def test_read_from_seq_with_limit(self, store: Any) -> None:
        await store.append("conv-a", records("conv-a", 10))
        page = await store.read("conv-a", from_seq=4, limit=3)
        assert [r.seq for r in page] == [4, 5, 6]
        assert await store.read("conv-unknown") == []

    async def test_empty_append_is_refused(self, store: Any) -> None:
        with pytest.raises(ThreadlineValidationError):
            await store.append("conv-a", [])

    async def test_events_of_another_conversation_are_refused(self, store: Any) -> None:
        with pytest.raises(ThreadlineValidationError):
            await store.append("conv-a", [record("conv-b")])
        assert await store.read_all() == []

    # -- optimistic concurrency ------------------------------------------------------

    async def test_no_stream_on_an_existing_stream_conflicts(self, store: Any) -> None:
        await store.append("conv-a", records("conv-a", 1, "first"), NO_STREAM)
        with pytest.raises(ConflictError) as caught:
            await store.append("conv-a", records("conv-a", 1, "second"), NO_STREAM)
        assert caught.value.actual == 1
        assert caught.value.retryable

    async def test_stale_expected_seq_conflicts_and_writes_nothing(self, store: Any) -> None:
        await store.append("conv-a", records("conv-a", 2, "first"))
        with pytest.raises(ConflictError) as caught:
            await store.append("conv-a", records("conv-a", 2, "second"), expected_seq=1)
        assert caught.value.expected == 1 and caught.value.actual == 2
        assert [r.seq for r in await store.read("conv-a")] == [1, 2]

    async def test_matching_expected_seq_appends(self, store: Any) -> None:
        await store.append("conv-a", records("conv-a", 2, "first"))
        result = await store.append("conv-a", records("conv-a", 1, "second"), expected_seq=2)
        assert result.seqs == (3,)

    async def test_any_skips_the_check(self, store: Any) -> None:
        await store.append("conv-a", records("conv-a", 2, "first"), ANY)
        assert (await store.append("conv-a", records("conv-a", 1, "second"), ANY)).seqs == (3,)

    async def test_racing_writers_on_one_stream_never_overwrite(self, store: Any) -> None:
        await store.append("conv-a", records("conv-a", 1, "seed"))

        async def writer(n: int) -> bool:
            try:
                await store.append("conv-a", records("conv-a", 1, f"w{n}"), expected_seq=1)
            except ConflictError:
                return False
            return True

        outcomes = await asyncio.gather(*(writer(n) for n in range(20)))
        assert outcomes.count(True) == 1
        assert [r.seq for r in await store.read("conv-a")] == [1, 2]

    async def test_a_conflicting_append_does_not_fail_its_neighbours(self, store: Any) -> None:
        await store.append("conv-x", records("conv-x", 1, "seed"))
        results = await asyncio.gather(
            *(store.append(f"conv-{n}", records(f"conv-{n}", 1)) for n in range(30)),
            store.append("conv-x", records("conv-x", 1, "late"), expected_seq=5),
            return_exceptions=True,
        )
        assert isinstance(results[-1], ConflictError)
        assert all(not isinstance(r, Exception) for r in results[:-1])
        assert len(await store.read_all(limit=100)) == 31

    async def test_an_append_that_cannot_be_written_fails_alone_and_the_store_goes_on(
        self, store: Any, reopen: Reopen
    ) -> None:
        bad = record("conv-bad")._replace(actor_id="\ud800")  # a lone surrogate has no UTF-8
        appends = [store.append(f"conv-{n}", records(f"conv-{n}", 1)) for n in range(12)]
        appends.insert(6, store.append("conv-bad", [bad]))
        results = await asyncio.wait_for(asyncio.gather(*appends, return_exceptions=True), 10)
        assert isinstance(results.pop(6), self.unencodable_error)
        assert not any(isinstance(r, BaseException) for r in results)
        after = await asyncio.wait_for(store.append("conv-next", records("conv-next", 1)), 10)
        assert after.seqs == (1,)
        store = await reopen(store)
        for conversation_id in [f"conv-{n}" for n in range(12)] + ["conv-next"]:
            assert len(await store.read(conversation_id)) == 1
        assert await store.read("conv-bad") == []

    async def test_a_snapshot_that_cannot_be_written_fails_alone(self, store: Any) -> None:
        writes = [store.append(f"conv-{n}", records(f"conv-{n}", 1)) for n in range(8)]
        writes.insert(4, store.save_snapshot(Snapshot("conv-\ud800", 1, 1, b"state")))
        results = await asyncio.wait_for(asyncio.gather(*writes, return_exceptions=True), 10)
        assert isinstance(results.pop(4), self.unencodable_error)
        assert not any(isinstance(r, BaseException) for r in results)
        await asyncio.wait_for(store.save_snapshot(Snapshot("conv-0", 1, 1, b"state")), 10)
        for n in range(8):
            assert len(await store.read(f"conv-{n}")) == 1

    async def test_concurrent_appends_keep_each_stream_dense(self, store: Any) -> None:
        async def conversation(n: int) -> None:
            for i in range(20):
                await store.append(f"conv-{n}", [record(f"conv-{n}", f"turn {i}")])

        await asyncio.gather(*(conversation(n) for n in range(16)))
        for n in range(16):
            assert [r.seq for r in await store.read(f"conv-{n}")] == list(range(1, 21))

    # -- idempotency -------------------------------------------------------------------

    async def test_a_repeated_append_returns_the_first_result(self, store: Any) -> None:
        batch = records("conv-a", 2, "cmd-1")
        first = await store.append("conv-a", batch, NO_STREAM)
        again = await store.append("conv-a", batch, NO_STREAM)
        assert again.duplicate and again.seqs == first.seqs and again.positions == first.positions
        assert len(await store.read("conv-a")) == 2

    async def test_a_late_repeat_is_not_a_conflict(self, store: Any) -> None:
        batch = records("conv-a", 1, "cmd-1")
        first = await store.append("conv-a", batch, NO_STREAM)
        await store.append("conv-a", records("conv-a", 1, "cmd-2"))
        again = await store.append("conv-a", batch, NO_STREAM)
        assert again.duplicate and again.seqs == first.seqs

    async def test_repeats_inside_one_group_commit_write_once(self, store: Any) -> None:
        batch = records("conv-a", 1, "cmd-1")
        results = await asyncio.gather(*(store.append("conv-a", batch) for _ in range(10)))
        assert sum(not r.duplicate for r in results) == 1
        assert {r.seqs for r in results} == {(1,)}
        assert len(await store.read("conv-a")) == 1

    async def test_idempotency_survives_a_restart(self, store: Any, reopen: Reopen) -> None:
        batch = records("conv-a", 2, "cmd-1")
        first = await store.append("conv-a", batch)
        store = await reopen(store)
        again = await store.append("conv-a", batch)
        assert again.duplicate and again.positions == first.positions
        assert len(await store.read("conv-a")) == 2

    async def test_reusing_some_keys_for_another_append_is_refused(self, store: Any) -> None:
        await store.append("conv-a", records("conv-a", 2, "cmd"))
        mixed = [record("conv-a", "new", key="fresh"), record("conv-a", "x", key="cmd-1")]
        with pytest.raises(IdempotencyError):
            await store.append("conv-a", mixed)
        assert len(await store.read("conv-a")) == 2

    async def test_a_repeat_with_different_keys_is_refused(self, store: Any) -> None:
        await store.append("conv-a", records("conv-a", 2, "cmd"))
        with pytest.raises(IdempotencyError):
            await store.append("conv-a", [record("conv-a", key="cmd-0"), record("conv-a")])
        assert len(await store.read("conv-a")) == 2

    async def test_the_same_key_twice_in_one_append_is_refused(self, store: Any) -> None:
        twice = [record("conv-a", key="same"), record("conv-a", key="same")]
        with pytest.raises(IdempotencyError):
            await store.append("conv-a", twice)
        assert await store.read("conv-a") == []

    async def test_keys_are_scoped_to_their_conversation(self, store: Any) -> None:
        await store.append("conv-a", [record("conv-a", key="same")])
        result = await store.append("conv-b", [record("conv-b", key="same")])
        assert not result.duplicate

    # -- global order -----------------------------------------------------------------

    async def test_read_all_returns_every_event_once_in_position_order(self, store: Any) -> None:
        async def conversation(n: int) -> None:
            for i in range(10):
                await store.append(f"conv-{n}", [record(f"conv-{n}", f"turn {i}")])

        await asyncio.gather(*(conversation(n) for n in range(8)))
        seen: list[int] = []
        after = 0
        while page := await store.read_all(after, limit=7):
            seen += [r.position for r in page]
            after = page[-1].position
        assert len(seen) == 80 and seen == sorted(seen) and len(set(seen)) == 80

    async def test_read_all_keeps_each_conversation_in_seq_order(self, store: Any) -> None:
        for i in range(5):
            for conv in ("conv-a", "conv-b"):
                await store.append(conv, [record(conv, f"turn {i}")])
        events = await store.read_all()
        for conv in ("conv-a", "conv-b"):
            assert [r.seq for r in events if r.conversation_id == conv] == [1, 2, 3, 4, 5]

    # -- snapshots -------------------------------------------------------------------------

    async def test_snapshot_round_trip(self, store: Any) -> None:
        await store.save_snapshot(Snapshot("conv-a", 100, 1, b'{"status":"bot_active"}'))
        loaded = await store.load_snapshot("conv-a", 1)
        assert loaded == Snapshot("conv-a", 100, 1, b'{"status":"bot_active"}')

    async def test_an_older_snapshot_never_replaces_a_newer_one(self, store: Any) -> None:
        await store.save_snapshot(Snapshot("conv-a", 200, 1, b"new"))
        await store.save_snapshot(Snapshot("conv-a", 100, 1, b"old"))
        loaded = await store.load_snapshot("conv-a", 1)
        assert loaded is not None and loaded.seq == 200 and loaded.state == b"new"

    async def test_a_snapshot_in_another_schema_version_is_ignored(self, store: Any) -> None:
        await store.save_snapshot(Snapshot("conv-a", 100, 1, b"v1 state"))
        assert await store.load_snapshot("conv-a", 2) is None
        assert await store.load_snapshot("conv-unknown", 1) is None

    # -- checkpoints and the handled ledger -------------------------------------------------

    async def test_checkpoints_start_at_zero_and_never_move_back(self, store: Any) -> None:
        assert await store.load_checkpoint("projector") == 0
        await store.save_checkpoint("projector", 42)
        await store.save_checkpoint("projector", 17)
        assert await store.load_checkpoint("projector") == 42

    async def test_checkpoints_survive_a_restart(self, store: Any, reopen: Reopen) -> None:
        await store.save_checkpoint("projector", 42)
        store = await reopen(store)
        assert await store.load_checkpoint("projector") == 42

    async def test_marking_handled_twice_reports_the_repeat(self, store: Any) -> None:
        assert not await store.was_handled("mailer", "evt-1")
        assert await store.mark_handled("mailer", "evt-1")
        assert not await store.mark_handled("mailer", "evt-1")
        assert await store.was_handled("mailer", "evt-1")
        assert await store.mark_handled("sms", "evt-1")

    # -- lifecycle ---------------------------------------------------------------------------

    async def test_events_survive_a_restart(self, store: Any, reopen: Reopen) -> None:
        first = await store.append("conv-a", records("conv-a", 3))
        store = await reopen(store)
        stored = await store.read("conv-a")
        assert [r.position for r in stored] == list(first.positions)
        assert (await store.append("conv-a", records("conv-a", 1, "next"), 3)).seqs == (4,)

    async def test_a_closed_store_refuses_work(self, store: Any) -> None:
        await store.close()
        with pytest.raises(ProgrammingError):
            await store.append("conv-a", records("conv-a", 1))
        with pytest.raises(ProgrammingError):
            await store.read("conv-a")

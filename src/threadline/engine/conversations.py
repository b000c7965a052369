"""Recording events on a conversation and rehydrating its state.

``Conversations.record`` is the one write path: redact what must never be
stored, validate and normalise the events, rehydrate the conversation,
refuse illegal transitions, append with the expected seq and the events'
idempotency keys, and snapshot every N events. A stale read is retried by
deciding again; a repeated command returns its first result.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Final

from threadline.core.conversation import (
    DEFAULT_POLICY,
    STATE_SCHEMA_VERSION,
    ConversationState,
    Policy,
    decide,
    fold,
    initial,
)
from threadline.core.errors import ConflictError, DomainError, IllegalTransition, ValidationError
from threadline.core.events import Event, EventCodec, EventRecord
from threadline.core.ports import AppendResult, Snapshot, Storage
from threadline.engine.redaction import Redaction

SNAPSHOT_EVERY: Final = 100
CONFLICT_RETRIES: Final = 5
HOT_STATES: Final = 10_000
#: Events appended elsewhere that wait to be folded into a hot state, at most.
PENDING_EVENTS: Final = 64


class Conversations:
    """Appends decided events to conversations and folds them back into state."""

    def __init__(
        self,
        store: Storage,
        codec: EventCodec | None = None,
        policy: Policy = DEFAULT_POLICY,
        snapshot_every: int = SNAPSHOT_EVERY,
        on_append: Callable[[], None] | None = None,
        redaction: Redaction | None = None,
    ) -> None:
        self.store = store
        #: Takes out what must never be stored (cards, security codes, national ids).
        self.redaction = redaction or Redaction()
        self.codec = codec or EventCodec()
        self.policy = policy
        self.snapshot_every = snapshot_every
        self._on_append = on_append
        # Recently written states, so a busy conversation reads only its new tail.
        self._hot: OrderedDict[str, ConversationState] = OrderedDict()
        #: By name: what else this process keeps of conversations (see :meth:`on_forget`).
        self._forgetting: dict[str, Callable[[str], None]] = {}
        self._following: dict[str, Callable[[EventRecord], None]] = {}
        # Events appended elsewhere that follow a hot state, folded when the state is read:
        # one fold for a bot turn's several events rather than one fold each.
        self._pending: dict[str, list[EventRecord]] = {}

    async def rehydrate(self, conversation_id: str, *, snapshots: bool = True) -> ConversationState:
        """Current state: the latest snapshot plus the events after it."""
        state = initial(conversation_id)
        if snapshots:
            snapshot = await self.store.load_snapshot(conversation_id, STATE_SCHEMA_VERSION)
            if snapshot is not None:
                state = ConversationState.from_bytes(snapshot.state)
        tail = await self.store.read(conversation_id, from_seq=state.seq + 1)
        decode = self.codec.decode
        return fold(state, [decode(r) for r in tail])

    async def current(self, conversation_id: str, at_least_seq: int = 0) -> ConversationState:
        """The state as this process last wrote it, if that covers ``at_least_seq``.

        Cheaper than :meth:`rehydrate` for a consumer reacting to an event it
        was just handed: a state kept hot since this process wrote that event
        is used without reading the store.
        """
        hot = self._hot_state(conversation_id)
        if hot is not None and at_least_seq and hot.seq >= at_least_seq:
            return hot
        return await self._current(conversation_id)

    def cached(self, conversation_id: str) -> ConversationState | None:
        """The state this process last wrote (with what it observed since), without a
        read; None if it keeps none. It may be behind the store: append after it with
        its seq as the expected seq, so a stale one conflicts rather than misleads."""
        return self._hot_state(conversation_id)

    async def fresh(self, conversation_id: str) -> ConversationState:
        """The state as the store holds it now, kept for the next write."""
        state = await self._current(conversation_id)
        self._remember(state)
        return state

    def observe(self, record: EventRecord) -> None:
        """Follow an event appended elsewhere (another process) with the state kept hot.

        Only the next event of a state kept hot, or a conversation's first
        event, is taken (and folded when the state is next read); anything
        else is left for the next read, so a missed event costs a read, never
        a wrong state.
        """
        for follow in self._following.values():
            follow(record)
        conversation_id = record.conversation_id
        hot = self._hot.get(conversation_id)
        if hot is None:
            if record.seq != 1:
                return
            # Kept hot from the start, so the first turn on it reads nothing back.
            self._remember(initial(conversation_id))
            hot = self._hot[conversation_id]
        pending = self._pending.get(conversation_id)
        if pending is None:
            if record.seq == hot.seq + 1:
                self._pending[conversation_id] = [record]
        elif record.seq == pending[-1].seq + 1:
            pending.append(record)
            if len(pending) >= PENDING_EVENTS:
                self._hot_state(conversation_id)

    def _hot_state(self, conversation_id: str) -> ConversationState | None:
        """The state kept hot, with the events observed since folded in; None if none."""
        hot = self._hot.get(conversation_id)
        pending = self._pending.pop(conversation_id, None)
        if hot is None or pending is None:
            return hot
        try:
            hot = fold(hot, [self.codec.decode(r) for r in pending])
        except DomainError:
            del self._hot[conversation_id]
            return None
        self._hot[conversation_id] = hot
        return hot

    async def _current(self, conversation_id: str) -> ConversationState:
        hot = self._hot_state(conversation_id)
        if hot is None:
            return await self.rehydrate(conversation_id)
        tail = await self.store.read(conversation_id, from_seq=hot.seq + 1)
        return fold(hot, [self.codec.decode(r) for r in tail])

    def _remember(self, state: ConversationState) -> None:
        conversation_id = state.conversation_id
        self._hot[conversation_id] = state
        self._pending.pop(conversation_id, None)
        self._hot.move_to_end(conversation_id)
        if len(self._hot) > HOT_STATES:
            evicted, _ = self._hot.popitem(last=False)
            self._pending.pop(evicted, None)

    def forget(self, conversation_id: str) -> None:
        """Drop what this process keeps of the conversation in memory (its customer was
        erased): the next read folds the log, where erased data reads as erased."""
        self._hot.pop(conversation_id, None)
        self._pending.pop(conversation_id, None)
        for listener in self._forgetting.values():
            listener(conversation_id)

    def on_forget(self, name: str, listener: Callable[[str], None]) -> None:
        """Call ``listener`` with each conversation :meth:`forget` drops: whatever else this
        process keeps of a conversation is dropped with it. A listener of the same ``name``
        (an agent made again for a reloaded pack) replaces the one before."""
        self._forgetting[name] = listener

    def on_event(self, name: str, listener: Callable[[EventRecord], None]) -> None:
        """Call ``listener`` with each event this process records or is shown
        (:meth:`observe`), as the log holds it (its seq set, its payload in clear), as it
        meets them: not every event of a conversation, nor each once, so a follower keeps
        to the next seq it expects. A listener of the same ``name`` replaces the one before."""
        self._following[name] = listener

    async def timeline(self, conversation_id: str) -> list[Event]:
        """Every event of the conversation in its current shape."""
        return [self.codec.decode(r) for r in await self.store.read(conversation_id)]

    async def record(
        self, conversation_id: str, events: Sequence[Event], expected_seq: int | None = None
    ) -> AppendResult:
        """Append ``events`` if the conversation's state allows them.

        With ``expected_seq`` the caller's view must be current (else
        ConflictError); without it a concurrent change is absorbed by deciding
        again on fresh state.
        """
        if not events:
            raise ValidationError("nothing to record", [{"field": "events", "reason": "empty"}])
        records = [self.codec.encode(e) for e in self.redaction.apply(events)]
        # Decide on the events exactly as rehydrate will read them back (UTC times,
        # default correlation and keys, current payload versions), so the states
        # kept in memory and in snapshots equal the fold of the log.
        normalised = [self.codec.decode(r) for r in records]
        for attempt in range(CONFLICT_RETRIES):
            # First trust the state this process last wrote: the append's expected
            # seq catches a write from elsewhere, and the retry then reads the tail.
            hot = self._hot_state(conversation_id) if attempt == 0 else None
            state = hot if hot is not None else await self._current(conversation_id)
            if records[0].idempotency_key in state.recent_keys:
                # A repeated command: the store answers with the first result.
                return await self.store.append(conversation_id, records, state.seq)
            try:
                if expected_seq is not None and expected_seq != state.seq:
                    raise ConflictError(conversation_id, expected_seq, state.seq)
                after = decide(state, normalised, self.policy)
            except (ConflictError, IllegalTransition):
                if hot is not None:
                    continue  # decided on a state not read from the store: read, decide again
                # A repeat older than the keys the state remembers still gets its first result.
                if not await self._was_recorded(conversation_id, records[0].idempotency_key):
                    raise
                return await self.store.append(conversation_id, records, state.seq)
            try:
                result = await self.store.append(conversation_id, records, state.seq)
            except ConflictError:
                if expected_seq is not None or attempt == CONFLICT_RETRIES - 1:
                    raise
                continue
            if not result.duplicate:
                if self._on_append is not None:
                    self._on_append()
                if self._following:
                    self._followed(records, result)
                self._remember(after)
                await self._maybe_snapshot(state, after, result)
            return result
        raise AssertionError("unreachable")

    def _followed(self, records: Sequence[EventRecord], result: AppendResult) -> None:
        for record, seq, position in zip(records, result.seqs, result.positions, strict=True):
            appended = record._replace(seq=seq, position=position)
            for follow in self._following.values():
                follow(appended)

    async def _was_recorded(self, conversation_id: str, key: str) -> bool:
        return any(r.idempotency_key == key for r in await self.store.read(conversation_id))

    async def _maybe_snapshot(
        self, before: ConversationState, after: ConversationState, result: AppendResult
    ) -> None:
        if result.last_seq // self.snapshot_every > before.seq // self.snapshot_every:
            await self.store.save_snapshot(
                Snapshot(after.conversation_id, after.seq, STATE_SCHEMA_VERSION, after.to_bytes())
            )


__all__ = ["Conversations", "IllegalTransition"]

"""Commands: the one way a request, a desk or a channel changes a conversation.

A command is a frozen value: the conversation, the idempotency key of its
first event, and what it asks for. :meth:`Commands.execute` runs one for whoever
acts. Each attempt takes the conversation's live state, lets the command admit
the principal and decide its events on that state, checks that the principal
may append each event on the state it follows (:mod:`threadline.security.authz`,
one policy decision for the command's events)
and appends them with that state's seq as the expected seq. If the
conversation moved meanwhile the append conflicts, and the whole judgement is
made again on the fresh state: a write is never authorised on one state and
appended after another. With the caller's ``If-Match`` (the seq it saw) a
conflict is reported instead of retried.

The first attempt judges the state this process last wrote, without a read;
a refusal on it is judged again on the store's state before it is final. A
command whose key the conversation has recorded is a repeat: it appends
nothing and answers with the first result. A repeat of fixed events (the
conversations API's) must still be allowed them; a repeat of a command decided
on the state (a desk reply, a visit note) is answered to a principal who may
read the conversation, since the state that allowed it has moved on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import ClassVar, Final

from threadline.core.conversation import ConversationState, check, fold
from threadline.core.errors import ConflictError, DomainError, NotFound
from threadline.core.events import Actor, Event, EventRecord, Lineage
from threadline.core.ports import AppendResult
from threadline.engine.conversations import Conversations
from threadline.security.authz import can_append_each, can_read_conversation
from threadline.security.errors import Forbidden
from threadline.security.principal import ADAPTER_SCOPES, Principal

#: Attempts at a command whose conversation keeps moving under it.
ATTEMPTS: Final = 5
#: How the keys of a command's later events derive from its first (``key#1``, ``key:end``).
_DERIVED: Final = ("#", ":")


@dataclass(frozen=True, slots=True)
class Component:
    """A part of the service acting by itself (the check-in courier): trusted, so its
    commands are decided on live state but not authorised."""

    name: str


#: Who executes a command: an authenticated principal, or the service itself.
Acting = Principal | Component


def channel_adapter(channel: str, name: str) -> Principal:
    """The principal of an in-process channel adapter: it writes on ``channel`` only."""
    scope = next(s for s, c in ADAPTER_SCOPES.items() if c == channel)
    return Principal(
        subject=name,
        kind="adapter",
        scopes=frozenset({scope}),
        token_id=f"in-process:{name}",
        issued_at=datetime.min.replace(tzinfo=UTC),
        expires_at=datetime.max.replace(tzinfo=UTC),
    )


def name_of(by: Acting) -> str:
    """Who acts, by name: the principal's subject or the component's name."""
    return by.subject if isinstance(by, Principal) else by.name


class NoSuchConversation(NotFound):
    """The command needs a conversation that has no events."""


@dataclass(frozen=True, slots=True)
class Command(ABC):
    """A request to change one conversation, decided on its live state."""

    conversation_id: str
    #: The idempotency key of the first event; later events' keys derive from it.
    key: str
    #: Whether each event is judged on the state it would follow (events a client sends
    #: one after the other), or every one on the state the command starts from (one act,
    #: like an associate's resolving a visit, which also ends it).
    stepwise: ClassVar[bool] = True

    def admit(self, by: Principal, state: ConversationState) -> None:
        """Raise unless ``by`` may ask this of the conversation in ``state``, beyond the
        events themselves (which the executor checks). Allows by default."""
        return

    @abstractmethod
    def decide(self, state: ConversationState, by: Acting) -> list[Event]:
        """The events this command appends after ``state``; none if nothing is to do."""

    def judged(self, event: Event) -> bool:
        """Whether the principal itself must be allowed ``event``; not for what the
        service writes as a consequence (the reopening a store visit causes)."""
        return True

    def admit_repeat(self, by: Principal, state: ConversationState) -> None:
        """Raise unless ``by`` may hear the first result of a command decided on the state
        again: readers of the conversation."""
        can_read_conversation(by, state)

    def fixed_events(self) -> Sequence[Event]:
        """The events, when they do not depend on the state. A repeat is then judged as
        the first was (they must still be allowed) and answered by the store for
        exactly their keys; otherwise (empty) the log is searched for the key."""
        return ()


@dataclass(frozen=True, slots=True)
class AppendEvents(Command):
    """Append these events as they are (the conversations API and channel adapters)."""

    events: tuple[Event, ...]

    @classmethod
    def of(cls, events: Sequence[Event]) -> AppendEvents:
        first = events[0]
        return cls(first.conversation_id, first.idempotency_key, tuple(events))

    def decide(self, state: ConversationState, by: Acting) -> list[Event]:
        return list(self.events)

    def fixed_events(self) -> Sequence[Event]:
        return self.events


@dataclass(frozen=True, slots=True)
class Fulfil(Command):
    """Record what fulfilled a requested action, while the action is still pending: a
    redelivered request whose result is recorded already records nothing."""

    action_id: str
    events: tuple[Event, ...]

    @classmethod
    def of(cls, action_id: str, events: Sequence[Event]) -> Fulfil:
        first = events[0]
        return cls(first.conversation_id, first.idempotency_key, action_id, tuple(events))

    def decide(self, state: ConversationState, by: Acting) -> list[Event]:
        return list(self.events) if self.action_id in state.pending_actions else []

    def fixed_events(self) -> Sequence[Event]:
        return self.events


@dataclass(frozen=True, slots=True)
class Pending:
    """A requested action still waiting for its result, and the conversation it is on."""

    request: Event
    action_id: str
    state: ConversationState


async def pending_request(
    conversations: Conversations, record: EventRecord, tool: str
) -> Pending | None:
    """The ``action.requested`` of ``tool`` in ``record`` while its action is pending on the
    live state; None for another event or tool, or once it is fulfilled (a redelivery)."""
    if record.type != "action.requested":
        return None
    request = conversations.codec.decode(record)
    if request.payload["tool"] != tool:
        return None
    action_id = str(request.payload["action_id"])
    state = await conversations.current(record.conversation_id, record.seq)
    if action_id not in state.pending_actions:
        return None
    return Pending(request, action_id, state)


@dataclass(frozen=True, slots=True)
class EndLeg(Command):
    """End a channel leg (a chat that disconnected, a call that hung up) if it is live."""

    leg_id: str
    channel: str
    reason: str
    actor: Actor
    lineage: Lineage

    def decide(self, state: ConversationState, by: Acting) -> list[Event]:
        if self.leg_id not in state.live_legs:
            return []
        return [
            Event(
                conversation_id=self.conversation_id,
                type="leg.ended",
                payload={"leg_id": self.leg_id, "reason": self.reason},
                channel=self.channel,
                leg_id=self.leg_id,
                actor=self.actor,
                customer_id=state.customer_id,
                idempotency_key=self.key,
                lineage=self.lineage,
            )
        ]


@dataclass(frozen=True, slots=True)
class Executed:
    """What a command did, and the state it was decided on (the current one for a repeat)."""

    state: ConversationState
    #: Where its events landed (a repeat's: the first's); None when it had nothing to do.
    result: AppendResult | None

    @property
    def duplicate(self) -> bool:
        return self.result is not None and self.result.duplicate

    @property
    def last_seq(self) -> int:
        """The seq of its last event, or the state's when it appended nothing."""
        return self.result.last_seq if self.result is not None else self.state.seq


class Commands:
    """Executes commands: authorise on live state, decide, append with expected seq."""

    def __init__(self, conversations: Conversations, attempts: int = ATTEMPTS) -> None:
        self.conversations = conversations
        self.attempts = attempts

    async def execute(
        self, command: Command, by: Acting, *, expected_seq: int | None = None
    ) -> Executed:
        """Run ``command`` as ``by``; ``expected_seq`` (an ``If-Match``) pins the state.

        Raises Forbidden, a DomainError or NotFound when the live state refuses
        the command, and ConflictError when the state is not at
        ``expected_seq`` (or moved on every attempt).
        """
        cid = command.conversation_id
        conversations = self.conversations
        fresh = False
        conflict: ConflictError | None = None
        for _ in range(self.attempts):
            state = None if fresh else conversations.cached(cid)
            if state is None:
                state, fresh = await conversations.fresh(cid), True
            try:
                if command.key in state.recent_keys:
                    return await self._repeat(command, by, state)
                events = self._judge(command, by, state)
            except (Forbidden, DomainError, NotFound):
                if not fresh:
                    fresh = True  # judged on the state this process kept: judge the store's
                    continue
                if not await self._was_recorded(cid, command.key):
                    raise
                return await self._repeat(command, by, state)
            if not events:
                return Executed(state, None)
            try:
                if expected_seq is not None and expected_seq != state.seq:
                    raise ConflictError(cid, expected_seq, state.seq)
                result = await conversations.record(cid, events, state.seq)
            except ConflictError as exc:
                if expected_seq is not None and fresh:
                    raise
                conflict, fresh = exc, True
                continue
            return Executed(state, result)
        assert conflict is not None
        raise conflict

    def _judge(self, command: Command, by: Acting, state: ConversationState) -> list[Event]:
        """The command's events on ``state``, if ``by`` may ask for them and append them."""
        if isinstance(by, Component):
            return command.decide(state, by)
        command.admit(by, state)
        events = command.decide(state, by)
        self._may_append(command, by, state, events)
        return events

    def _may_append(
        self, command: Command, by: Principal, state: ConversationState, events: Sequence[Event]
    ) -> None:
        """Forbidden unless ``by`` may append each event (that is theirs to be allowed)."""
        codec, policy = self.conversations.codec, self.conversations.policy
        # Judge each event as it will be stored (validated, current payload versions),
        # on the state it would follow (or the command's first); all in one decision.
        steps: list[tuple[ConversationState, Event]] = []
        last = len(events) - 1
        for n, event in enumerate(events):
            event = codec.decode(codec.encode(event))
            if command.judged(event):
                steps.append((state, event))
            if n == last or not command.stepwise:
                continue  # no later event is judged on the state this one makes
            try:
                check(state, event, policy)
                state = fold(state, [replace(event, seq=state.seq + 1)])
            except DomainError:
                continue  # recording refuses (or replays) it; judge the rest on this state
        can_append_each(by, steps)

    async def _repeat(self, command: Command, by: Acting, state: ConversationState) -> Executed:
        cid = command.conversation_id
        events = command.fixed_events()
        if isinstance(by, Principal) and events:
            command.admit(by, state)
            self._may_append(command, by, state, events)
        if events:
            return Executed(state, await self.conversations.record(cid, events))
        records = await self.conversations.store.read(cid)
        try:
            result = first_result(cid, command.key, records)
        except NotFound:
            if isinstance(by, Principal):
                command.admit_repeat(by, state)  # a stranger learns nothing of the keys
            raise
        # Whoever recorded it hears its result again, though the conversation has since
        # moved out of their reach (resolved, transferred); others must be its readers.
        if isinstance(by, Principal) and not _recorded_by(records, result.seqs[0], by):
            command.admit_repeat(by, state)
        return Executed(state, result)

    async def _was_recorded(self, conversation_id: str, key: str) -> bool:
        records = await self.conversations.store.read(conversation_id)
        return any(r.idempotency_key == key for r in records)


def _recorded_by(records: Sequence[EventRecord], seq: int, by: Principal) -> bool:
    """Whether the event at ``seq`` was written by ``by`` as themselves."""
    kind = "customer" if by.kind == "customer" else "human"
    return any(r.seq == seq and (r.actor_kind, r.actor_id) == (kind, by.subject)
               for r in records)  # fmt: skip


def first_result(conversation_id: str, key: str, records: Sequence[EventRecord]) -> AppendResult:
    """The result of the append whose first event has ``key``: it and the events right
    after it whose keys derive from ``key``."""
    found: list[EventRecord] = []
    for record in records:
        if not found:
            if record.idempotency_key == key:
                found.append(record)
        elif record.seq == found[-1].seq + 1 and record.idempotency_key.startswith(
            tuple(key + mark for mark in _DERIVED)
        ):
            found.append(record)
        else:
            break
    if not found:
        raise NotFound(f"no event with key {key!r} on conversation {conversation_id}")
    return AppendResult(
        conversation_id,
        tuple(r.seq for r in found),
        tuple(r.position for r in found),
        duplicate=True,
    )

"""Conversations: state, timeline, and appending events.

Every route needs a bearer token (401 with a ``WWW-Authenticate`` challenge
without one). Reads are checked with :func:`can_read_conversation` on the
rehydrated state. An append is an :class:`AppendEvents` command
(:mod:`threadline.engine.commands`): each event is checked with
:func:`can_append` against the live state it would follow, and appended after
exactly that state. The listing applies the same read rule to each
conversation's state in the :class:`ConversationIndex`.

A conversation that does not exist yet is 404 only for callers whose rules let
them read it whatever it holds (supervisors and admins). Everyone else is
refused with 403 whether it exists or not, so a customer, agent or adapter
cannot tell someone else's conversation from one that does not exist.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import orjson
from fastapi import APIRouter, Header, Query, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from threadline.api.auth import Caller
from threadline.api.deps import ServiceDep
from threadline.api.documented import problem_responses
from threadline.api.listing import (
    ConversationPage,
    ListQuery,
    decode_cursor,
    encode_cursor,
    item_of,
)
from threadline.api.problems import Problem
from threadline.channels.chat.protocol import VISIBLE, visible
from threadline.core.conversation import ConversationState
from threadline.core.errors import ConflictError
from threadline.core.events import MAX_SEQ, Actor, Event, Lineage, new_id, utcnow
from threadline.engine.commands import AppendEvents
from threadline.engine.conversations import Conversations
from threadline.security import Principal, can_read_conversation
from threadline.security.authz import readable_among

router = APIRouter(prefix="/conversations", tags=["conversations"])

Id = Annotated[str, Field(min_length=1, max_length=200)]


class ActorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["customer", "bot", "human", "system"]
    id: Id


class LineageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    producer: Id
    version: str = "0"
    model: str | None = None
    policy: str | None = None


class EventIn(BaseModel):
    """One event to append; the server assigns ids, seq, position and times."""

    model_config = ConfigDict(extra="forbid")
    type: Id
    version: int | None = Field(None, ge=1)
    payload: dict[str, Any]
    channel: Literal["voice", "chat", "in_person", "sms", "system"] = "system"
    leg_id: Id | None = None
    actor: ActorIn
    customer_id: Id | None = None
    correlation_id: Id | None = None
    causation_id: Id | None = None
    occurred_at: AwareDatetime | None = None
    lineage: LineageIn | None = None


class AppendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[EventIn] = Field(min_length=1, max_length=100)


class AppendOut(BaseModel):
    conversation_id: str
    seqs: list[int]
    positions: list[int]
    duplicate: bool


class EventOut(BaseModel):
    event_id: str
    conversation_id: str
    seq: int
    position: int
    type: str
    version: int
    occurred_at: datetime
    recorded_at: datetime | None
    channel: str
    leg_id: str | None
    actor: dict[str, str]
    customer_id: str | None
    correlation_id: str
    causation_id: str | None
    idempotency_key: str
    lineage: dict[str, str]
    payload: dict[str, Any]


#: Digits in the largest seq a store holds.
MAX_SEQ_DIGITS: Final = len(str(MAX_SEQ))


def _expected(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    tag = if_match.strip().removeprefix("W/").strip('"')
    # ASCII digits only ("²" is a digit to str.isdigit), and no more than a seq can hold.
    if not (tag.isascii() and tag.isdigit()) or len(tag) > MAX_SEQ_DIGITS or int(tag) > MAX_SEQ:
        raise Problem(400, "bad-if-match", "Malformed If-Match",
                      'If-Match must be the conversation\'s seq as an ETag, e.g. "5"')  # fmt: skip
    return int(tag)


async def readable(
    conversations: Conversations,
    caller: Principal,
    conversation_id: str,
    *,
    must_exist: bool = True,
) -> ConversationState:
    """The conversation's state if ``caller`` may read it (Forbidden first, then 404)."""
    state = await conversations.rehydrate(conversation_id)
    can_read_conversation(caller, state)
    if must_exist and state.seq == 0:
        raise Problem(
            404, "not-found", "No such conversation", f"no conversation {conversation_id}"
        )
    return state


#: What a customer's view of the conversation's state holds: where it stands, not what
#: staff and agents know about it.
CUSTOMER_STATE: Final = ("conversation_id", "seq", "status", "origin", "opened_at",
                         "updated_at", "closed_at", "outcome", "continued_in")  # fmt: skip
#: Envelope fields of the event frames the chat shows, not payload.
_FRAME_ENVELOPE: Final = frozenset({"type", "seq", "event", "channel", "actor", "at"})


def for_customer(caller: Principal) -> bool:
    """Whether ``caller`` gets the customer's view: what was said to and by them."""
    return caller.kind == "customer"


def customer_event_out(event: Event) -> EventOut | None:
    """``event`` as its customer sees it (None for what stays internal: intents, notes,
    tool calls, offers, proofs): no lineage, no keys, only what the chat shows of it."""
    if event.type not in VISIBLE:
        return None
    shown = {k: v for k, v in visible(event).items() if k not in _FRAME_ENVELOPE}
    return EventOut(
        event_id=event.event_id, conversation_id=event.conversation_id, seq=event.seq,
        position=0, type=event.type, version=event.version, occurred_at=event.occurred_at,
        recorded_at=None, channel=event.channel, leg_id=None,
        actor={"kind": event.actor.kind, "id": event.actor.id if event.actor.kind == "customer"
               else ""},
        customer_id=event.customer_id, correlation_id="", causation_id=None,
        idempotency_key="", lineage={}, payload=shown,
    )  # fmt: skip


def event_out(event: Event) -> EventOut:
    return EventOut(
        event_id=event.event_id, conversation_id=event.conversation_id, seq=event.seq,
        position=event.position, type=event.type, version=event.version,
        occurred_at=event.occurred_at, recorded_at=event.recorded_at, channel=event.channel,
        leg_id=event.leg_id, actor={"kind": event.actor.kind, "id": event.actor.id},
        customer_id=event.customer_id, correlation_id=event.correlation_id,
        causation_id=event.causation_id, idempotency_key=event.idempotency_key,
        lineage=event.lineage.to_dict(), payload=dict(event.payload),
    )  # fmt: skip


@router.post("/{conversation_id}/events", status_code=201, response_model=AppendOut)
async def append_events(
    conversation_id: Id,
    body: AppendIn,
    service: ServiceDep,
    response: Response,
    caller: Caller,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    if_match: Annotated[str | None, Header()] = None,
) -> AppendOut:
    """Append events; ``Idempotency-Key`` is required, ``If-Match`` pins the expected seq.

    Each event must be allowed to ``caller`` on the state it would follow. Without
    ``If-Match`` the append is pinned to the state it was authorized on, and
    authorized again if the conversation moved meanwhile.
    """
    if not idempotency_key:
        raise Problem(400, "idempotency-key-required", "Idempotency-Key required",
                      "every append needs an Idempotency-Key header")  # fmt: skip
    expected = _expected(if_match)
    events = [
        Event(
            conversation_id=conversation_id,
            type=e.type,
            version=e.version or 0,
            payload=e.payload,
            channel=e.channel,
            leg_id=e.leg_id,
            actor=Actor(e.actor.kind, e.actor.id),
            customer_id=e.customer_id,
            correlation_id=e.correlation_id or "",
            causation_id=e.causation_id,
            idempotency_key=idempotency_key if i == 0 else f"{idempotency_key}#{i}",
            lineage=Lineage(**e.lineage.model_dump()) if e.lineage else Lineage("api", "1"),
            event_id=new_id(),
            occurred_at=e.occurred_at or utcnow(),
        )
        for i, e in enumerate(body.events)
    ]
    try:
        executed = await service.commands.execute(AppendEvents.of(events), caller,
                                                  expected_seq=expected)  # fmt: skip
    except ConflictError as exc:
        if expected is None:
            raise
        raise Problem(412, "precondition-failed", "If-Match does not match",
                      str(exc), current_seq=exc.actual) from None  # fmt: skip
    result = executed.result
    assert result is not None
    if result.duplicate:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["ETag"] = f'"{result.last_seq}"'
    return AppendOut(
        conversation_id=conversation_id,
        seqs=list(result.seqs),
        positions=list(result.positions),
        duplicate=result.duplicate,
    )


@router.get("", response_model=ConversationPage, responses=problem_responses(400, 401, 403, 422))
async def list_conversations(
    service: ServiceDep, caller: Caller, query: Annotated[ListQuery, Query()]
) -> ConversationPage:
    """The conversations the caller may read, newest activity first, a page at a time.

    Who sees what is :func:`can_read_conversation`: agents their queues' and their
    own, customers their own, supervisors and admins all; the policy lets no
    channel adapter list. Paging is by activity: a conversation that moves while a client
    pages moves to the top, so it is never repeated, and shows in a fresh listing.
    """
    if query.queue is not None and service.router.config.queue(query.queue) is None:
        reason = f"unknown queue {query.queue!r}"
        raise Problem(422, "validation", "The request does not fit its schema",
                      f"query.queue: {reason}", errors=[{"field": "query.queue",
                                                          "reason": reason}])  # fmt: skip
    after = decode_cursor(query.cursor) if query.cursor is not None else None
    where = query.where()
    if caller.kind == "customer":
        if where.customer_id not in (None, caller.customer_id):
            return ConversationPage(items=[], next_cursor=None)
        where = replace(where, customer_id=caller.customer_id)
    index = service.index
    await index.catch_up()
    pool = index.of_customer(where.customer_id) if where.customer_id is not None else index
    visible = readable_among(caller, (e.state for e in pool if where.matches(e)))
    page, next_key = index.select(
        where,
        lambda state: state.conversation_id in visible,
        after=after,
        limit=query.limit,
    )
    return ConversationPage(
        items=[item_of(entry) for entry in page],
        next_cursor=encode_cursor(next_key) if next_key is not None else None,
    )


@router.get("/{conversation_id}")
async def conversation_state(
    conversation_id: Id, service: ServiceDep, response: Response, caller: Caller
) -> dict[str, Any]:
    """The conversation's current state, folded from its events (a staff read is audited)."""
    state = await readable(service.conversations, caller, conversation_id)
    await service.audit.conversation_read(caller, conversation_id, "state")
    response.headers["ETag"] = f'"{state.seq}"'
    data: dict[str, Any] = orjson.loads(state.to_bytes())
    if for_customer(caller):
        data = {key: data[key] for key in CUSTOMER_STATE}
        data["live_channels"] = sorted({str(leg.get("channel"))
                                        for leg in state.live_legs.values()})  # fmt: skip
        return data
    data["live_legs"] = sorted(state.live_legs)
    return data


@router.get("/{conversation_id}/events", response_model=list[EventOut])
async def timeline(
    conversation_id: Id,
    service: ServiceDep,
    caller: Caller,
    after_seq: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> list[EventOut]:
    """The conversation's events after ``after_seq``, in order, in their current shape.

    Only events up to the state the read was authorized on are returned. A customer
    gets what was said to and by them (the chat's view), without the internal ones.
    A staff read is recorded in the audit trail before anything is returned.
    """
    conversations = service.conversations
    state = await readable(conversations, caller, conversation_id, must_exist=after_seq == 0)
    await service.audit.conversation_read(caller, conversation_id, "events")
    records = await conversations.store.read(conversation_id, from_seq=after_seq + 1, limit=limit)
    events = [conversations.codec.decode(r) for r in records if r.seq <= state.seq]
    if for_customer(caller):
        return [out for e in events if (out := customer_event_out(e)) is not None]
    return [event_out(e) for e in events]

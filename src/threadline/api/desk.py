"""The desk: what human agents and supervisors use to take and work conversations.

Every route needs an agent or supervisor token. Writes are recorded through
:meth:`Conversations.record` as the human acting, with the request's
``Idempotency-Key`` (or a fresh one), after the authorization rules allow them;
transitions the conversation's state forbids come back as 409 problems.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Header
from pydantic import BaseModel, ConfigDict, Field

from threadline.api import agent_stream
from threadline.api.auth import Caller
from threadline.api.deps import ServiceDep
from threadline.api.problems import Problem
from threadline.core.conversation import ConversationState
from threadline.core.events import Actor, Event, Lineage, new_id
from threadline.engine.conversations import Conversations
from threadline.routing.packet import build_packet
from threadline.routing.presence import AgentPresence
from threadline.security import Forbidden, Principal, can_append, can_read_conversation

router = APIRouter(tags=["desk"])
# The live work stream (offers, my conversations, queues) is part of the desk API.
router.include_router(agent_stream.router)

LINEAGE: Final = Lineage("threadline.desk", "0.1.0")
DESK_KINDS: Final = frozenset({"agent", "supervisor"})
#: Kinds that may work any conversation, not only the ones assigned to them.
OVERSEERS: Final = frozenset({"supervisor", "admin"})

Id = Annotated[str, Field(min_length=1, max_length=200)]
IdempotencyKey = Annotated[str | None, Header(max_length=200)]


class PresenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    presence: Literal["available", "away", "offline"]


class OfferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    offer_id: Id


class ReplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Annotated[str, Field(min_length=1, max_length=4000)]


class TransferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queue: Id
    reason: Annotated[str | None, Field(max_length=500)] = None


class ReturnIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Annotated[str | None, Field(max_length=2000)] = None


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Id
    note: Annotated[str | None, Field(max_length=2000)] = None


# -- helpers -------------------------------------------------------------------------


def _desk(caller: Principal) -> Principal:
    """``caller`` if it is a human agent or supervisor, else Forbidden."""
    if caller.kind not in DESK_KINDS:
        raise Forbidden(f"{caller.kind} {caller.subject}: the desk is for agents and supervisors")
    return caller


async def _state(
    conversations: Conversations, caller: Principal, conversation_id: str
) -> ConversationState:
    """The conversation's state, if it exists and ``caller`` may read it."""
    state = await conversations.rehydrate(conversation_id)
    if state.seq == 0:
        raise Problem(
            404, "not-found", "No such conversation", f"no conversation {conversation_id}"
        )
    can_read_conversation(caller, state)
    return state


def _holder(caller: Principal, state: ConversationState) -> None:
    """Forbidden unless ``caller`` is the conversation's assignee or oversees every queue."""
    if caller.kind in OVERSEERS or state.assignee == caller.subject:
        return
    held = f"assigned to {state.assignee}" if state.assignee else "not assigned to anyone"
    raise Forbidden(f"{caller.kind} {caller.subject}: conversation "
                    f"{state.conversation_id} is {held}")  # fmt: skip


async def _write(
    conversations: Conversations,
    caller: Principal,
    state: ConversationState,
    type_: str,
    payload: Mapping[str, Any],
    key: str | None,
    *,
    channel: str = "system",
    leg_id: str | None = None,
    guard: Callable[[], None] | None = None,
) -> dict[str, int]:
    """Record one event as ``caller``, if ``guard`` and the rules allow it; its seq.

    A request repeating an ``Idempotency-Key`` the conversation recorded recently
    skips the checks (the state has moved on since) and answers as the first did.
    """
    event = Event(
        conversation_id=state.conversation_id,
        type=type_,
        payload=dict(payload),
        channel=channel,
        leg_id=leg_id,
        actor=Actor("human", caller.subject),
        customer_id=state.customer_id,
        idempotency_key=key or new_id(),
        lineage=LINEAGE,
    )
    if key is None or key not in state.recent_keys:
        if guard is not None:
            guard()
        can_append(caller, state, event)
    result = await conversations.record(state.conversation_id, [event])
    return {"seq": result.seqs[-1]}


def _live_leg(state: ConversationState) -> tuple[str, str | None]:
    """The channel and id of the conversation's first live leg, else chat and no leg."""
    live = sorted(state.live_legs.items(), key=lambda kv: str(kv[1].get("started_at") or ""))
    if not live:
        return "chat", None
    leg_id, leg = live[0]
    return str(leg.get("channel") or "chat"), leg_id


# -- the agent -----------------------------------------------------------------------


@router.get("/agents/me")
async def me(service: ServiceDep, caller: Caller) -> dict[str, Any]:
    """The calling agent: id, name, queues, presence and load as the router sees them."""
    _desk(caller)
    routing = service.router
    spec = routing.config.agent(caller.subject)
    if caller.kind == "supervisor":
        queues = sorted(q.name for q in routing.config.queues)
    else:
        queues = sorted(caller.queues)
    agent = routing.state.agent(caller.subject)
    return {
        "id": caller.subject,
        "name": spec.name if spec is not None else caller.subject,
        "kind": caller.kind,
        "queues": queues,
        "presence": agent.presence,
        "load": agent.load,
        "capacity": agent.capacity if agent.capacity is not None else (
            spec.capacity if spec is not None else 0),
        "conversations": sorted(agent.conversations),
    }  # fmt: skip


@router.put("/agents/me/presence")
async def set_presence(
    body: PresenceIn, service: ServiceDep, caller: Caller, idempotency_key: IdempotencyKey = None
) -> dict[str, int]:
    """Make the calling agent available, away or offline."""
    _desk(caller)
    conversations = service.conversations
    presence = AgentPresence(conversations.store, conversations.codec)
    result = await presence.set_presence(
        caller.subject, body.presence, key=idempotency_key or "",
        actor=Actor("human", caller.subject),
    )  # fmt: skip
    if not result.duplicate:
        service.relay.poke()
    return {"seq": result.seqs[-1]}


@router.get("/agents/me/offers")
async def my_offers(service: ServiceDep, caller: Caller) -> list[dict[str, Any]]:
    """The open offers for the calling agent (every open offer, for a supervisor)."""
    _desk(caller)
    conversations = service.conversations
    offers = []
    for waiting in sorted(service.router.state.waiting.values(), key=lambda w: w.fifo_key):
        offer = waiting.offer
        if offer is None:
            continue
        if caller.kind != "supervisor" and offer.agent_id != caller.subject:
            continue
        state = await conversations.rehydrate(waiting.conversation_id)
        current = state.offer or {}
        if current.get("offer_id") != offer.offer_id:
            continue  # the router has not seen the conversation move on yet
        offers.append({
            "offer_id": offer.offer_id,
            "conversation_id": waiting.conversation_id,
            "agent_id": offer.agent_id,
            "queue": waiting.queue,
            "reason": state.handoff_reason,
            "expires_at": offer.expires_at.isoformat(),
        })  # fmt: skip
    return offers


# -- taking an offer -----------------------------------------------------------------


async def _answer_offer(
    service: ServiceDep,
    caller: Principal,
    conversation_id: str,
    offer_id: str,
    type_: str,
    key: str | None,
) -> dict[str, int]:
    _desk(caller)
    state = await _state(service.conversations, caller, conversation_id)
    offer = state.offer or {}
    agent_id = str(offer.get("agent_id") or caller.subject)

    def offered_to_caller() -> None:
        if offer.get("offer_id") != offer_id:
            raise Problem(409, "stale-offer", "The offer is no longer open",
                          f"offer {offer_id} is not open on conversation "
                          f"{conversation_id}")  # fmt: skip
        if caller.kind != "supervisor" and agent_id != caller.subject:
            raise Forbidden(
                f"{caller.kind} {caller.subject}: offer {offer_id} is for another agent"
            )

    payload = {"offer_id": offer_id, "agent_id": agent_id}
    return await _write(service.conversations, caller, state, type_, payload, key,
                        guard=offered_to_caller)  # fmt: skip


@router.post("/conversations/{conversation_id}/accept")
async def accept(
    conversation_id: Id,
    body: OfferIn,
    service: ServiceDep,
    caller: Caller,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, int]:
    """Take the conversation offered to the calling agent."""
    return await _answer_offer(
        service, caller, conversation_id, body.offer_id, "handoff.accepted", idempotency_key
    )


@router.post("/conversations/{conversation_id}/decline")
async def decline(
    conversation_id: Id,
    body: OfferIn,
    service: ServiceDep,
    caller: Caller,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, int]:
    """Turn down the conversation offered to the calling agent; the router offers it on."""
    return await _answer_offer(
        service, caller, conversation_id, body.offer_id, "handoff.declined", idempotency_key
    )


# -- working a conversation ----------------------------------------------------------


@router.get("/conversations/{conversation_id}/packet")
async def packet(conversation_id: Id, service: ServiceDep, caller: Caller) -> dict[str, Any]:
    """The handoff packet: who the customer is, what happened, what is pending."""
    state = await _state(service.conversations, caller, conversation_id)
    timeline = await service.conversations.timeline(conversation_id)
    return build_packet(state, timeline).to_dict()


@router.post("/conversations/{conversation_id}/reply")
async def reply(
    conversation_id: Id,
    body: ReplyIn,
    service: ServiceDep,
    caller: Caller,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, int]:
    """Send the customer a message on the conversation's live channel."""
    _desk(caller)
    state = await _state(service.conversations, caller, conversation_id)
    channel, leg_id = _live_leg(state)
    return await _write(service.conversations, caller, state, "message.sent", {"text": body.text},
                        idempotency_key, channel=channel, leg_id=leg_id,
                        guard=lambda: _holder(caller, state))  # fmt: skip


@router.post("/conversations/{conversation_id}/transfer")
async def transfer(
    conversation_id: Id,
    body: TransferIn,
    service: ServiceDep,
    caller: Caller,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, int]:
    """Hand the conversation to another queue."""
    _desk(caller)
    state = await _state(service.conversations, caller, conversation_id)
    queue = service.router.config.queue(body.queue)
    if queue is None:
        raise Problem(422, "unknown-queue", "No such queue", f"there is no queue {body.queue}")
    payload = {"queue": queue.name, "reason_code": "transfer",
               "reason_detail": body.reason or "", "skills": sorted(queue.skills)}  # fmt: skip
    return await _write(
        service.conversations,
        caller,
        state,
        "handoff.requested",
        payload,
        idempotency_key,
        guard=lambda: _holder(caller, state),
    )


@router.post("/conversations/{conversation_id}/return")
async def give_back(
    conversation_id: Id,
    service: ServiceDep,
    caller: Caller,
    idempotency_key: IdempotencyKey = None,
    body: ReturnIn | None = None,
) -> dict[str, int]:
    """Hand the conversation back to the bot."""
    _desk(caller)
    state = await _state(service.conversations, caller, conversation_id)
    payload: dict[str, Any] = {"agent_id": state.assignee or caller.subject}
    if body is not None and body.note:
        payload["note"] = body.note
    return await _write(
        service.conversations,
        caller,
        state,
        "handoff.returned",
        payload,
        idempotency_key,
        guard=lambda: _holder(caller, state),
    )


@router.post("/conversations/{conversation_id}/resolve")
async def resolve(
    conversation_id: Id,
    body: ResolveIn,
    service: ServiceDep,
    caller: Caller,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, int]:
    """Close the conversation with an outcome."""
    _desk(caller)
    state = await _state(service.conversations, caller, conversation_id)
    payload: dict[str, Any] = {"outcome": body.outcome}
    if body.note:
        payload["note"] = body.note
    return await _write(
        service.conversations,
        caller,
        state,
        "conversation.resolved",
        payload,
        idempotency_key,
        guard=lambda: _holder(caller, state),
    )

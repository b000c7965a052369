"""The desk: what human agents and supervisors use to take and work conversations.

Every route needs an agent or supervisor token (the policy's ``endpoints.desk``;
the handoff packet is for anyone but customers who may read the conversation). Writes
are desk commands
(:mod:`threadline.engine.desk`) executed as the human acting, with the
request's ``Idempotency-Key`` (or a fresh one): authorised and decided on the
conversation's live state; transitions the state forbids come back as 409
problems. A sensitive call an automated agent asked to make waits for a person:
an agent of the queue it waits in (or a supervisor) approves or denies it here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header
from pydantic import BaseModel, ConfigDict, Field, model_validator

from threadline.api import agent_stream, problems
from threadline.api.auth import Caller
from threadline.api.deps import ServiceDep
from threadline.api.problems import Problem
from threadline.core.conversation import ConversationState
from threadline.core.events import Actor, new_id
from threadline.engine.commands import Command, NoSuchConversation
from threadline.engine.conversations import Conversations
from threadline.engine.desk import (
    AnswerOffer,
    Decide,
    GiveBack,
    Reply,
    Resolve,
    StaleApproval,
    StaleOffer,
    Transfer,
)
from threadline.routing.packet import build_packet
from threadline.routing.presence import AgentPresence
from threadline.routing.worklist import approval_out, waiting_approvals
from threadline.security import Principal, can_read_conversation
from threadline.service import Service

router = APIRouter(tags=["desk"])
# The live work stream (offers, my conversations, queues) is part of the desk API.
router.include_router(agent_stream.router)

problems.register_error(NoSuchConversation, 404, "not-found", "No such conversation")
problems.register_error(StaleOffer, 409, "stale-offer", "The offer is no longer open")
problems.register_error(StaleApproval, 409, "stale-approval", "The approval no longer waits")

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


class DecisionIn(BaseModel):
    """Approve (``reason``: an optional note) or deny (``reason``: why, required)."""

    model_config = ConfigDict(extra="forbid")
    decision: Literal["approve", "deny"]
    reason: Annotated[str | None, Field(max_length=2000)] = None

    @model_validator(mode="after")
    def _a_denial_says_why(self) -> DecisionIn:
        if self.decision == "deny" and not (self.reason or "").strip():
            raise ValueError("a denial needs a reason: the customer is told it")
        return self


# -- helpers -------------------------------------------------------------------------


async def _state(
    conversations: Conversations, caller: Principal, conversation_id: str
) -> ConversationState:
    """The conversation's state, if it exists and ``caller`` may read it."""
    state = await conversations.rehydrate(conversation_id)
    if state.seq == 0:
        raise NoSuchConversation(f"no conversation {conversation_id}")
    can_read_conversation(caller, state)
    return state


async def _execute(service: Service, caller: Principal, command: Command) -> dict[str, int]:
    """Run a desk command as ``caller``: the seq of the event it recorded (a repeated
    ``Idempotency-Key``: of the event the first request recorded)."""
    executed = await service.commands.execute(command, caller)
    return {"seq": executed.last_seq}


# -- the agent -----------------------------------------------------------------------


@router.get("/agents/me")
async def me(service: ServiceDep, caller: Caller) -> dict[str, Any]:
    """The calling agent: id, name, queues, presence and load as the router sees them."""
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


@router.get("/agents/me/approvals")
async def my_approvals(service: ServiceDep, caller: Caller) -> list[dict[str, Any]]:
    """The sensitive calls waiting for the calling agent's decision, in their queues (every
    one, for a supervisor), oldest first: the tool, its arguments and the agent's reason."""
    viewer = agent_stream.own_viewer(caller, service.router)
    found = []
    for approval in waiting_approvals(service.router.state, viewer):
        details, waiting = await agent_stream.approval_details(
            service.conversations, approval_out(approval)
        )
        if waiting:  # else the router has not seen it decided yet
            found.append(details)
    return found


# -- taking an offer -----------------------------------------------------------------


@router.post("/conversations/{conversation_id}/accept")
async def accept(
    conversation_id: Id,
    body: OfferIn,
    service: ServiceDep,
    caller: Caller,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, int]:
    """Take the conversation offered to the calling agent."""
    answer = AnswerOffer(conversation_id, idempotency_key or new_id(), body.offer_id, True)
    return await _execute(service, caller, answer)


@router.post("/conversations/{conversation_id}/decline")
async def decline(
    conversation_id: Id,
    body: OfferIn,
    service: ServiceDep,
    caller: Caller,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, int]:
    """Turn down the conversation offered to the calling agent; the router offers it on."""
    answer = AnswerOffer(conversation_id, idempotency_key or new_id(), body.offer_id, False)
    return await _execute(service, caller, answer)


# -- working a conversation ----------------------------------------------------------


@router.get("/conversations/{conversation_id}/packet")
async def packet(conversation_id: Id, service: ServiceDep, caller: Caller) -> dict[str, Any]:
    """The handoff packet: who the customer is, what happened, what is pending (staff
    only: it holds what the customer is not shown)."""
    state = await _state(service.conversations, caller, conversation_id)
    await service.audit.conversation_read(caller, conversation_id, "packet")
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
    return await _execute(service, caller, Reply(conversation_id, idempotency_key or new_id(),
                                                 body.text))  # fmt: skip


@router.post("/conversations/{conversation_id}/transfer")
async def transfer(
    conversation_id: Id,
    body: TransferIn,
    service: ServiceDep,
    caller: Caller,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, int]:
    """Hand the conversation to another queue."""
    queue = service.router.config.queue(body.queue)
    if queue is None:
        raise Problem(422, "unknown-queue", "No such queue", f"there is no queue {body.queue}")
    transfer = Transfer(conversation_id, idempotency_key or new_id(), queue.name,
                        tuple(queue.skills), body.reason or "")  # fmt: skip
    return await _execute(service, caller, transfer)


@router.post("/conversations/{conversation_id}/return")
async def give_back(
    conversation_id: Id,
    service: ServiceDep,
    caller: Caller,
    idempotency_key: IdempotencyKey = None,
    body: ReturnIn | None = None,
) -> dict[str, int]:
    """Hand the conversation back to the bot."""
    note = body.note if body is not None else None
    return await _execute(service, caller, GiveBack(conversation_id, idempotency_key or new_id(),
                                                    note))  # fmt: skip


@router.post("/conversations/{conversation_id}/resolve")
async def resolve(
    conversation_id: Id,
    body: ResolveIn,
    service: ServiceDep,
    caller: Caller,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, int]:
    """Close the conversation with an outcome."""
    resolve = Resolve(conversation_id, idempotency_key or new_id(), body.outcome, body.note)
    return await _execute(service, caller, resolve)


# -- deciding a sensitive call ---------------------------------------------------------


@router.post("/conversations/{conversation_id}/approvals/{approval_id}")
async def decide(
    conversation_id: Id,
    approval_id: Id,
    body: DecisionIn,
    service: ServiceDep,
    caller: Caller,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, int]:
    """Approve or deny a sensitive call waiting on the conversation (an agent: one waiting
    in their queues); the automated agent then runs it, or tells the customer why not."""
    decision = Decide(conversation_id, idempotency_key or new_id(), approval_id,
                      body.decision == "approve", (body.reason or "").strip())  # fmt: skip
    return await _execute(service, caller, decision)

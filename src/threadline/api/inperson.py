"""The in-person channel: check-in codes, visits and look-ups.

Customers get a check-in code in chat (``POST /chat/checkin-code``); store
associates check them in by code or look them up with a reason, then work the
visit. The store's queue and its kiosk are in :mod:`threadline.api.store_queue`.
Every write takes an ``Idempotency-Key``; a replay answers as the first
request did. Who may call each route is the policy's (``endpoints.associate``,
``endpoints.customer-session``, ``endpoints.look-up``).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header
from pydantic import BaseModel, ConfigDict, Field

from threadline.api import problems
from threadline.api.auth import Caller
from threadline.api.deps import ServiceDep
from threadline.api.problems import Problem
from threadline.channels.inperson.codes import (
    CheckinCodes,
    CheckinGrant,
    CheckinRefused,
    OtherStore,
    TooManyAttempts,
    UsedCode,
    qr_data_url,
)
from threadline.channels.inperson.courier import PostCard
from threadline.channels.inperson.lookup import (
    find_customer,
    looked_up_lately,
    record_lookup,
)
from threadline.channels.inperson.visits import (
    EndVisit,
    HandBack,
    OpenVisit,
    ResolveVisit,
    VisitAction,
    VisitNote,
)
from threadline.core.errors import NotFound
from threadline.core.events import new_id
from threadline.security import Principal, can_read_conversation
from threadline.security.authz import can_open_visit

router = APIRouter(tags=["in person"])
problems.register_error(CheckinRefused, 422, "checkin-code-refused", "Check-in code refused")
problems.register_error(UsedCode, 409, "checkin-code-used", "Check-in code already used")
problems.register_error(TooManyAttempts, 429, "too-many-attempts", "Too many attempts")

Id = Annotated[str, Field(min_length=1, max_length=200)]
IdempotencyKey = Annotated[str | None, Header(max_length=200)]
Code = Annotated[str, Field(min_length=6, max_length=4000)]


class CodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    conversation_id: Id | None = None
    store_id: Id | None = None


class CheckinIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Code


class LookupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    by: Literal["phone", "email", "member"]
    value: Annotated[str, Field(min_length=3, max_length=200)]
    reason: Annotated[str, Field(min_length=3, max_length=500)]


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Annotated[str, Field(min_length=1, max_length=4000)]


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    detail: Annotated[str | None, Field(max_length=500)] = None


class EndIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")] = "completed"


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    note: Annotated[str | None, Field(max_length=2000)] = None


class HandBackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Annotated[str, Field(min_length=1, max_length=4000)]
    mode: Literal["bot", "wait"] = "bot"


# -- helpers ---------------------------------------------------------------------------


async def _grant(codes: CheckinCodes, code: str, caller: Principal) -> CheckinGrant:
    """What a typed code (six digits) or a scanned QR token admits at the caller's store:
    a code issued for another store admits nobody here."""
    if "." in code:
        grant = codes.check_token(code)
    else:
        # The guesser is limited, not their store: a kiosk that guessed wrong too often
        # leaves the store's other kiosks and its associates working.
        grant = await codes.check_digits(code, f"who:{caller.subject}")
    if grant.store_id is not None and grant.store_id != caller.store_id:
        raise OtherStore("this check-in code is for another store")
    return grant


# -- the customer's code -----------------------------------------------------------------


@router.post("/chat/checkin-code", status_code=201)
async def checkin_code(body: CodeIn, service: ServiceDep, caller: Caller) -> dict[str, Any]:
    """A single-use check-in code for the customer's conversation: QR image and six digits."""
    conversation_id = caller.conversation_id or body.conversation_id
    if conversation_id is None:
        raise Problem(422, "validation", "The request does not fit its schema",
                      "conversation_id is required")  # fmt: skip
    if body.store_id is not None:
        service.business.require_location(body.store_id)
    state = await service.conversations.rehydrate(conversation_id)
    if state.seq == 0:
        raise NotFound(f"no conversation {conversation_id}")
    can_read_conversation(caller, state)
    assert caller.customer_id is not None
    issued = await service.inperson.codes.issue(conversation_id, caller.customer_id,
                                                body.store_id)  # fmt: skip
    qr = await asyncio.to_thread(qr_data_url, issued.token)
    card = PostCard(conversation_id, f"checkin-code:{issued.token_id}",
                    service.inperson.cards.message(issued, service.business))  # fmt: skip
    await service.commands.execute(card, caller)
    return {"code": issued.digits, "qr": qr, "token": issued.token,
            "expires_at": issued.expires_at.isoformat(), "store": issued.store_id}  # fmt: skip


# -- associates --------------------------------------------------------------------------


@router.get("/associates/me")
async def associate_me(service: ServiceDep, caller: Caller) -> dict[str, Any]:
    """The calling associate and their store."""
    business = service.business
    person = business.person(caller.subject)
    store = business.location(caller.store_id or "")
    return {
        "id": caller.subject,
        "name": person.name if person else caller.subject,
        "store": {"id": caller.store_id, "name": store.name if store else caller.store_id},
    }


@router.post("/visits/checkin", status_code=201)
async def check_in(body: CheckinIn, service: ServiceDep, caller: Caller,
                   idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Check a customer in by their code (six digits or the QR token): opens the visit."""
    inperson = service.inperson
    seen = f"{caller.subject}:{idempotency_key}" if idempotency_key is not None else None
    answered = inperson.checkins.get(seen) if seen is not None else None
    if answered is not None:
        return answered
    grant = await _grant(inperson.codes, body.code, caller)
    await inperson.codes.use(grant, used_by=caller.subject)
    opening = OpenVisit(grant.conversation_id, idempotency_key or new_id())
    recorded = await inperson.visits.record(caller, opening)
    out = {**recorded.to_dict(), "customer_id": grant.customer_id}
    if seen is not None:
        inperson.checkins.keep(seen, out)
    return out


@router.post("/customers/lookup")
async def look_up(body: LookupIn, service: ServiceDep, caller: Caller,
                  idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Find a customer by phone, email or member id; the reason is recorded first."""
    codes = service.inperson.codes
    who = (f"who:{caller.subject}",)
    codes.attempts.check(*who)
    customer = await find_customer(service.recognition, body.by, body.value)
    if customer is None:
        codes.attempts.fail(*who)
        raise NotFound(f"no customer with that {body.by}")
    conversations = service.conversations
    await record_lookup(
        conversations.store,
        conversations.codec,
        customer.id,
        body.by,
        body.reason,
        caller.subject,
        caller.store_id,
        idempotency_key,
    )
    entries = service.index.of_customer(customer.id)
    return {
        "customer": {"id": customer.id, "name": customer.name, "member_id": customer.member_id},
        "conversations": [
            {"conversation_id": e.conversation_id, "status": e.state.status,
             "channels": sorted(e.channels),
             "updated_at": e.updated_at.isoformat() if e.updated_at else None}
            for e in entries
        ],
    }  # fmt: skip


@router.post("/conversations/{conversation_id}/visit", status_code=201)
async def open_visit(conversation_id: Id, service: ServiceDep, caller: Caller,
                     idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Open a visit on a conversation of a customer the associate just looked up."""
    visits = service.inperson.visits
    state = await visits.state(conversation_id)
    conversations = service.conversations
    looked_up = state.customer_id is not None and await looked_up_lately(
        conversations.store, conversations.codec, state.customer_id, caller.subject
    )
    can_open_visit(caller, state, looked_up)
    opening = OpenVisit(conversation_id, idempotency_key or new_id())
    return (await visits.record(caller, opening)).to_dict()


@router.post("/conversations/{conversation_id}/visit/note")
async def visit_note(conversation_id: Id, body: NoteIn, service: ServiceDep, caller: Caller,
                     idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """An internal note on the visit."""
    note = VisitNote(conversation_id, idempotency_key or new_id(), body.text)
    return (await service.inperson.visits.record(caller, note)).to_dict()


@router.post("/conversations/{conversation_id}/visit/action")
async def visit_action(conversation_id: Id, body: ActionIn, service: ServiceDep, caller: Caller,
                       idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Something done at the counter: ``replaced_device``, ``booked_follow_up``…"""
    action = VisitAction(conversation_id, idempotency_key or new_id(), body.action, body.detail)
    return (await service.inperson.visits.record(caller, action)).to_dict()


@router.post("/conversations/{conversation_id}/visit/end")
async def visit_end(conversation_id: Id, service: ServiceDep, caller: Caller,
                    idempotency_key: IdempotencyKey = None,
                    body: EndIn | None = None) -> dict[str, Any]:  # fmt: skip
    """End the visit (the conversation stays open)."""
    reason = body.reason if body is not None else "completed"
    end = EndVisit(conversation_id, idempotency_key or new_id(), reason)
    return (await service.inperson.visits.record(caller, end)).to_dict()


@router.post("/conversations/{conversation_id}/visit/resolve")
async def visit_resolve(conversation_id: Id, body: ResolveIn, service: ServiceDep, caller: Caller,
                        idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Resolve the conversation with an outcome, ending the visit."""
    resolve = ResolveVisit(conversation_id, idempotency_key or new_id(), body.outcome, body.note)
    return (await service.inperson.visits.record(caller, resolve)).to_dict()


@router.post("/conversations/{conversation_id}/visit/hand-back")
async def visit_hand_back(conversation_id: Id, body: HandBackIn, service: ServiceDep,
                          caller: Caller,
                          idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """End the visit and follow up on chat: the customer gets ``text`` as a chat message."""
    hand_back = HandBack(conversation_id, idempotency_key or new_id(), body.text, body.mode)
    return (await service.inperson.visits.record(caller, hand_back)).to_dict()

"""The in-person channel: check-in codes, visits and look-ups.

Customers get a check-in code in chat (``POST /chat/checkin-code``); store
associates check them in by code or look them up with a reason, then work the
visit. The store's queue and its kiosk are in :mod:`threadline.api.store_queue`.
Every write takes an ``Idempotency-Key``; a replay answers as the first
request did.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, ConfigDict, Field

from threadline.api import problems
from threadline.api.auth import Caller
from threadline.api.problems import Problem
from threadline.business.business import Business
from threadline.channels.inperson.cards import CheckinCards
from threadline.channels.inperson.codes import (
    CheckinCodes,
    CheckinGrant,
    CheckinRefused,
    TooManyAttempts,
    UsedCode,
    qr_data_url,
)
from threadline.channels.inperson.courier import CheckinCourier
from threadline.channels.inperson.lookup import (
    find_customer,
    looked_up_lately,
    record_lookup,
)
from threadline.channels.inperson.queue import StoreQueue
from threadline.channels.inperson.visits import Visits
from threadline.core.conversation import CLOSED_STATES
from threadline.core.errors import NotFound
from threadline.core.events import Actor, Event, utcnow
from threadline.engine.conversations import Conversations
from threadline.security import (
    Forbidden,
    Principal,
    can_read_conversation,
)

router = APIRouter(tags=["in person"])
problems.register_error(CheckinRefused, 422, "checkin-code-refused", "Check-in code refused")
problems.register_error(UsedCode, 409, "checkin-code-used", "Check-in code already used")
problems.register_error(TooManyAttempts, 429, "too-many-attempts", "Too many attempts")

Id = Annotated[str, Field(min_length=1, max_length=200)]
IdempotencyKey = Annotated[str | None, Header(max_length=200)]
Code = Annotated[str, Field(min_length=6, max_length=4000)]
SEEN_CHECKINS: Final = 1000


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


# -- collaborators ---------------------------------------------------------------------


async def start(app: Any) -> None:
    """Send the check-in codes the bot or an agent asks for (from ``app.state.bus``)."""
    state = app.state
    courier = CheckinCourier(state.conversations, _codes(state), _cards(state), state.business)
    await courier.start(state.bus)


def _cards(app_state: Any) -> CheckinCards:
    cards: CheckinCards | None = getattr(app_state, "checkin_cards", None)
    if cards is None:
        cards = app_state.checkin_cards = CheckinCards(app_state.tokens.key)
    return cards


async def checkin_view(
    app_state: Any, card: dict[str, Any], conversation_id: str
) -> dict[str, Any]:
    """A message's check-in card as its customer sees it (the code while it is valid)."""
    return await _cards(app_state).view(card, conversation_id, app_state.business,
                                        used=app_state.revocations.is_revoked,
                                        now=utcnow())  # fmt: skip


def _codes(app_state: Any) -> CheckinCodes:
    codes: CheckinCodes | None = getattr(app_state, "checkin_codes", None)
    if codes is None:
        settings = app_state.settings
        codes = CheckinCodes(
            app_state.tokens.key,
            app_state.store,
            app_state.revocations,
            issuer=settings.token_issuer,
            audience=settings.token_audience,
        )
        app_state.checkin_codes = codes  # fmt: skip
    return codes


def _conversations(request: Request) -> Conversations:
    conversations: Conversations = request.app.state.conversations
    return conversations


def _visits(request: Request) -> Visits:
    return Visits(_conversations(request))


def _queue(app_state: Any) -> StoreQueue:
    return StoreQueue(app_state.store, app_state.conversations.codec)


def _business(request: Request) -> Business:
    business: Business = request.app.state.business
    return business


def _kind(caller: Principal, *kinds: str) -> Principal:
    if caller.kind not in kinds:
        raise Forbidden(f"{caller.kind} {caller.subject}: this is for {' or '.join(kinds)} tokens")
    return caller


def _seen(request: Request) -> OrderedDict[str, dict[str, Any]]:
    """Check-ins answered by idempotency key, so a retried check-in finds its visit."""
    seen: OrderedDict[str, dict[str, Any]] | None = getattr(request.app.state, "checkins", None)
    if seen is None:
        seen = request.app.state.checkins = OrderedDict()
    return seen


async def _grant(request: Request, code: str, caller: Principal) -> CheckinGrant:
    """What a typed code (six digits) or a scanned QR token admits."""
    codes = _codes(request.app.state)
    if "." in code:
        return codes.check_token(code)
    return await codes.check_digits(code, f"who:{caller.subject}", f"store:{caller.store_id}")


# -- the customer's code -----------------------------------------------------------------


@router.post("/chat/checkin-code", status_code=201)
async def checkin_code(body: CodeIn, request: Request, caller: Caller) -> dict[str, Any]:
    """A single-use check-in code for the customer's conversation: QR image and six digits."""
    _kind(caller, "customer")
    conversation_id = caller.conversation_id or body.conversation_id
    if conversation_id is None:
        raise Problem(422, "validation", "The request does not fit its schema",
                      "conversation_id is required")  # fmt: skip
    if body.store_id is not None:
        _business(request).require_store(body.store_id)
    state = await _conversations(request).rehydrate(conversation_id)
    if state.seq == 0:
        raise NotFound(f"no conversation {conversation_id}")
    can_read_conversation(caller, state)
    assert caller.customer_id is not None
    issued = await _codes(request.app.state).issue(conversation_id, caller.customer_id,
                                                   body.store_id)  # fmt: skip
    qr = await asyncio.to_thread(qr_data_url, issued.token)
    if state.status not in CLOSED_STATES:
        message = _cards(request.app.state).message(issued, _business(request))
        chat = next((i for i, leg in state.live_legs.items() if leg.get("channel") == "chat"),
                    None)  # fmt: skip
        event = Event(conversation_id=conversation_id, type="message.sent", payload=message,
                      channel="chat", leg_id=chat, actor=Actor("system", "checkin"),
                      customer_id=state.customer_id,
                      idempotency_key=f"checkin-code:{issued.token_id}")  # fmt: skip
        await _conversations(request).record(conversation_id, [event])
    return {"code": issued.digits, "qr": qr, "token": issued.token,
            "expires_at": issued.expires_at.isoformat(), "store": issued.store_id}  # fmt: skip


# -- associates --------------------------------------------------------------------------


@router.get("/associates/me")
async def associate_me(request: Request, caller: Caller) -> dict[str, Any]:
    """The calling associate and their store."""
    _kind(caller, "associate")
    business = _business(request)
    person = next((a for a in business.associates if a.id == caller.subject), None)
    store = business.store(caller.store_id or "")
    return {
        "id": caller.subject,
        "name": person.name if person else caller.subject,
        "store": {"id": caller.store_id, "name": store.name if store else caller.store_id},
    }


@router.post("/visits/checkin", status_code=201)
async def check_in(body: CheckinIn, request: Request, caller: Caller,
                   idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Check a customer in by their code (six digits or the QR token): opens the visit."""
    _kind(caller, "associate")
    seen = _seen(request)
    if idempotency_key is not None and f"{caller.subject}:{idempotency_key}" in seen:
        return seen[f"{caller.subject}:{idempotency_key}"]
    codes = _codes(request.app.state)
    grant = await _grant(request, body.code, caller)
    await codes.use(grant, used_by=caller.subject)
    recorded = await _visits(request).open(caller, grant.conversation_id, idempotency_key)
    out = {**recorded.to_dict(), "customer_id": grant.customer_id}
    if idempotency_key is not None:
        seen[f"{caller.subject}:{idempotency_key}"] = out
        while len(seen) > SEEN_CHECKINS:
            seen.popitem(last=False)
    return out


@router.post("/customers/lookup")
async def look_up(body: LookupIn, request: Request, caller: Caller,
                  idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Find a customer by phone, email or member id; the reason is recorded first."""
    _kind(caller, "associate", "supervisor", "admin")
    codes = _codes(request.app.state)
    who = (f"who:{caller.subject}", f"store:{caller.store_id}")
    codes.attempts.check(*who)
    customer = find_customer(_business(request), body.by, body.value)
    if customer is None:
        codes.attempts.fail(*who)
        raise NotFound(f"no customer with that {body.by}")
    conversations = _conversations(request)
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
    entries = request.app.state.index.of_customer(customer.id)
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
async def open_visit(conversation_id: Id, request: Request, caller: Caller,
                     idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Open a visit on a conversation of a customer the associate just looked up."""
    _kind(caller, "associate")
    visits = _visits(request)
    state = await visits.state(conversation_id)
    conversations = _conversations(request)
    if state.customer_id is None or not await looked_up_lately(
        conversations.store, conversations.codec, state.customer_id, caller.subject
    ):
        raise Forbidden(f"associate {caller.subject}: look the customer up (with a reason) "
                        "or check them in by code first")  # fmt: skip
    return (await visits.open(caller, conversation_id, idempotency_key)).to_dict()


@router.post("/conversations/{conversation_id}/visit/note")
async def visit_note(conversation_id: Id, body: NoteIn, request: Request, caller: Caller,
                     idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """An internal note on the visit."""
    _kind(caller, "associate")
    visits = _visits(request)
    return (await visits.note(caller, conversation_id, body.text, idempotency_key)).to_dict()


@router.post("/conversations/{conversation_id}/visit/action")
async def visit_action(conversation_id: Id, body: ActionIn, request: Request, caller: Caller,
                       idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Something done at the counter: ``replaced_device``, ``booked_follow_up``…"""
    _kind(caller, "associate")
    recorded = await _visits(request).action(caller, conversation_id, body.action, body.detail,
                                             idempotency_key)  # fmt: skip
    return recorded.to_dict()


@router.post("/conversations/{conversation_id}/visit/end")
async def visit_end(conversation_id: Id, request: Request, caller: Caller,
                    idempotency_key: IdempotencyKey = None,
                    body: EndIn | None = None) -> dict[str, Any]:  # fmt: skip
    """End the visit (the conversation stays open)."""
    _kind(caller, "associate")
    reason = body.reason if body is not None else "completed"
    return (await _visits(request).end(caller, conversation_id, reason, idempotency_key)).to_dict()


@router.post("/conversations/{conversation_id}/visit/resolve")
async def visit_resolve(conversation_id: Id, body: ResolveIn, request: Request, caller: Caller,
                        idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Resolve the conversation with an outcome, ending the visit."""
    _kind(caller, "associate")
    recorded = await _visits(request).resolve(caller, conversation_id, body.outcome, body.note,
                                              idempotency_key)  # fmt: skip
    return recorded.to_dict()


@router.post("/conversations/{conversation_id}/visit/hand-back")
async def visit_hand_back(conversation_id: Id, body: HandBackIn, request: Request,
                          caller: Caller,
                          idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """End the visit and follow up on chat: the customer gets ``text`` as a chat message."""
    _kind(caller, "associate")
    recorded = await _visits(request).hand_back(caller, conversation_id, body.text, body.mode,
                                                idempotency_key)  # fmt: skip
    return recorded.to_dict()

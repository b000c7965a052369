"""Identity over HTTP: resolve, link, verify a chat customer, merge, un-merge, conflicts.

* ``GET /identity/resolve?kind=&value=&reason=``: staff; ``reason`` is required
  (422 without) and the look-up is recorded as ``customer.looked_up``.
* ``GET|POST /customers/{id}/identifiers``: staff; a ``postcode`` verifies the
  link by knowledge, otherwise it is a claim. A conflict answers 409.
* ``GET /chat/verify/nonce`` and ``POST /chat/verify``: a customer session
  proves itself with an ID token of the trusted issuer; the visitor id and the
  IdP subject are linked, verified, to the real customer.
* ``POST /customers/{id}/merge`` and ``/unmerge``, ``GET /identity/conflicts``,
  ``POST /identity/conflicts/{id}/resolve``: supervisors and admins.
* ``GET /customers/{id}/lockout``: staff; ``POST /customers/{id}/unlock``: supervisors
  and admins lift the lockout that wrong proofs put on a customer.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Annotated, Final, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from threadline.api import problems
from threadline.api.auth import Caller
from threadline.api.deps import ServiceDep
from threadline.api.directory import mask_email, mask_phone
from threadline.api.documented import problem_responses
from threadline.api.problems import Problem
from threadline.core.errors import NotFound
from threadline.core.events import Actor, new_id
from threadline.identity.fold import Conflict, Link
from threadline.identity.identifiers import Identifier, email, idp, parse
from threadline.identity.oidc import PROBLEMS
from threadline.identity.service import LinkOutcome
from threadline.security import Forbidden, Principal
from threadline.security.authz import allows, can_see_identifiers
from threadline.service import Service

router = APIRouter(tags=["identity"])
for _cls, _status, _slug, _title in PROBLEMS:
    problems.register_error(_cls, _status, _slug, _title)

SESSION_TTL: Final = timedelta(days=1)
KindName = Literal["phone", "email", "device", "member", "idp"]
Reason = Annotated[str, Field(min_length=3, max_length=200)]


def _human(caller: Principal) -> Actor:
    """The person acting (who may call the route is the policy's: staff, or overseers)."""
    return Actor("human", caller.subject)


def _mask(kind: str, value: str, caller: Principal) -> str:
    if allows(can_see_identifiers, caller):
        return value
    if kind == "phone":
        return mask_phone(value)
    if kind == "email":
        return mask_email(value)
    return value[:4] + "***" if kind in {"device", "idp"} else value


class ResolutionOut(BaseModel):
    customer_id: str
    verified: bool
    method: str
    kind: str


class IdentifierOut(BaseModel):
    kind: str
    value: str = Field(description="Masked for agents; in full for supervisors and admins.")
    verified: bool
    method: str
    linked_by: str


def _out(link: Link, caller: Principal) -> IdentifierOut:
    return IdentifierOut(kind=link.kind, value=_mask(link.kind, link.value, caller),
                         verified=link.verified, method=link.method,
                         linked_by=link.linked_by)  # fmt: skip


@router.get("/identity/resolve", response_model=ResolutionOut,
            responses=problem_responses(401, 403, 404, 422))  # fmt: skip
async def resolve(
    service: ServiceDep,
    caller: Caller,
    kind: Annotated[KindName, Query()],
    value: Annotated[str, Query(min_length=1, max_length=300)],
    reason: Annotated[str, Query(min_length=3, max_length=200, description="Why you look")],
) -> ResolutionOut:
    """The customer an identifier belongs to (the directory, else the business's customer
    system, whose answer the directory learns); the look-up and its reason are recorded."""
    actor = _human(caller)
    identity = service.identity
    if kind in {"phone", "email", "member"}:
        await service.recognition.customer(kind, value)
    found = await identity.resolve(kind, value)
    if found is None:
        raise Problem(404, "not-found", "No such customer", f"no customer has this {kind}")
    await identity.record_look_up(found.customer_id, kind, by=caller.subject, reason=reason,
                                  actor=actor)  # fmt: skip
    return ResolutionOut(customer_id=found.customer_id, verified=found.verified,
                         method=found.method, kind=kind)  # fmt: skip


@router.get("/customers/{customer_id}/identifiers", response_model=list[IdentifierOut],
            responses=problem_responses(401, 403))  # fmt: skip
async def identifiers(customer_id: str, service: ServiceDep, caller: Caller) -> list[IdentifierOut]:
    """The customer's identifiers with their verification level."""
    return [_out(x, caller) for x in await service.identity.identifiers(customer_id)]


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["phone", "email", "member"]
    value: str = Field(min_length=1, max_length=300)
    reason: Reason
    postcode: str | None = Field(
        None, min_length=3, max_length=12, description="The customer's postcode: verifies it"
    )


class LinkOut(BaseModel):
    status: str
    customer_id: str
    verified: bool


def _conflict(outcome: LinkOutcome) -> Problem:
    return Problem(409, "identity-conflict", "The identifier belongs to another customer",
                   f"{outcome.identifier.kind} is held by another customer; a supervisor decides",
                   conflict_id=outcome.conflict_id)  # fmt: skip


@router.post("/customers/{customer_id}/identifiers", status_code=201, response_model=LinkOut,
             responses=problem_responses(401, 403, 409, 422))  # fmt: skip
async def link(customer_id: str, body: LinkIn, service: ServiceDep, caller: Caller) -> LinkOut:
    """Link an identifier: a claim, or verified when the postcode matches."""
    actor = _human(caller)
    identifier = parse(body.kind, body.value)
    identity = service.identity
    if body.postcode is not None:
        verifications = service.verifications
        outcome = await verifications.check_knowledge(customer_id, identifier, body.postcode,
                                                      actor=actor)  # fmt: skip
        if outcome is None:
            raise Problem(422, "verification-failed", "Verification failed",
                          "the postcode does not match")  # fmt: skip
    else:
        outcome = await identity.link(customer_id, identifier, verified=False, method="typed",
                                      linked_by=caller.subject, reason=body.reason,
                                      actor=actor)  # fmt: skip
    if outcome.status == "conflict":
        raise _conflict(outcome)
    found = await identity.resolve(identifier.kind, identifier.value)
    return LinkOut(status=outcome.status, customer_id=outcome.customer_id,
                   verified=found is not None and found.verified)  # fmt: skip


# -- chat customers ----------------------------------------------------------------------


def nonce_of(session: Principal) -> str:
    """The nonce an ID token must carry for this customer session (bound to its token id)."""
    return hashlib.sha256(f"threadline-oidc-nonce:{session.token_id}".encode()).hexdigest()


def _session(caller: Principal) -> str:
    """The customer of the session (the policy lets only customer sessions call)."""
    if caller.customer_id is None:
        raise Forbidden("this needs a customer session token")
    return caller.customer_id


class NonceOut(BaseModel):
    nonce: str


@router.get("/chat/verify/nonce", response_model=NonceOut, responses=problem_responses(401, 403))
async def chat_nonce(caller: Caller) -> NonceOut:
    """The nonce to send to the identity provider for this chat session."""
    _session(caller)
    return NonceOut(nonce=nonce_of(caller))


class VerifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id_token: str = Field(min_length=10, max_length=16000)
    conversation_id: str | None = Field(
        None, min_length=1, max_length=200,
        description="The visitor's chat conversation: it becomes the customer's, proven by "
        "the sign-in, and joins her open conversation from another channel if she has one.",
    )  # fmt: skip


class VerifyOut(BaseModel):
    customer_id: str
    visitor_id: str
    verified: bool
    level: str = Field(description="The proof level the business grants the sign-in.")
    conversation_id: str | None = Field(
        None, description="The conversation the sign-in was recorded on, if one was named."
    )
    token: str = Field(description="A customer session token for the verified customer.")


@router.post("/chat/verify", response_model=VerifyOut,
             responses=problem_responses(401, 403, 404, 409, 422))  # fmt: skip
async def chat_verify(body: VerifyIn, service: ServiceDep, caller: Caller) -> VerifyOut:
    """Verify a chat visitor with an ID token; links the visitor to the real customer.

    With ``conversation_id``, the visitor's chat is the customer's from now on: its
    timeline records the sign-in (``identity.linked``, method ``oidc``, at the level the
    business grants it), so the bot asks no more proof for data that level covers.
    """
    visitor = _session(caller)
    oidc = service.oidc
    if oidc is None:
        raise Problem(404, "not-found", "No identity provider",
                      "this deployment trusts no identity provider")  # fmt: skip
    claims = await oidc.verify(body.id_token, nonce_of(caller))
    if body.conversation_id is not None:  # refused before anything is linked
        chat = await service.conversations.rehydrate(body.conversation_id)
        if chat.seq == 0 or (visitor != chat.customer_id and visitor not in chat.aliases):
            raise NotFound(f"no conversation {body.conversation_id} for this customer")
    identity = service.identity
    subject = idp(oidc.issuer, claims["sub"])
    found = await identity.resolve("idp", subject.value)
    customer_id = found.customer_id if found is not None else None
    if customer_id is None and claims.get("email_verified") is True and claims.get("email"):
        customer_id = await service.recognition.customer("email", email(str(claims["email"])).value)
    customer_id = customer_id or "cus-" + new_id()
    actor = Actor("customer", customer_id)
    device = Identifier("device", visitor)
    for identifier in (subject, device):
        outcome = await identity.link(customer_id, identifier, verified=True, method="oidc",
                                      linked_by=oidc.issuer, reason="ID token",
                                      actor=actor)  # fmt: skip
        if outcome.status == "conflict":
            raise _conflict(outcome)
    level = service.business.pack.verification.level_of("oidc")
    if body.conversation_id is not None:
        await service.chat.sign_in(body.conversation_id, visitor, customer_id, "oidc", level)
    issued = service.tokens.issue(customer_id, ["customer"], SESSION_TTL,
                                            {"customer": customer_id})  # fmt: skip
    return VerifyOut(customer_id=customer_id, visitor_id=visitor, verified=True, level=level,
                     conversation_id=body.conversation_id, token=issued.token)  # fmt: skip


# -- supervisors: merges and conflicts ---------------------------------------------------


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    into: str = Field(min_length=1, max_length=200)
    reason: Reason


class UnmergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason


class MergeOut(BaseModel):
    merge_id: str
    customer_id: str


@router.post("/customers/{customer_id}/merge", response_model=MergeOut,
             responses=problem_responses(401, 403, 404, 409, 422))  # fmt: skip
async def merge(customer_id: str, body: MergeIn, service: ServiceDep, caller: Caller) -> MergeOut:
    """Merge this customer into ``into``: its identifiers move, its history stays."""
    actor = _human(caller)
    merge_id = await service.identity.merge(customer_id, body.into, reason=body.reason,
                                              by=caller.subject, actor=actor)  # fmt: skip
    return MergeOut(merge_id=merge_id, customer_id=body.into)


@router.post("/customers/{customer_id}/unmerge", response_model=MergeOut,
             responses=problem_responses(401, 403, 409, 422))  # fmt: skip
async def unmerge(
    customer_id: str, body: UnmergeIn, service: ServiceDep, caller: Caller
) -> MergeOut:
    """Undo the merge that absorbed this customer."""
    actor = _human(caller)
    merge_id = await service.identity.unmerge(customer_id, reason=body.reason,
                                                by=caller.subject, actor=actor)  # fmt: skip
    return MergeOut(merge_id=merge_id, customer_id=customer_id)


class LockoutOut(BaseModel):
    customer_id: str
    locked: bool = Field(description="Whether proofs by knowledge and code are stopped.")
    failures: int = Field(description="Wrong proofs that count now, on any channel.")
    limit: int = Field(description="Wrong proofs that stop proofs (the pack's lockout).")


class UnlockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason


async def _lockout(service: Service, customer_id: str) -> LockoutOut:
    policy = service.business.pack.verification.lockout
    failures = await service.lockouts.customer_failures(customer_id, policy)
    return LockoutOut(customer_id=customer_id, locked=failures >= policy.customer_failures,
                      failures=failures, limit=policy.customer_failures)  # fmt: skip


@router.get("/customers/{customer_id}/lockout", response_model=LockoutOut,
            responses=problem_responses(401, 403))  # fmt: skip
async def lockout(customer_id: str, service: ServiceDep, caller: Caller) -> LockoutOut:
    """Whether wrong proofs have stopped proofs for this customer."""
    return await _lockout(service, customer_id)


@router.post("/customers/{customer_id}/unlock", response_model=LockoutOut,
             responses=problem_responses(401, 403, 422))  # fmt: skip
async def unlock(
    customer_id: str, body: UnlockIn, service: ServiceDep, caller: Caller
) -> LockoutOut:
    """Lift the lockout: the wrong proofs so far stop counting against the customer."""
    actor = _human(caller)
    await service.identity.record(customer_id, "verification.unlocked",
                                  {"unlocked_by": caller.subject, "reason": body.reason}, actor,
                                  key=f"unlock:{new_id()}")  # fmt: skip
    return await _lockout(service, customer_id)


class ConflictOut(BaseModel):
    conflict_id: str
    kind: str
    value: str
    claimed_for: str
    held_by: str
    verified: bool
    method: str
    linked_by: str
    reason: str
    status: str
    resolved_by: str | None


def _conflict_out(c: Conflict) -> ConflictOut:
    kind, _, value = c.key.partition(":")
    return ConflictOut(conflict_id=c.conflict_id, kind=kind, value=value,
                       claimed_for=c.claimed_for, held_by=c.held_by, verified=c.verified,
                       method=c.method, linked_by=c.linked_by, reason=c.reason, status=c.status,
                       resolved_by=c.resolved_by)  # fmt: skip


@router.get("/identity/conflicts", response_model=list[ConflictOut],
            responses=problem_responses(401, 403, 422))  # fmt: skip
async def conflicts(
    service: ServiceDep,
    caller: Caller,
    status: Annotated[Literal["open", "keep", "move", "all"], Query()] = "open",
) -> list[ConflictOut]:
    """Identifiers claimed for two customers, oldest first."""
    found = await service.identity.conflicts(None if status == "all" else status)
    return [_conflict_out(c) for c in found]


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    resolution: Literal["keep", "move"]
    note: str = Field("", max_length=2000)


@router.post("/identity/conflicts/{conflict_id}/resolve", response_model=ConflictOut,
             responses=problem_responses(401, 403, 404, 409, 422))  # fmt: skip
async def resolve_conflict(
    conflict_id: str, body: ResolveIn, service: ServiceDep, caller: Caller
) -> ConflictOut:
    """Keep the identifier with its holder, or move it to the claimant."""
    actor = _human(caller)
    c = await service.identity.resolve_conflict(conflict_id, body.resolution,
                                                  by=caller.subject, note=body.note,
                                                  actor=actor)  # fmt: skip
    return _conflict_out(c)

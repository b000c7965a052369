"""Consent over HTTP: a customer gives or withdraws consent on their own conversation, and a
person records what a customer told them.

``POST /conversations/{id}/consent`` with ``{purpose, granted}``: from a customer's token it
is their own decision (basis ``express``); from the agent holding the conversation (or a
supervisor) it is what the customer said to them (basis ``verbal``). Withdrawing
``ai_processing`` hands the conversation to a person at once.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Header
from pydantic import BaseModel, ConfigDict, Field

from threadline.api.auth import Caller
from threadline.api.deps import ServiceDep
from threadline.api.documented import problem_responses
from threadline.api.problems import Problem
from threadline.business.model import ConsentPurposeName
from threadline.core.events import Actor, Event, Lineage, new_id
from threadline.engine.commands import AppendEvents
from threadline.security import Principal

router = APIRouter(prefix="/conversations", tags=["consent"])

LINEAGE: Final = Lineage("consent-api", "1")
Id = Annotated[str, Field(min_length=1, max_length=200)]


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    purpose: ConsentPurposeName
    granted: bool


class ConsentOut(BaseModel):
    conversation_id: str
    purpose: str
    granted: bool
    basis: str
    consent: dict[str, bool] = Field(description="The conversation's consent, purpose by purpose.")


def _actor(caller: Principal) -> tuple[Actor, str]:
    if caller.kind == "customer" and caller.customer_id is not None:
        return Actor("customer", caller.customer_id), "express"
    return Actor("human", caller.subject), "verbal"


@router.post("/{conversation_id}/consent", response_model=ConsentOut,
             responses=problem_responses(401, 403, 404, 409, 422))  # fmt: skip
async def record_consent(
    conversation_id: Id,
    body: ConsentIn,
    service: ServiceDep,
    caller: Caller,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> ConsentOut:
    """Give or withdraw consent for one purpose; it takes effect at once."""
    state = await service.conversations.rehydrate(conversation_id)
    if state.seq == 0:
        raise Problem(404, "not-found", "Not found", f"no conversation {conversation_id}")
    actor, basis = _actor(caller)
    live = [leg["channel"] for leg in state.legs.values() if leg.get("ended_at") is None]
    payload: dict[str, Any] = {"purpose": body.purpose, "basis": basis}
    event = Event(
        conversation_id=conversation_id,
        type="consent.granted" if body.granted else "consent.revoked",
        payload=payload,
        channel=live[-1] if live else "chat",
        actor=actor,
        customer_id=state.customer_id,
        idempotency_key=idempotency_key or f"consent:{new_id()}",
        lineage=LINEAGE,
    )
    await service.commands.execute(AppendEvents.of([event]), caller)
    after = await service.conversations.rehydrate(conversation_id)
    return ConsentOut(conversation_id=conversation_id, purpose=body.purpose,
                      granted=body.granted, basis=basis, consent=dict(after.consent))  # fmt: skip

"""Data-subject requests (admin token): ``POST /admin/customers/{id}/erase`` and
``GET /admin/customers/{id}/export``.

Erasure destroys the data keys of the customer and of every identity that became them,
purges what the service derived from their data and answers with what it destroyed;
the export answers with everything held of them as one JSON bundle
(:mod:`threadline.governance`). Both are recorded in the audit trail. An unknown customer
is 404, an id that cannot name one 422, anyone but an admin 403.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel

from threadline.api.auth import Caller
from threadline.api.deps import ServiceDep
from threadline.api.documented import problem_responses
from threadline.governance import Requester, export_subject, find_subject, record_export
from threadline.security import Forbidden, Principal

router = APIRouter(tags=["admin"])


class ErasedOut(BaseModel):
    customer_id: str
    erasure_id: str
    #: Every id erased: the customer's, those merged into them, and anonymous ones.
    identities: list[str]
    conversations: list[str]
    keys_destroyed: int
    snapshots_deleted: int
    directory_rows: int
    #: Where ``customer.erased`` landed in the log.
    event_position: int


def _admin(caller: Principal, what: str) -> Requester:
    if caller.kind != "admin":
        raise Forbidden(f"{caller.kind} {caller.subject}: only an admin {what}")
    return Requester(caller.kind, caller.subject)


@router.post(
    "/admin/customers/{customer_id}/erase",
    response_model=ErasedOut,
    responses=problem_responses(401, 403, 404, 422),
)
async def erase(customer_id: str, service: ServiceDep, caller: Caller) -> ErasedOut:
    """Erase the customer's personal data and every identity that became them."""
    by = _admin(caller, "erases a customer")
    erased = await service.erasure.erase(customer_id, by)
    return ErasedOut(
        customer_id=erased.customer_id, erasure_id=erased.erasure_id,
        identities=list(erased.identities), conversations=list(erased.conversations),
        keys_destroyed=erased.keys_destroyed, snapshots_deleted=erased.snapshots_deleted,
        directory_rows=erased.directory_rows, event_position=erased.position,
    )  # fmt: skip


@router.get(
    "/admin/customers/{customer_id}/export",
    response_class=Response,
    responses={
        200: {"description": "The bundle", "content": {"application/json": {}}},
        **problem_responses(401, 403, 404, 422),
    },
)
async def export(customer_id: str, service: ServiceDep, caller: Caller) -> Response:
    """Everything held of the customer, decrypted, as one JSON bundle (an access request)."""
    by = _admin(caller, "exports a customer's data")
    found = await find_subject(customer_id, service.identity, service.index)
    bundle = await export_subject(
        found, service.identity, audit=service.audit, codec=service.conversations.codec
    )
    await record_export(service.audit, found, by)
    return Response(orjson.dumps(bundle), media_type="application/json")

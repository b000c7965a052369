"""``POST /admin/business/reload``: read the business pack again (admin token).

A valid pack takes effect for new turns, calls and look-ups and the answer
names it (id and digest); an invalid one is refused with 422 and every problem
the checker found, file and line, and the running pack stays.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from threadline.api.auth import Caller
from threadline.api.deps import ServiceDep
from threadline.api.documented import problem_responses
from threadline.api.problems import Problem
from threadline.audit.actions import business_reloaded
from threadline.business.loader import PackError
from threadline.service.reload import reload_business

router = APIRouter(tags=["admin"])


class ReloadedOut(BaseModel):
    business: str
    name: str
    digest: str
    previous_digest: str


@router.post(
    "/admin/business/reload",
    response_model=ReloadedOut,
    responses=problem_responses(401, 403, 422),
)
async def reload(service: ServiceDep, caller: Caller) -> ReloadedOut:
    """Read the business pack again; the running one stays if the new one has problems."""
    previous = service.business.digest
    try:
        business = await reload_business(service)
    except PackError as exc:
        problems: list[dict[str, Any]] = [
            {"file": p.file, "line": p.line, "where": p.where, "message": p.message}
            for p in exc.problems
        ]
        raise Problem(422, "business-pack", "The business pack has problems",
                      f"{len(problems)} problems; the running pack stays",
                      problems=problems) from None  # fmt: skip
    await service.audit.record(business_reloaded(caller, business.id, business.digest, previous))
    return ReloadedOut(business=business.id, name=business.name, digest=business.digest,
                       previous_digest=previous)  # fmt: skip

"""Who is calling: the verified bearer token of a request, as a FastAPI dependency."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from threadline.api.deps import ServiceDep
from threadline.security import Principal, bearer_token


async def principal(request: Request, service: ServiceDep) -> Principal:
    """The principal the request's ``Authorization: Bearer`` token proves.

    Raises an Unauthenticated subclass (401 with a ``WWW-Authenticate`` challenge)
    when the token is missing or refused.
    """
    token = bearer_token(request.headers.get("authorization"))
    return service.verifier.verify(token)


#: Declare a parameter ``caller: Caller`` to require an authenticated caller.
Caller = Annotated[Principal, Depends(principal)]

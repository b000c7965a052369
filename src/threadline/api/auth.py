"""Who is calling: the verified bearer token of a request or of a WebSocket.

A request carries its token in ``Authorization: Bearer``. A browser cannot set
headers on a WebSocket, so it offers the token as a subprotocol, as Kubernetes
does: ``new WebSocket(url, ["threadline", "threadline.bearer." + token])``.
Tokens are JWTs (base64url and dots), which the subprotocol header carries as
they are. A token in the URL (``?token=``) is refused: proxies and access logs
keep URLs.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import Depends, Request, WebSocket

from threadline.api.access import verified
from threadline.api.deps import ServiceDep
from threadline.security import MalformedToken, Principal, bearer_token

#: The subprotocol a socket is accepted with; never the one that carries the token.
SUBPROTOCOL: Final = "threadline"
#: The prefix of the offered subprotocol that carries the bearer token.
BEARER_SUBPROTOCOL: Final = "threadline.bearer."


def bearer_subprotocols(token: str) -> list[str]:
    """The subprotocols a client offers to open a socket as ``token``."""
    return [SUBPROTOCOL, BEARER_SUBPROTOCOL + token]


class TokenInQuery(MalformedToken):
    """A socket put its token in the URL, where proxies and access logs keep it."""


async def principal(request: Request, service: ServiceDep) -> Principal:
    """The principal the request's ``Authorization: Bearer`` token proves.

    Raises an Unauthenticated subclass (401 with a ``WWW-Authenticate`` challenge)
    when the token is missing or refused. The route's authorization verified it
    already (:func:`~threadline.api.access.authorize_route`) unless anyone may call it.
    """
    known = verified(request)
    if known is not None:
        return known
    token = bearer_token(request.headers.get("authorization"))
    return service.verifier.verify(token)


#: Declare a parameter ``caller: Caller`` to require an authenticated caller.
Caller = Annotated[Principal, Depends(principal)]


def _socket_token(websocket: WebSocket) -> str:
    if "token" in websocket.query_params:
        raise TokenInQuery(
            "a token in the URL (?token=) is refused, as proxies and access logs keep URLs: "
            f"offer the subprotocols '{SUBPROTOCOL}' and '{BEARER_SUBPROTOCOL}<token>', "
            "or send an Authorization: Bearer header"
        )
    offered: list[str] = websocket.scope.get("subprotocols", [])
    tokens = [p[len(BEARER_SUBPROTOCOL) :] for p in offered if p.startswith(BEARER_SUBPROTOCOL)]
    header = websocket.headers.get("authorization")
    if len(tokens) + (header is not None) > 1:
        raise MalformedToken("offer one token: one bearer subprotocol or the Authorization header")
    if tokens:
        if not tokens[0]:
            raise MalformedToken(f"the subprotocol '{BEARER_SUBPROTOCOL}' carries no token")
        return tokens[0]
    return bearer_token(header)


async def accept_socket(websocket: WebSocket) -> str:
    """Accept ``websocket`` and return the bearer token it offers, not yet verified.

    The token comes from the offered subprotocol ``threadline.bearer.<token>``
    (browsers) or from an ``Authorization: Bearer`` header (other clients). The
    socket is accepted with the subprotocol ``threadline`` when offered, so the
    token is never echoed. It is accepted before the token is read, so the
    endpoint can report a refusal on it (an error frame, then 1008): raises
    TokenInQuery for a ``?token=`` in the URL, MissingToken when no token is
    offered, MalformedToken when more than one is.
    """
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    return _socket_token(websocket)

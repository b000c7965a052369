"""Who may use each route: the policy engine decides, before any handler runs.

:func:`authorize_route` is a dependency of every route of the app. For an HTTP
request it asks the policy (:func:`~threadline.security.authz.can_call`, or
:func:`~threadline.security.authz.can_view` for a page) whether anyone may call
the endpoint (``"GET /agents/{agent_id}"``); if not, it verifies the bearer
token and asks again for its principal, with what the path names (the agent,
store, customer or queue). No token where one is needed is 401; a refusal is
403 with the policy's reason. The verified principal is kept on the request,
so the route's ``Caller`` is not verified twice. A WebSocket is decided when
it opens and has a token (:func:`open_socket`), so the refusal can be sent on it.
Within a route, what the conversation, queue or offer allows is decided on its
live state, by the same engine.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import HTMLResponse
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

from threadline.api.deps import ServiceDep
from threadline.security import Forbidden, Principal, bearer_token
from threadline.security.authz import allows, can_call, can_open, can_view, targets


def route_of(connection: HTTPConnection) -> str:
    """The path template of the route that took ``connection``: ``/agents/{agent_id}``."""
    route: Any = connection.scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        raise Forbidden("anonymous: the request matched no route")
    return path


def _is_page(connection: HTTPConnection) -> bool:
    return getattr(connection.scope.get("route"), "response_class", None) is HTMLResponse


async def authorize_route(connection: HTTPConnection, service: ServiceDep) -> None:
    """Refuse an HTTP request its route's policy does not allow (401 without a needed token,
    403 otherwise); a WebSocket is decided by its route as it opens."""
    if connection.scope["type"] != "http":
        return
    path = route_of(connection)
    if _is_page(connection):
        can_view(None, path)  # pages take no token: public, or refused to everyone
        return
    endpoint = f"{connection.scope['method']} {path}"
    target = targets(connection.path_params)
    if allows(can_call, None, endpoint, target):
        return
    caller = service.verifier.verify(bearer_token(connection.headers.get("authorization")))
    connection.state.principal = caller
    can_call(caller, endpoint, target)


def verified(connection: HTTPConnection) -> Principal | None:
    """The principal :func:`authorize_route` verified for this request, if it did."""
    caller = getattr(connection.state, "principal", None)
    return caller if isinstance(caller, Principal) else None


def open_socket(websocket: WebSocket, caller: Principal) -> None:
    """Forbidden unless ``caller`` may open ``websocket``'s route, for what its path names."""
    can_open(caller, route_of(websocket), targets(websocket.path_params))

"""The one dependency every route takes: the running :class:`~threadline.service.Service`.

Declare ``service: ServiceDep`` on an HTTP or WebSocket route to use its parts.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from threadline.service import Service


def service_of(app: Starlette) -> Service:
    """The service ``app`` runs, once its lifespan has started it."""
    service = getattr(app.state, "service", None)
    if not isinstance(service, Service):
        raise RuntimeError("the service is not running: enter the app's lifespan first")
    return service


def service(connection: HTTPConnection) -> Service:
    """The running service, for a request or a WebSocket."""
    return service_of(connection.app)


#: Declare a parameter ``service: ServiceDep`` to use the service's parts.
ServiceDep = Annotated[Service, Depends(service)]

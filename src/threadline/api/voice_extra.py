"""Which voice endpoints the service has: the phone channel, or 503s without its extra.

The phone channel (:mod:`threadline.api.voice`) imports the ``voice`` extra
(Twilio, faster-whisper, webrtcvad). A service installed without it still
starts; every request under ``/voice/`` then answers 503 problem+json with the
install hint, and a WebSocket there is accepted and closed with the hint as
its reason, so a misrouted call fails clearly rather than with a 404.
"""

from __future__ import annotations

from typing import Final, NoReturn

from fastapi import APIRouter, WebSocket

from threadline.api.problems import Problem
from threadline.channels.voice import INSTALL_HINT, missing

#: RFC 6455: the server hit a condition that keeps it from serving the socket.
UNAVAILABLE: Final = 1011
METHODS: Final = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def voice_router() -> APIRouter:
    """The phone channel's router when the ``voice`` extra is installed, else :data:`router`."""
    if missing() is not None:
        return router
    from threadline.api import voice  # imports the extra

    return voice.router


router = APIRouter(include_in_schema=False)


@router.api_route("/voice/{path:path}", methods=METHODS, response_model=None)
async def voice_off(path: str) -> NoReturn:
    """Every voice webhook: 503 with the install hint."""
    raise Problem(503, "voice-off", "Voice is off", INSTALL_HINT)


@router.websocket("/voice/{path:path}")
async def voice_off_socket(websocket: WebSocket, path: str) -> None:
    """A media stream: accepted, then closed with the install hint as its reason."""
    await websocket.accept()
    await websocket.close(code=UNAVAILABLE, reason=INSTALL_HINT)

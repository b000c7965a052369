"""The customer chat socket: ``/chat/ws``, speaking :mod:`threadline.channels.chat.protocol`."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ValidationError

from threadline.api.access import open_socket
from threadline.api.auth import accept_socket
from threadline.api.deps import ServiceDep
from threadline.channels.chat.adapter import ChatAdapter, ChatLeg
from threadline.channels.chat.protocol import (
    FRAME,
    VISIBLE,
    Attachment,
    ConsentFrame,
    Hello,
    Message,
    visible,
)
from threadline.core.errors import ThreadlineError
from threadline.core.events import new_id, utcnow
from threadline.security import (
    Forbidden,
    TokenVerifier,
    Unauthenticated,
)
from threadline.service import Service

router = APIRouter(tags=["chat"])
HELLO_TIMEOUT = 10.0


class BinaryFrame(ValueError):
    """A binary frame where the protocol speaks JSON text."""


async def _text(websocket: WebSocket) -> str:
    """The next text frame; a binary one raises :class:`BinaryFrame`."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    if text is None:
        raise BinaryFrame("frames are JSON text; a binary frame is refused")
    return str(text)


async def _send(websocket: WebSocket, frame: dict[str, Any]) -> None:
    await websocket.send_text(orjson.dumps(frame).decode())


async def _error(websocket: WebSocket, code: str, detail: str) -> None:
    await _send(websocket, {"type": "error", "code": code, "detail": detail})


SESSION_TTL = timedelta(days=1)


class SessionOut(BaseModel):
    token: str
    customer_id: str
    expires_at: datetime


@router.post("/chat/session", status_code=201, response_model=SessionOut)
async def chat_session(service: ServiceDep, request: Request) -> SessionOut:
    """A customer session token for a new visitor of the chat widget.

    The token binds the socket to one customer, so the visitor can reconnect
    to their conversation after a refresh and no one else can. One network
    address opens at most ``THREADLINE_CHAT_SESSIONS_PER_HOUR`` (429 beyond).
    """
    service.chat_sessions.take(request.client.host if request.client else "unknown")
    customer_id = "visitor-" + new_id()
    issued = service.tokens.issue(customer_id, ["customer"], SESSION_TTL, {"customer": customer_id})
    assert issued.principal.expires_at is not None
    return SessionOut(token=issued.token, customer_id=customer_id,
                      expires_at=issued.principal.expires_at)  # fmt: skip


def _customer(websocket: WebSocket, token: str, verifier: TokenVerifier) -> str:
    """The customer a socket speaks for, from its customer session ``token`` (the policy
    lets only customer sessions open the chat: ``sockets.chat``)."""
    principal = verifier.verify(token)
    open_socket(websocket, principal)
    if principal.customer_id is None:
        raise Forbidden("the chat needs a customer session token")
    return principal.customer_id


@router.websocket("/chat/ws")
async def chat_socket(websocket: WebSocket, service: ServiceDep) -> None:
    adapter = service.chat
    try:
        customer_id = _customer(websocket, await accept_socket(websocket), service.verifier)
    except (Unauthenticated, Forbidden) as exc:
        await _error(websocket, "unauthenticated", str(exc))
        await websocket.close(code=1008)
        return
    try:
        raw = await asyncio.wait_for(_text(websocket), HELLO_TIMEOUT)
        hello = FRAME.validate_json(raw)
        if not isinstance(hello, Hello):
            await _error(websocket, "hello-first", "the first frame must be hello")
            await websocket.close(code=1008)
            return
        leg = await adapter.open(customer_id, hello.conversation_id)
    except (TimeoutError, ValidationError, ThreadlineError, BinaryFrame) as exc:
        await _error(websocket, "bad-hello", str(exc).splitlines()[0])
        await websocket.close(code=1008)
        return
    except WebSocketDisconnect:
        return
    await _send(
        websocket,
        {
            "type": "welcome",
            "conversation_id": leg.conversation_id,
            "leg_id": leg.leg_id,
            "seq": leg.seq,
        },
    )
    # A chat that went on in another conversation replays that one from its start.
    after_seq = hello.after_seq if leg.conversation_id == hello.conversation_id else 0
    pump = asyncio.create_task(_pump(websocket, service, leg, after_seq))
    try:
        await _receive(websocket, adapter, leg)
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        with contextlib.suppress(ThreadlineError):
            await adapter.close(leg)


async def _receive(websocket: WebSocket, adapter: ChatAdapter, leg: ChatLeg) -> None:
    while True:
        try:
            raw = await _text(websocket)
        except WebSocketDisconnect:
            return
        except BinaryFrame as exc:
            await _error(websocket, "bad-frame", str(exc))
            continue
        try:
            frame = FRAME.validate_json(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            await _error(websocket, "bad-frame", f"{where}: {first['msg']}")
            continue
        if isinstance(frame, Attachment):
            await _error(
                websocket,
                "attachments-unsupported",
                "attachments are not supported on chat yet; describe it in a message",
            )
        elif isinstance(frame, Message | ConsentFrame):
            try:
                if isinstance(frame, Message):
                    seq = await adapter.say(leg, frame.client_id, frame.text)
                else:
                    seq = await adapter.consent(leg, frame.client_id, frame.purpose,
                                                frame.granted)  # fmt: skip
            except ThreadlineError as exc:
                await _error(websocket, "refused", str(exc))
                continue
            await _send(websocket, {"type": "ack", "client_id": frame.client_id, "seq": seq})
        else:
            await _error(websocket, "already-open", "this socket already has a conversation")


async def _pump(websocket: WebSocket, service: Service, leg: ChatLeg, after_seq: int) -> None:
    hub, conversations = service.hub, service.conversations
    async with hub.watch(leg.conversation_id, after_seq, VISIBLE) as watcher:
        async for record in hub.follow(watcher):
            event = conversations.codec.decode(record)
            frame = visible(event)
            card = event.payload.get("checkin") if event.type == "message.sent" else None
            if card:
                frame["checkin"] = await service.inperson.cards.view(
                    card, event.conversation_id, service.business,
                    used=service.revocations.is_revoked, now=utcnow())  # fmt: skip
            await _send(websocket, frame)

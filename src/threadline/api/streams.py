"""Live streams over WebSocket: one conversation's events, resumable by seq.

The bearer token comes as on every socket (:func:`~threadline.api.auth.accept_socket`):
in the subprotocol ``threadline.bearer.<token>`` or an ``Authorization`` header, never
in the URL. The caller must be allowed to read the conversation
(:func:`can_read_conversation`) before anything is sent, and stays allowed only while
its token is valid and the conversation's state, folded from each event it is about to
be sent, still lets it read. A refused caller gets one JSON frame
``{"type": "error", "code": "unauthenticated" | "forbidden", "detail": ...}``
and the socket is closed with 1008 (policy violation).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from threadline.api.access import open_socket
from threadline.api.auth import accept_socket
from threadline.api.conversations import customer_event_out, event_out, for_customer
from threadline.api.deps import ServiceDep
from threadline.core.conversation import ConversationState, fold
from threadline.core.events import MAX_SEQ, Event, utcnow
from threadline.engine.conversations import Conversations
from threadline.engine.live import LiveHub
from threadline.security import (
    ExpiredToken,
    Forbidden,
    Principal,
    RevokedToken,
    TokenVerifier,
    Unauthenticated,
    can_read_conversation,
)

router = APIRouter(tags=["streams"])

POLICY_VIOLATION: Final = 1008


class BadSeq(ValueError):
    """``after_seq`` is beyond what any store holds."""


def _still_valid(verifier: TokenVerifier, caller: Principal) -> None:
    """Unauthenticated once the caller's token has expired or been revoked."""
    if utcnow() >= caller.expires_at:
        raise ExpiredToken(f"the token expired at {caller.expires_at.isoformat()}")
    if verifier.revocations.is_revoked(caller.token_id):
        raise RevokedToken(f"token {caller.token_id} has been revoked")


async def _refuse(websocket: WebSocket, exc: Unauthenticated | Forbidden | ValueError) -> None:
    code = (
        "forbidden" if isinstance(exc, Forbidden)
        else "unauthenticated" if isinstance(exc, Unauthenticated) else "validation"
    )  # fmt: skip
    frame = {"type": "error", "code": code, "detail": str(exc)}
    await websocket.send_text(orjson.dumps(frame).decode())
    await websocket.close(code=POLICY_VIOLATION, reason=code)


async def _advance(
    conversations: Conversations, state: ConversationState, event: Event
) -> ConversationState:
    """The state including ``event``: folded on if it is the next one, else read afresh."""
    if event.seq <= state.seq:
        return state
    if event.seq == state.seq + 1:
        return fold(state, [event])
    fresh = await conversations.rehydrate(state.conversation_id)
    return fresh if fresh.seq >= event.seq else fold(state, [event])


async def _send_events(
    websocket: WebSocket,
    hub: LiveHub,
    conversations: Conversations,
    verifier: TokenVerifier,
    caller: Principal,
    state: ConversationState,
    after_seq: int,
) -> None:
    async with hub.watch(state.conversation_id or "", max(after_seq, 0)) as watcher:
        async for record in hub.follow(watcher):
            event = conversations.codec.decode(record)
            try:
                _still_valid(verifier, caller)
                state = await _advance(conversations, state, event)
                can_read_conversation(caller, state)
            except (Unauthenticated, Forbidden) as exc:
                await _refuse(websocket, exc)
                return
            out = customer_event_out(event) if for_customer(caller) else event_out(event)
            if out is None:
                continue  # internal: not for the customer's eyes
            await websocket.send_text(orjson.dumps(out.model_dump(mode="json")).decode())
        await websocket.close(code=1013, reason="too slow; reconnect with after_seq")


@router.websocket("/conversations/{conversation_id}/stream")
async def conversation_stream(
    websocket: WebSocket, service: ServiceDep, conversation_id: str, after_seq: int = 0
) -> None:
    """Sends every event after ``after_seq`` as a JSON text frame, then each new one.

    A client that reconnects with the last seq it saw gets nothing twice and
    misses nothing.
    """
    hub, conversations, verifier = service.hub, service.conversations, service.verifier
    try:
        try:
            token = await accept_socket(websocket)
            if not 0 <= after_seq <= MAX_SEQ:
                raise BadSeq(f"after_seq must be 0 to {MAX_SEQ}")
            caller = verifier.verify(token)
            open_socket(websocket, caller)
            state = await conversations.rehydrate(conversation_id)
            can_read_conversation(caller, state)
        except (Unauthenticated, Forbidden, BadSeq) as exc:
            await _refuse(websocket, exc)
            return
        await service.audit.conversation_read(caller, conversation_id, "stream")
        sender = asyncio.create_task(
            _send_events(websocket, hub, conversations, verifier, caller, state, after_seq)
        )
        try:
            # The client sends nothing; reading is how a closed socket is noticed,
            # so a vanished client never leaves its feed running.
            while not sender.done():
                receiving = asyncio.ensure_future(websocket.receive())
                await asyncio.wait({sender, receiving}, return_when=asyncio.FIRST_COMPLETED)
                if receiving.done():
                    if receiving.result()["type"] == "websocket.disconnect":
                        break
                else:
                    receiving.cancel()
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                await sender
    except WebSocketDisconnect:
        return

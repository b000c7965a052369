"""Live streams over WebSocket: one conversation's events, resumable by seq."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from threadline.api.conversations import event_out
from threadline.engine.conversations import Conversations
from threadline.engine.live import LiveHub

router = APIRouter(tags=["streams"])


@router.websocket("/conversations/{conversation_id}/stream")
async def conversation_stream(
    websocket: WebSocket, conversation_id: str, after_seq: int = 0
) -> None:
    """Sends every event after ``after_seq`` as a JSON text frame, then each new one.

    A client that reconnects with the last seq it saw gets nothing twice and
    misses nothing.
    """
    hub: LiveHub = websocket.app.state.hub
    conversations: Conversations = websocket.app.state.conversations
    await websocket.accept()
    try:
        async with hub.watch(conversation_id, max(after_seq, 0)) as watcher:
            async for record in hub.follow(watcher):
                event = event_out(conversations.codec.decode(record))
                await websocket.send_text(orjson.dumps(event.model_dump(mode="json")).decode())
            await websocket.close(code=1013, reason="too slow; reconnect with after_seq")
    except WebSocketDisconnect:
        return

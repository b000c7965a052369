"""One call's media stream: admit it by its stream token, then feed its handler.

The socket is admitted only if its first meaningful frame (``connected`` is
informational) is a ``start`` in μ-law 8 kHz mono whose ``token`` parameter
redeems for this call while its leg is live. Anything else closes the socket
with 1008 (policy violation) before anything is recorded. Once admitted,
frames go to the call's :class:`~threadline.channels.voice.media.CallHandler`
in order; malformed and unknown frames are logged and skipped.

When the stream stops (or its socket goes away) the handler's ``on_stop``
runs, then the leg ends, unless the call was handed to a human (a warm
transfer stops the stream but not the call; the status callback ends it).
"""

from __future__ import annotations

import asyncio
from typing import Final, Protocol

import structlog

from threadline.channels.voice.media import (
    Call,
    CallHandler,
    CallSink,
    Connected,
    Dtmf,
    HandlerFactory,
    Mark,
    Media,
    Start,
    Stop,
    clear_frame,
    mark_frame,
    media_frame,
    parse,
)
from threadline.channels.voice.telephony.calls import VoiceCalls
from threadline.security.errors import Unauthenticated
from threadline.security.stream_tokens import StreamTokens

log = structlog.get_logger("threadline.voice.stream")

START_TIMEOUT: Final = 10.0
POLICY_VIOLATION: Final = 1008
#: ``<Parameter>`` names the answer TwiML sets and the ``start`` message hands back.
TOKEN: Final = "token"
CONVERSATION: Final = "conversationId"
CALLER: Final = "from"
CALLEE: Final = "to"


class FrameSocket(Protocol):
    """The WebSocket as the stream needs it."""

    async def receive(self) -> str | bytes | None:
        """The next frame, or None once the peer has gone."""

    async def send(self, frame: str) -> None: ...


class StreamRefused(Exception):
    """The socket is not an admissible media stream; close it with ``code``."""

    def __init__(self, reason: str, code: int = POLICY_VIOLATION) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class StreamSink(CallSink):
    """Sends ``media``, ``mark`` and ``clear`` frames on one stream, one at a time."""

    def __init__(self, socket: FrameSocket, stream_sid: str) -> None:
        self._socket = socket
        self.stream_sid = stream_sid
        self._lock = asyncio.Lock()

    async def _send(self, frame: str) -> None:
        async with self._lock:
            await self._socket.send(frame)

    async def send_media(self, mulaw: bytes) -> None:
        await self._send(media_frame(self.stream_sid, mulaw))

    async def send_mark(self, name: str) -> None:
        await self._send(mark_frame(self.stream_sid, name))

    async def clear(self) -> None:
        await self._send(clear_frame(self.stream_sid))


async def _first_start(socket: FrameSocket) -> Start:
    while True:
        raw = await socket.receive()
        if raw is None:
            raise StreamRefused("the socket closed before the stream started")
        message = parse(raw) if isinstance(raw, str) else None
        if isinstance(message, Connected):
            continue
        if not isinstance(message, Start):
            raise StreamRefused("the first message must be a start")
        return message


async def admit(
    socket: FrameSocket,
    tokens: StreamTokens,
    calls: VoiceCalls,
    start_timeout: float = START_TIMEOUT,
) -> Call:
    """The call this socket streams, once its ``start`` proves it; raises StreamRefused."""
    try:
        async with asyncio.timeout(start_timeout):
            start = await _first_start(socket)
    except TimeoutError:
        raise StreamRefused("no start message in time") from None
    info = start.start
    if not info.media_format.is_telephony:
        raise StreamRefused("the stream must be audio/x-mulaw at 8000 Hz, mono")
    params = info.custom_parameters
    token = params.get(TOKEN)
    if not token:
        raise StreamRefused("the start carries no stream token")
    try:
        grant = tokens.check(token, info.call_sid, params.get(CONVERSATION))
        seq = await calls.live_seq(grant.call_id, grant.conversation_id)
        if seq is None:
            raise StreamRefused("the call is not live")
        await tokens.use(grant)
    except Unauthenticated as exc:
        raise StreamRefused(f"stream token refused: {exc}") from None
    return Call(
        call_id=grant.call_id,
        stream_id=info.stream_sid,
        conversation_id=grant.conversation_id,
        customer_id=grant.customer_id,
        seq=seq,
        caller=params.get(CALLER),
        callee=params.get(CALLEE),
        media_format=info.media_format,
        parameters=dict(params),
    )


async def run(socket: FrameSocket, call: Call, handler: CallHandler, calls: VoiceCalls) -> None:
    """Feed the admitted stream's frames to ``handler`` until it stops."""
    stopped = False
    calls.streaming.add(call.call_id)
    try:
        await handler.on_start(call)
        while True:
            raw = await socket.receive()
            if raw is None:
                break
            message = parse(raw) if isinstance(raw, str) else None
            if message is None:
                if isinstance(raw, bytes):
                    log.warning("media frame skipped", reason="binary frame", call_id=call.call_id)
                continue
            if isinstance(message, Media):
                if message.media.track in {"inbound", "inbound_track"}:
                    await handler.on_audio(message.media.audio(), message.media.timestamp)
            elif isinstance(message, Dtmf):
                await handler.on_dtmf(message.dtmf.digit)
            elif isinstance(message, Mark):
                await handler.on_mark(message.mark.name)
            elif isinstance(message, Stop):
                stopped = True
                break
            else:
                log.warning(
                    "media frame skipped",
                    reason=f"unexpected {message.event}",
                    call_id=call.call_id,
                )
    finally:
        calls.streaming.discard(call.call_id)
        try:
            await handler.on_stop()
        finally:
            if call.call_id not in calls.handed_over:
                reason = "stream_stopped" if stopped else "stream_lost"
                await calls.end(call.call_id, reason, key=f"{call.call_id}:stream-end")


async def serve(
    socket: FrameSocket,
    tokens: StreamTokens,
    calls: VoiceCalls,
    handlers: HandlerFactory,
    start_timeout: float = START_TIMEOUT,
) -> None:
    """Admit the stream (raises StreamRefused) and run it with a handler from ``handlers``."""
    call = await admit(socket, tokens, calls, start_timeout)
    sink = StreamSink(socket, call.stream_id)
    log.info("media stream started", call_id=call.call_id, conversation_id=call.conversation_id)
    await run(socket, call, handlers(sink), calls)

"""The phone channel over Twilio: call webhooks and the media WebSocket.

``POST /voice/twilio/incoming`` answers a call with TwiML, ``POST
/voice/twilio/status`` turns call-status callbacks into leg events, ``POST
/voice/twilio/whisper`` is what a transferred-to agent hears, and
``/voice/twilio/stream`` carries the call's audio (Media Streams). Every
webhook must carry a valid ``X-Twilio-Signature`` (403 otherwise), checked
against ``THREADLINE_PUBLIC_URL`` plus the path when set, else the request URL.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from typing import Final
from urllib.parse import parse_qsl

import structlog
from fastapi import APIRouter, Request, Response, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from threadline.api.access import route_of
from threadline.api.deps import ServiceDep
from threadline.api.problems import Problem
from threadline.channels.voice import INSTALL_HINT
from threadline.channels.voice.telephony import stream
from threadline.channels.voice.telephony.control import whisper_text
from threadline.channels.voice.telephony.gateway import VoiceGateway
from threadline.channels.voice.telephony.twilio import (
    SIGNATURE_HEADER,
    TWIML_MEDIA_TYPE,
    answer,
    signed_url,
    stream_url,
    whisper,
)
from threadline.routing.packet import build_packet
from threadline.security.authz import allows, can_open
from threadline.service import Service

log = structlog.get_logger("threadline.voice")

#: Twilio's terminal call statuses → the leg's end reason.
ENDED: Final = {
    "completed": "completed",
    "busy": "busy",
    "failed": "failed",
    "no-answer": "no_answer",
    "canceled": "canceled",
}

#: A Twilio call SID: "CA" and 32 hexadecimal digits.
CALL_SID: Final = re.compile(r"CA[0-9a-fA-F]{32}")

router = APIRouter(tags=["voice"])


def _gateway(service: Service) -> VoiceGateway:
    """The running phone channel (this router is mounted only with the voice extra)."""
    if service.voice is None:
        raise Problem(503, "voice-off", "Voice is off", INSTALL_HINT)
    return service.voice


async def _signed_form(request: Request, gateway: VoiceGateway) -> dict[str, str]:
    """The webhook's form fields, once its Twilio signature checks out."""
    if gateway.signatures is None:
        raise Problem(
            503,
            "voice-unconfigured",
            "Voice is not configured",
            "set THREADLINE_TWILIO_AUTH_TOKEN to take calls",
        )
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        raise Problem(
            403,
            "bad-webhook-signature",
            "Bad webhook signature",
            f"the {SIGNATURE_HEADER} header is missing",
        )
    body = await request.body()
    try:
        params = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
    except UnicodeDecodeError:
        raise Problem(400, "malformed-form", "Malformed form", "the body is not UTF-8") from None
    url = signed_url(str(request.url), gateway.public_url)
    if not gateway.signatures.valid(url, params, signature):
        log.warning("webhook signature refused", path=request.url.path)
        raise Problem(
            403,
            "bad-webhook-signature",
            "Bad webhook signature",
            f"the {SIGNATURE_HEADER} header does not match this request",
        )
    return params


def _required(params: Mapping[str, str], name: str, form: re.Pattern[str] | None = None) -> str:
    """The field ``name``, refused (before anything is recorded) when absent or malformed."""
    value = params.get(name, "").strip()
    if not value or len(value) > 64:
        raise Problem(
            422,
            "validation",
            "The request does not fit its schema",
            f"{name} is required",
            errors=[{"field": name, "reason": "required"}],
        )
    if form is not None and form.fullmatch(value) is None:
        raise Problem(
            422,
            "validation",
            "The request does not fit its schema",
            f"{name} is not a Twilio call SID",
            errors=[{"field": name, "reason": "malformed"}],
        )
    return value


def _twiml(xml: str) -> Response:
    return Response(xml, media_type=TWIML_MEDIA_TYPE)


@router.post("/voice/twilio/incoming", response_class=Response)
async def incoming_call(request: Request, service: ServiceDep) -> Response:
    """Answer a call: the greeting, then the media stream with the call's context."""
    gateway = _gateway(service)
    params = await _signed_form(request, gateway)
    call_id = _required(params, "CallSid", CALL_SID)
    caller, callee = params.get("From", ""), params.get("To", "")
    leg = await gateway.calls.answer(call_id, caller)
    base = gateway.public_url or str(request.base_url).rstrip("/")
    gateway.calls.base_urls[call_id] = base
    context = {
        "callSid": call_id,
        stream.CALLER: leg.caller or caller,
        stream.CALLEE: callee,
        stream.CONVERSATION: leg.conversation_id,
        stream.TOKEN: gateway.tokens.issue(call_id, leg.conversation_id, leg.customer_id),
    }
    return _twiml(answer(gateway.greeting, stream_url(base), context))


@router.post("/voice/twilio/status", status_code=204, response_class=Response)
async def call_status(request: Request, service: ServiceDep) -> Response:
    """A call-status callback: a terminal status ends the call's leg (once)."""
    gateway = _gateway(service)
    params = await _signed_form(request, gateway)
    call_id = _required(params, "CallSid", CALL_SID)
    status = _required(params, "CallStatus")
    reason = ENDED.get(status)
    if reason is not None:
        ended = await gateway.calls.end(call_id, reason, key=f"{call_id}:status:{status}")
        log.info("call status", call_id=call_id, status=status, leg_ended=ended)
    return Response(status_code=204)


@router.post("/voice/twilio/whisper", response_class=Response)
async def agent_whisper(request: Request, service: ServiceDep) -> Response:
    """What the agent hears on answering a transferred call, before the bridge."""
    await _signed_form(request, _gateway(service))
    conversation_id = request.query_params.get("conversation", "")
    conversations = service.conversations
    state = await conversations.rehydrate(conversation_id) if conversation_id else None
    if state is None or state.seq == 0:
        return _twiml(whisper(f"Incoming call from the {service.business.brand_name} assistant."))
    packet = build_packet(state, await conversations.timeline(conversation_id))
    customer = await service.systems.customers.get(packet.customer_id)
    return _twiml(whisper(whisper_text(packet, customer.name if customer else None)))


class _Socket:
    """A Starlette WebSocket as the stream's ``FrameSocket``."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.gone = False

    async def receive(self) -> str | bytes | None:
        if self.gone:
            return None
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            self.gone = True
            return None
        text = message.get("text")
        return text if text is not None else message.get("bytes") or b""

    async def send(self, frame: str) -> None:
        await self.websocket.send_text(frame)


@router.websocket("/voice/twilio/stream")
async def media_stream(websocket: WebSocket, service: ServiceDep) -> None:
    """A call's Media Stream, admitted by the single-use token in its ``start``."""
    await websocket.accept()
    if not allows(can_open, None, route_of(websocket)):  # the policy's ``sockets.voice``
        await websocket.close(code=1008, reason="forbidden")
        return
    gateway = _gateway(service)
    socket = _Socket(websocket)
    try:
        await stream.serve(
            socket, gateway.tokens, gateway.calls, gateway.handlers, gateway.start_timeout
        )
    except stream.StreamRefused as exc:
        log.info("media stream refused", reason=exc.reason)
        if not socket.gone:
            await websocket.close(code=exc.code, reason=exc.reason[:120])
        return
    if not socket.gone and websocket.application_state == WebSocketState.CONNECTED:
        # The caller's side may have closed first: nothing left to close, nothing wrong.
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close()

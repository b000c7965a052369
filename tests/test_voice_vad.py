"""Voice activity detection and endpointing: frame logic, then real espeak-ng speech."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from threadline.channels.voice.codec import frames, pcm_to_bytes, pcm_to_telephony, ulaw_decode
from threadline.channels.voice.vad import (
    Endpointer,
    EndpointerConfig,
    SpeechDetector,
    SpeechPaused,
    SpeechStarted,
    UtteranceEnded,
    voiced_ratio,
)
from threadline.testing.voice import add_noise, speak, telephony_audio

FRAME = 320  # bytes of 20 ms of 16-bit PCM at 8 kHz
VOICED = b"\x01" * FRAME
QUIET = b"\x00" * FRAME


def marked(frame: bytes) -> bool:
    """A stand-in classifier: frames of 0x01 bytes are speech."""
    return frame[0] == 1


def run(endpointer: Endpointer, pattern: str) -> list:
    """Feed ``pattern`` (``v`` voiced, ``.`` silent frames); all events, flush included."""
    events = []
    for symbol in pattern:
        events += endpointer.feed(VOICED if symbol == "v" else QUIET)
    return events + endpointer.flush()


def test_speech_starts_after_n_consecutive_voiced_frames():
    config = EndpointerConfig(start_frames=3)
    assert run(Endpointer(config, classifier=marked), "..vv.vv..") == []
    events = run(Endpointer(config, classifier=marked), "..vv.vvv")
    assert events[0] == SpeechStarted(start_ms=100, at_ms=160)


def test_the_utterance_ends_after_the_configured_silence():
    config = EndpointerConfig(end_silence_ms=100, pre_roll_ms=0, post_roll_ms=0)
    endpointer = Endpointer(config, classifier=marked)
    events = run(endpointer, "vvvv" + "." * 4 + "v" + "." * 5 + "vvv")
    ended = [e for e in events if isinstance(e, UtteranceEnded)]
    # A 80 ms pause does not end it; 100 ms does, after the last voiced frame at 160-180 ms.
    assert ended[0].start_ms == 0 and ended[0].end_ms == 180 and ended[0].at_ms == 280
    assert ended[0].reason == "silence"
    assert ended[0].audio == VOICED * 4 + QUIET * 4 + VOICED
    # The last three voiced frames start a second utterance, which the flush ends.
    assert ended[1].reason == "flush" and ended[1].start_ms == 280


def test_audio_carries_pre_roll_and_post_roll():
    config = EndpointerConfig(end_silence_ms=200, pre_roll_ms=40, post_roll_ms=40)
    events = run(Endpointer(config, classifier=marked), "....vvv" + "." * 12)
    started, ended = events
    assert isinstance(started, SpeechStarted) and isinstance(ended, UtteranceEnded)
    assert ended.audio_start_ms == 40
    assert ended.audio == QUIET * 2 + VOICED * 3 + QUIET * 2
    assert ended.duration_ms == 60


def test_an_utterance_is_cut_at_the_maximum_length():
    config = EndpointerConfig(max_utterance_ms=200, pre_roll_ms=0)
    events = run(Endpointer(config, classifier=marked), "v" * 25)
    ended = [e for e in events if isinstance(e, UtteranceEnded)]
    assert [(e.start_ms, e.end_ms, e.reason) for e in ended] == [
        (0, 200, "max_length"),
        (200, 400, "max_length"),
        (400, 500, "flush"),
    ]


@given(st.text(alphabet="v.", max_size=400), st.integers(1, 4), st.integers(1, 15))
def test_endpointing_invariants_hold_for_any_pattern(pattern, start_frames, silence_frames):
    config = EndpointerConfig(
        start_frames=start_frames, end_silence_ms=20 * silence_frames, max_utterance_ms=2000
    )
    everything = run(Endpointer(config, classifier=marked), pattern)
    events = [e for e in everything if not isinstance(e, SpeechPaused)]
    # Starts and ends alternate, each end closing the utterance its start opened.
    assert [type(e) for e in events] == [SpeechStarted, UtteranceEnded] * (len(events) // 2)
    for started, ended in zip(events[::2], events[1::2], strict=True):
        assert started.start_ms == ended.start_ms < ended.end_ms <= ended.at_ms
        assert ended.duration_ms <= config.max_utterance_ms
        assert pattern[started.start_ms // 20 : started.start_ms // 20 + start_frames] == (
            "v" * start_frames
        )
        assert pattern[ended.end_ms // 20 - 1] == "v"
        first = ended.audio_start_ms // 20
        assert ended.audio == b"".join(
            VOICED if c == "v" else QUIET
            for c in pattern[first : first + len(ended.audio) // FRAME]
        )
    # Every run of enough voiced frames is (at least partly) inside some utterance.
    spans = [(e.start_ms // 20, e.end_ms // 20) for e in events if isinstance(e, UtteranceEnded)]
    for match in re.finditer("v" * start_frames + "+", pattern):
        assert any(a < match.end() and match.start() < b for a, b in spans)
    # A pause offers the utterance so far; when it ends there, it is the same audio.
    ends = {e.end_ms: e for e in events if isinstance(e, UtteranceEnded)}
    for pause in (e for e in everything if isinstance(e, SpeechPaused)):
        assert config.early and pattern[pause.end_ms // 20 - 1] == "v"
        assert pause.at_ms - pause.end_ms == config.early_silence_ms + 20
        final = ends.get(pause.end_ms)
        if final is not None and final.reason == "silence":
            assert (final.audio, final.audio_start_ms) == (pause.audio, pause.audio_start_ms)


def test_a_pause_offers_the_utterance_so_far_and_resumed_speech_supersedes_it():
    config = EndpointerConfig(early_silence_ms=60, end_silence_ms=200, post_roll_ms=40,
                              pre_roll_ms=0)  # fmt: skip
    endpointer = Endpointer(config, classifier=marked)
    events = run(endpointer, "vvvv" + "...." + "vv" + "." * 12)
    paused = [e for e in events if isinstance(e, SpeechPaused)]
    ended = [e for e in events if isinstance(e, UtteranceEnded)]
    assert [p.end_ms for p in paused] == [80, 200]  # after each run of speech
    assert len(ended) == 1 and ended[0].end_ms == 200
    assert paused[0].audio == VOICED * 4 + QUIET * 2  # speech and post-roll, as an end would
    assert paused[1].audio == ended[0].audio
    assert paused[1].at_ms < ended[0].at_ms


def test_pauses_are_off_unless_shorter_than_the_end_silence():
    for early in (0, 200, 300):
        config = EndpointerConfig(early_silence_ms=early, end_silence_ms=200)
        events = run(Endpointer(config, classifier=marked), "vvvv" + "." * 20)
        assert not any(isinstance(e, SpeechPaused) for e in events)


def test_flush_without_speech_says_nothing():
    endpointer = Endpointer(classifier=marked)
    assert run(endpointer, "." * 50 + "vv") == []
    assert not endpointer.in_speech
    assert endpointer.position_ms == 52 * 20


def test_frames_of_the_wrong_size_are_refused():
    with pytest.raises(ValueError, match="320 bytes"):
        Endpointer(classifier=marked).feed(b"\x00" * 160)


@pytest.mark.parametrize(
    "bad",
    [dict(sample_rate=11025), dict(aggressiveness=4), dict(start_frames=0),
     dict(end_silence_ms=550), dict(max_utterance_ms=20), dict(early_silence_ms=50),
     dict(early_silence_ms=60, post_roll_ms=100)],
)  # fmt: skip
def test_bad_configurations_are_refused(bad):
    with pytest.raises(ValueError):
        EndpointerConfig(**bad)


# --- real speech -----------------------------------------------------------------------------

pytestmark_speech = pytest.mark.usefixtures("espeak")

PHRASE = "Where is my order 1042? I would like to know when it arrives."


def endpoint(ulaw: bytes, config: EndpointerConfig | None = None) -> list:
    endpointer = Endpointer(config)
    events = []
    for frame in frames(ulaw):
        events += endpointer.feed(pcm_to_bytes(ulaw_decode(frame)))
    return events + endpointer.flush()


def speech_span_ms(pcm: np.ndarray, rate: int, lead_ms: int) -> tuple[float, float]:
    loud = np.nonzero(np.abs(pcm.astype(np.int32)) > 500)[0]
    return lead_ms + loud[0] / rate * 1000, lead_ms + loud[-1] / rate * 1000


@pytestmark_speech
@pytest.mark.parametrize(
    ("noise", "early_ms"), [(None, 120), (-45.0, 120), (-35.0, 120), (-30.0, 250)]
)
def test_one_spoken_phrase_is_one_utterance_with_its_timings(noise, early_ms):
    pcm, rate = speak(PHRASE, "en-us")
    ulaw = telephony_audio(pcm, rate, lead_ms=700, tail_ms=1500, noise_dbfs=noise)
    start, end = speech_span_ms(pcm, rate, 700)
    everything = endpoint(ulaw, EndpointerConfig(end_silence_ms=600))
    events = [e for e in everything if not isinstance(e, SpeechPaused)]
    assert [type(e) for e in events] == [SpeechStarted, UtteranceEnded]
    started, ended = events
    # The last pause offered exactly the final audio, 400 ms before the end.
    last_pause = [e for e in everything if isinstance(e, SpeechPaused)][-1]
    assert (last_pause.end_ms, last_pause.audio) == (ended.end_ms, ended.audio)
    assert ended.at_ms - last_pause.at_ms == 400
    assert abs(started.start_ms - start) <= 80
    assert started.at_ms - started.start_ms == 60  # three voiced frames
    # Loud noise masks the fading last syllable, so the end may come a little early.
    assert -early_ms <= ended.end_ms - end <= 120
    assert ended.reason == "silence"
    assert ended.at_ms - ended.end_ms == 600
    # The audio covers the phrase, with the pre-roll before it.
    assert ended.audio_start_ms <= started.start_ms - 180
    assert len(ended.audio) / 16 >= ended.end_ms - ended.start_ms


@pytestmark_speech
def test_two_phrases_with_a_long_pause_are_two_utterances():
    first, rate = speak("Where is my order?", "en-gb")
    second, _ = speak("It is order 1042.", "en-gb")
    gap = np.zeros(rate * 1200 // 1000, dtype=np.int16)
    ulaw = telephony_audio(np.concatenate([first, gap, second]), rate, noise_dbfs=-40)
    ended = [e for e in endpoint(ulaw) if isinstance(e, UtteranceEnded)]
    assert len(ended) == 2
    assert ended[1].start_ms - ended[0].end_ms >= 1000


@pytestmark_speech
def test_a_short_pause_does_not_end_the_utterance():
    first, rate = speak("Where is my order?", "en-us+f3")
    second, _ = speak("It is order 1042.", "en-us+f3")
    gap = np.zeros(rate * 300 // 1000, dtype=np.int16)
    ulaw = telephony_audio(np.concatenate([first, gap, second]), rate)
    ended = [e for e in endpoint(ulaw) if isinstance(e, UtteranceEnded)]
    assert len(ended) == 1


@pytest.mark.parametrize("level", [-50.0, -40.0, -30.0, -25.0])
def test_steady_noise_alone_is_never_speech(level):
    noise = add_noise(np.zeros(8000 * 4, dtype=np.int16), level)
    assert endpoint(pcm_to_telephony(noise, 8000)) == []


@pytestmark_speech
def test_speech_is_mostly_voiced_and_silence_is_not():
    pcm, rate = speak(PHRASE, "en-gb")
    speech = ulaw_decode(telephony_audio(pcm, rate, lead_ms=0, tail_ms=0))
    assert voiced_ratio(speech) > 0.6
    assert voiced_ratio(np.zeros(8000, dtype=np.int16)) == 0.0


def test_the_detector_tracks_the_noise_floor():
    detector = SpeechDetector(EndpointerConfig())
    noise = add_noise(np.zeros(160 * 50, dtype=np.int16), -40.0)
    for i in range(50):
        assert not detector(pcm_to_bytes(noise[i * 160 : (i + 1) * 160]))
    assert detector.noise_floor_dbfs == pytest.approx(-40.0, abs=2.0)

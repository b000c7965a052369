"""G.711 μ-law, resampling, framing and Media Streams payloads."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from threadline.channels.voice.codec import (
    FRAME_SAMPLES,
    ULAW_DECODE,
    AudioFormatError,
    Framer,
    Resampler,
    decode_payload,
    encode_payload,
    frames,
    pcm_for_stt,
    pcm_from_bytes,
    pcm_to_bytes,
    pcm_to_telephony,
    resample,
    rms_dbfs,
    telephony_to_stt,
    to_pcm16,
    ulaw_decode,
    ulaw_encode,
)

# --- μ-law -----------------------------------------------------------------------------------


def reference_ulaw(sample: int) -> int:
    """The classic G.711 encoder (CCITT/Sun reference), one sample at a time."""
    exp_lut = [0] * 256
    for i in range(1, 256):
        exp_lut[i] = i.bit_length() - 1
    sign = 0x80 if sample < 0 else 0
    magnitude = min(-sample if sample < 0 else sample, 32635) + 0x84
    exponent = exp_lut[(magnitude >> 7) & 0xFF]
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def test_decoding_matches_the_g711_formula_for_every_code():
    # ITU-T G.711: magnitude = ((2 * mantissa + 33) << exponent) - 33, in 14-bit units.
    for code in range(256):
        inverted = ~code & 0xFF
        exponent, mantissa = (inverted >> 4) & 7, inverted & 0x0F
        magnitude = (((2 * mantissa + 33) << exponent) - 33) * 4
        expected = -magnitude if inverted & 0x80 else magnitude
        assert int(ULAW_DECODE[code]) == expected, hex(code)


@pytest.mark.parametrize(
    ("code", "value"),
    [(0x00, -32124), (0x80, 32124), (0xFF, 0), (0x7F, 0), (0xF0, 120), (0x70, -120),
     (0xEF, 132), (0xDF, 396), (0x8F, 16764), (0x0F, -16764)],
)  # fmt: skip
def test_known_code_values(code, value):
    assert ulaw_decode(bytes([code]))[0] == value


@pytest.mark.parametrize(
    ("sample", "code"),
    [(0, 0xFF), (-1, 0x7F), (32767, 0x80), (-32768, 0x00), (8, 0xFE), (-8, 0x7E),
     (1000, 0xCE), (-1000, 0x4E), (32124, 0x80), (120, 0xF0)],
)  # fmt: skip
def test_known_encodings(sample, code):
    assert ulaw_encode(np.array([sample], dtype=np.int16)) == bytes([code])


def test_encoding_matches_the_reference_encoder_for_every_sample():
    samples = np.arange(-32768, 32768, dtype=np.int32)
    expected = bytes(reference_ulaw(int(s)) for s in samples)
    assert ulaw_encode(samples.astype(np.int16)) == expected


def test_every_code_but_negative_zero_survives_a_round_trip():
    codes = bytes(range(256))
    again = ulaw_encode(ulaw_decode(codes))
    assert [c for c, d in zip(codes, again, strict=True) if c != d] == [0x7F]


@given(hnp.arrays(np.int16, st.integers(0, 400)))
def test_round_trip_error_is_within_half_a_quantisation_step(pcm):
    back = ulaw_decode(ulaw_encode(pcm)).astype(np.int32)
    x = np.clip(pcm.astype(np.int32), -32635, 32635)
    # The step doubles per segment: 8 around zero, 1024 at the top; error <= step / 2 + bias.
    step = np.maximum(8, 2 ** (np.floor(np.log2(np.abs(x) + 0x84)).astype(np.int32) - 4))
    assert np.all(np.abs(back - x) <= step // 2 + 4)


@given(hnp.arrays(np.int16, st.integers(1, 400)))
def test_decoding_preserves_sign_and_order(pcm):
    back = ulaw_decode(ulaw_encode(pcm)).astype(np.int32)
    order = np.argsort(pcm, kind="stable")
    assert np.all(np.diff(back[order]) >= 0)
    assert np.all(np.sign(back) * np.sign(pcm) >= 0)


# --- PCM helpers -----------------------------------------------------------------------------


@given(hnp.arrays(np.int16, st.integers(0, 300)))
def test_pcm_bytes_round_trip(pcm):
    data = pcm_to_bytes(pcm)
    assert len(data) == 2 * len(pcm)
    assert np.array_equal(pcm_from_bytes(data), pcm)


def test_odd_pcm_bytes_are_refused():
    with pytest.raises(AudioFormatError):
        pcm_from_bytes(b"\x00\x01\x02")


def test_levels():
    assert rms_dbfs(np.zeros(100, dtype=np.int16)) == float("-inf")
    assert rms_dbfs(np.full(100, 16384, dtype=np.int16)) == pytest.approx(-6.02, abs=0.01)
    assert to_pcm16([2.0, -2.0, 0.5]).tolist() == [32767, -32768, 16384]


# --- resampling ------------------------------------------------------------------------------


def tone(freq: float, rate: int, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return to_pcm16(amplitude * np.sin(2 * np.pi * freq * t))


def amplitude_at(pcm: np.ndarray, freq: float, rate: int) -> float:
    """The amplitude of one frequency in the middle half (away from the edges)."""
    x = pcm.astype(np.float64)[len(pcm) // 4 : 3 * len(pcm) // 4]
    t = np.arange(len(x)) / rate
    return float(np.abs(np.dot(x, np.exp(-2j * np.pi * freq * t))) * 2 / len(x))


RATES = [(16000, 8000), (8000, 16000), (24000, 8000), (22050, 8000)]


@pytest.mark.parametrize(("src", "dst"), RATES)
def test_a_1_khz_tone_survives(src, dst):
    before = amplitude_at(tone(1000, src), 1000, src)
    out = resample(tone(1000, src), src, dst)
    assert len(out) == dst
    assert amplitude_at(out, 1000, dst) == pytest.approx(before, rel=0.01)


@pytest.mark.parametrize(("src", "dst"), [(16000, 8000), (24000, 8000), (22050, 8000)])
@pytest.mark.parametrize("freq", [4500, 5000, 6000, 7000])
def test_what_would_alias_below_4_khz_is_removed(src, dst, freq):
    signal = tone(freq, src)
    alias = abs(freq - dst)  # where a plain decimation would fold it
    out = resample(signal, src, dst)
    leaked = amplitude_at(out, alias, dst) + 1e-9  # often exactly zero after rounding
    attenuation = 20 * np.log10(leaked / amplitude_at(signal, freq, src))
    assert attenuation < -40
    assert rms_dbfs(out) < rms_dbfs(signal) - 40


def test_upsampling_adds_no_image_above_4_khz():
    out = resample(tone(1000, 8000), 8000, 16000)
    image = amplitude_at(out, 7000, 16000) / amplitude_at(out, 1000, 16000)
    assert 20 * np.log10(image + 1e-12) < -50


@given(
    st.sampled_from(RATES),
    st.integers(0, 3000),
    st.lists(st.integers(1, 700), min_size=1, max_size=12),
)
@settings(max_examples=40, deadline=None)
def test_streaming_in_chunks_equals_one_shot(rates, length, cuts):
    src, dst = rates
    rng = np.random.default_rng(length)
    pcm = rng.integers(-20000, 20000, length).astype(np.int16)
    resampler = Resampler(src, dst)
    pieces, start = [], 0
    for cut in cuts:
        pieces.append(resampler.process(pcm[start : start + cut]))
        start += cut
    pieces.append(resampler.process(pcm[start:]))
    pieces.append(resampler.flush())
    streamed = np.concatenate(pieces)
    assert len(streamed) == -(-length * dst // src)
    # The same filter on the same samples; only float32 summation order differs between
    # batch shapes, which can move a sample that rounds at .5 by one step.
    difference = np.abs(streamed.astype(np.int32) - resample(pcm, src, dst).astype(np.int32))
    assert difference.max(initial=0) <= 1


def test_resampling_keeps_time_alignment():
    impulse = np.zeros(8000, dtype=np.int16)
    impulse[4000] = 20000
    out = resample(impulse, 8000, 16000)
    assert int(np.argmax(out)) == 8000


def test_the_telephony_round_trip_keeps_speech_band_audio():
    signal = tone(440, 22050, 0.5) // 2 + tone(1500, 22050, 0.5) // 2
    ulaw = pcm_to_telephony(signal, 22050)
    assert len(ulaw) == 4000
    heard = telephony_to_stt(ulaw)
    assert len(heard) == 8000
    assert amplitude_at(heard, 440, 16000) == pytest.approx(
        amplitude_at(signal, 440, 22050), rel=0.05
    )
    assert len(pcm_for_stt(pcm_to_bytes(ulaw_decode(ulaw)))) == 16000


# --- framing and payloads --------------------------------------------------------------------


def test_frames_are_20_ms_and_the_last_is_padded_with_silence():
    cut = frames(bytes(range(200)) * 2)
    assert [len(f) for f in cut] == [FRAME_SAMPLES, FRAME_SAMPLES, FRAME_SAMPLES]
    assert cut[-1][80:] == b"\xff" * 80
    assert frames(b"") == []


@given(st.lists(st.binary(max_size=500), max_size=10))
def test_the_framer_hands_out_every_byte_in_whole_frames(pushes):
    framer = Framer()
    out = [f for data in pushes for f in framer.push(data)]
    out += list(framer.flush())
    joined = b"".join(pushes)
    assert all(len(f) == FRAME_SAMPLES for f in out)
    assert b"".join(out)[: len(joined)] == joined
    assert len(out) == -(-len(joined) // FRAME_SAMPLES)


@given(st.binary(max_size=400))
def test_payloads_round_trip(audio):
    payload = encode_payload(audio)
    assert payload == base64.b64encode(audio).decode()
    assert decode_payload(payload) == audio


@pytest.mark.parametrize("payload", ["not base64!", "AAA", "ü"])
def test_malformed_payloads_are_refused(payload):
    with pytest.raises(AudioFormatError):
        decode_payload(payload)

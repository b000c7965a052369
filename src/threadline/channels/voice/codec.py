"""Telephony audio in numpy: G.711 μ-law, resampling, 20 ms framing, Media Streams payloads.

PCM is 16-bit signed, mono, native ``int16`` arrays; on the wire (ports, WAV
files) it is little-endian bytes. μ-law is one byte per sample. The stdlib
``audioop`` is gone in Python 3.13, so nothing here uses it.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterator
from fractions import Fraction
from functools import cache
from typing import Final

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

PCM = npt.NDArray[np.int16]

#: The telephony rate of Twilio Media Streams and G.711.
TELEPHONY_RATE: Final = 8000
#: The rate speech-to-text engines take.
STT_RATE: Final = 16000
#: One frame is 20 ms: 160 samples (and 160 μ-law bytes) at 8 kHz.
FRAME_MS: Final = 20
FRAME_SAMPLES: Final = TELEPHONY_RATE * FRAME_MS // 1000
#: The μ-law byte for silence (positive zero).
ULAW_SILENCE: Final = 0xFF

_BIAS: Final = 0x84
_CLIP: Final = 32635


class AudioFormatError(ValueError):
    """Audio bytes or a payload that cannot be what they claim to be."""


# --- G.711 μ-law -----------------------------------------------------------------------------


def _build_decode_table() -> npt.NDArray[np.int16]:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(codes & 0x80, -magnitude, magnitude).astype(np.int16)


def _build_encode_table() -> npt.NDArray[np.uint8]:
    # Indexed by the sample's bit pattern as uint16, so encoding is one gather.
    samples = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32)
    sign = np.where(samples < 0, 0x80, 0x00)
    magnitude = np.minimum(np.abs(samples), _CLIP) + _BIAS
    # The segment is the position of the highest set bit above bit 7.
    exponent = np.clip(np.floor(np.log2(magnitude >> 7 | 1)).astype(np.int32), 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    codes: npt.NDArray[np.uint8] = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)
    return codes


ULAW_DECODE: Final = _build_decode_table()
ULAW_ENCODE: Final = _build_encode_table()


def ulaw_encode(pcm: PCM) -> bytes:
    """μ-law bytes of 16-bit PCM samples (G.711, with the customary 0x84 bias)."""
    samples = np.ascontiguousarray(pcm, dtype=np.int16)
    return ULAW_ENCODE[samples.view(np.uint16)].tobytes()


def ulaw_decode(data: bytes) -> PCM:
    """16-bit PCM samples of μ-law bytes."""
    return ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


# --- PCM bytes and levels --------------------------------------------------------------------


def pcm_from_bytes(data: bytes) -> PCM:
    """Samples of little-endian 16-bit PCM bytes."""
    if len(data) % 2:
        raise AudioFormatError(f"16-bit PCM needs an even number of bytes, got {len(data)}")
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def pcm_to_bytes(pcm: PCM) -> bytes:
    """Little-endian bytes of 16-bit PCM samples."""
    return np.asarray(pcm, dtype="<i2").tobytes()


def to_pcm16(samples: npt.ArrayLike) -> PCM:
    """Float samples (full scale ±1.0) as 16-bit PCM, clipped."""
    scaled = np.rint(np.asarray(samples, dtype=np.float64) * 32767.0)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def rms_dbfs(pcm: PCM) -> float:
    """Root-mean-square level relative to full scale; ``-inf`` for silence or nothing."""
    if len(pcm) == 0:
        return -math.inf
    rms = float(np.sqrt(np.mean(np.square(pcm.astype(np.float64)))))
    return 20.0 * math.log10(rms / 32768.0) if rms > 0 else -math.inf


# --- Resampling -------------------------------------------------------------------------------


class Resampler:
    """Streaming rational-ratio resampler: Kaiser-windowed sinc, evaluated polyphase.

    Output sample ``n`` sits at input time ``n * src / dst``, so nothing is
    delayed: ``resample(x)`` lines up with ``x``. Fed in chunks, it holds back
    the last few input samples until the filter's right half has seen them;
    :meth:`flush` pads with silence and returns the rest. The cut-off is
    ``rolloff`` of the lower Nyquist frequency, so a downsample to 8 kHz keeps
    speech (to about 3.6 kHz) and removes what would alias.
    """

    def __init__(
        self,
        src_rate: int,
        dst_rate: int,
        *,
        zero_crossings: int = 16,
        rolloff: float = 0.9,
        beta: float = 8.6,
    ) -> None:
        if src_rate <= 0 or dst_rate <= 0:
            raise ValueError("sample rates must be positive")
        ratio = Fraction(dst_rate, src_rate)
        self.src_rate, self.dst_rate = src_rate, dst_rate
        self.up, self.down = ratio.numerator, ratio.denominator
        self._phases, self._half = _polyphase(self.up, self.down, zero_crossings, rolloff, beta)
        # Input before the first sample is silence.
        self._buffer = np.zeros(self._half - 1, dtype=np.float32)
        self._offset = -(self._half - 1)  # input index of _buffer[0]
        self._consumed = 0  # input samples fed so far
        self._produced = 0  # output samples returned so far

    def _emit(self, available: int) -> PCM:
        """Outputs whose filter window ends before input index ``available``."""
        up, down, half, taps = self.up, self.down, self._half, 2 * self._half
        # Output n needs inputs floor(n*down/up) - half + 1 ... floor(n*down/up) + half.
        last = ((available - half) * up - 1) // down
        count = last + 1 - self._produced
        if count <= 0:
            return np.zeros(0, dtype=np.int16)
        position = np.arange(self._produced, last + 1, dtype=np.int64) * down
        first = position // up - half + 1 - self._offset
        windows = sliding_window_view(self._buffer, taps)
        out = np.empty(count, dtype=np.float32)
        # Every up-th output uses the same phase, so each phase is one matrix-vector product.
        for r in range(min(up, count)):
            out[r::up] = windows[first[r::up]] @ self._phases[position[r] % up]
        self._produced = last + 1
        keep_from = (self._produced * down) // up - half + 1 - self._offset
        if keep_from > 0:
            self._buffer = self._buffer[keep_from:]
            self._offset += keep_from
        return np.clip(np.rint(out), -32768, 32767).astype(np.int16)

    def process(self, chunk: PCM) -> PCM:
        """Resample the next chunk; returns what can be computed so far."""
        self._buffer = np.concatenate([self._buffer, np.asarray(chunk, dtype=np.float32)])
        self._consumed += len(chunk)
        return self._emit(self._consumed)

    def flush(self) -> PCM:
        """The remaining output, as if silence followed the last chunk.

        Altogether the output then has ``ceil(len(input) * dst / src)`` samples.
        """
        self._buffer = np.concatenate([self._buffer, np.zeros(self._half, dtype=np.float32)])
        return self._emit(self._consumed + self._half)


@cache
def _polyphase(
    up: int, down: int, zero_crossings: int, rolloff: float, beta: float
) -> tuple[npt.NDArray[np.float32], int]:
    """Filter taps per output phase (``up`` rows) and the half-width in input samples."""
    cutoff = min(1.0, up / down) * rolloff  # in cycles per input sample, times two
    half = math.ceil(zero_crossings / cutoff)
    phase = np.arange(up, dtype=np.float64)[:, None] / up
    k = np.arange(2 * half, dtype=np.float64)[None, :]
    tau = phase + (half - 1) - k  # output time minus input time, in input samples
    inside = np.clip(1.0 - np.square(tau / half), 0.0, 1.0)
    window = np.i0(beta * np.sqrt(inside)) / np.i0(beta)  # Kaiser, centred on tau = 0
    taps = cutoff * np.sinc(cutoff * tau) * window
    taps[np.abs(tau) >= half] = 0.0
    return taps.astype(np.float32), half


def resample(pcm: PCM, src_rate: int, dst_rate: int) -> PCM:
    """``pcm`` at ``dst_rate``, aligned with the input; ``ceil(len * dst / src)`` samples."""
    if src_rate == dst_rate:
        return np.asarray(pcm, dtype=np.int16).copy()
    resampler = Resampler(src_rate, dst_rate)
    return np.concatenate([resampler.process(pcm), resampler.flush()])


# --- Framing and Media Streams payloads -------------------------------------------------------


def frames(data: bytes, frame_bytes: int = FRAME_SAMPLES, pad: int = ULAW_SILENCE) -> list[bytes]:
    """``data`` cut into frames of ``frame_bytes``; the last is padded with ``pad`` bytes."""
    if frame_bytes <= 0:
        raise ValueError("frame_bytes must be positive")
    out = [data[i : i + frame_bytes] for i in range(0, len(data), frame_bytes)]
    if out and len(out[-1]) < frame_bytes:
        out[-1] = out[-1] + bytes([pad]) * (frame_bytes - len(out[-1]))
    return out


class Framer:
    """Collects bytes that arrive in any sizes and hands out whole frames."""

    def __init__(self, frame_bytes: int = FRAME_SAMPLES, pad: int = ULAW_SILENCE) -> None:
        self.frame_bytes, self.pad = frame_bytes, pad
        self._pending = bytearray()

    def push(self, data: bytes) -> Iterator[bytes]:
        """The whole frames completed by ``data``."""
        self._pending += data
        size = self.frame_bytes
        whole = len(self._pending) - len(self._pending) % size
        for i in range(0, whole, size):
            yield bytes(self._pending[i : i + size])
        del self._pending[:whole]

    def flush(self) -> Iterator[bytes]:
        """The last partial frame, padded, if anything is pending."""
        if self._pending:
            yield from frames(bytes(self._pending), self.frame_bytes, self.pad)
            self._pending.clear()


def encode_payload(audio: bytes) -> str:
    """A Media Streams ``media.payload``: base64 of the raw μ-law bytes."""
    return base64.b64encode(audio).decode("ascii")


def decode_payload(payload: str) -> bytes:
    """The raw bytes of a Media Streams ``media.payload``; refuses anything but base64."""
    try:
        return base64.b64decode(payload.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise AudioFormatError(f"media payload is not base64: {exc}") from None


# --- Conversions the voice channel makes on every call -----------------------------------------


def telephony_to_stt(ulaw: bytes) -> PCM:
    """Inbound μ-law at 8 kHz as 16 kHz PCM for speech-to-text."""
    return resample(ulaw_decode(ulaw), TELEPHONY_RATE, STT_RATE)


def pcm_to_telephony(pcm: PCM, rate: int) -> bytes:
    """PCM at ``rate`` (e.g. 22.05 or 24 kHz from a synthesiser) as 8 kHz μ-law."""
    return ulaw_encode(resample(pcm, rate, TELEPHONY_RATE))


def pcm_for_stt(pcm: bytes, rate: int = TELEPHONY_RATE) -> bytes:
    """PCM bytes at ``rate`` (an endpointed utterance) as the 16 kHz PCM bytes STT takes."""
    return pcm_to_bytes(resample(pcm_from_bytes(pcm), rate, STT_RATE))

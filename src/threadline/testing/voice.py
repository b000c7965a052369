"""A test caller's voice: espeak-ng speech through the telephony round trip, and judging replies.

:func:`caller_frames` synthesises a phrase in an espeak-ng voice and returns
what a phone call would carry: 8 kHz μ-law in 20 ms frames (160 bytes), with
silence before and after like a caller pausing. :func:`paced` sends frames in
real time. :func:`judge_speech` decodes μ-law the bot sent back and says
whether it is speech of a plausible length for its text.

espeak-ng is a Debian package; :func:`espeak_missing` says why it cannot run,
so tests skip locally and fail in CI (see ``tests/conftest.py``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Final

import numpy as np

from threadline.channels.voice.codec import (
    FRAME_MS,
    PCM,
    TELEPHONY_RATE,
    frames,
    pcm_to_telephony,
    rms_dbfs,
    ulaw_decode,
)
from threadline.channels.voice.tts import WavStream
from threadline.channels.voice.vad import EndpointerConfig, voiced_ratio

#: The espeak-ng executable the helpers run.
ESPEAK: Final = os.environ.get("THREADLINE_TEST_ESPEAK", "espeak-ng")
#: espeak-ng's own default speaking rate, in words per minute.
DEFAULT_RATE: Final = 175


def espeak_missing() -> str | None:
    """Why espeak-ng cannot run here, or None when it can."""
    if shutil.which(ESPEAK) is None:
        return f"espeak-ng is missing ({ESPEAK} is not on PATH)"
    return None


def _command(voice: str, rate: int) -> list[str]:
    return [ESPEAK, "--stdout", "--stdin", "-v", voice, "-s", str(rate)]


def _parse(wav: bytes) -> tuple[PCM, int]:
    reader = WavStream()
    data = reader.push(wav)
    if reader.sample_rate is None:
        raise RuntimeError("espeak-ng wrote no WAV header")
    samples = np.frombuffer(data[: len(data) - len(data) % 2], dtype="<i2").astype(np.int16)
    return samples, reader.sample_rate


def speak(text: str, voice: str = "en-us", rate: int = DEFAULT_RATE) -> tuple[PCM, int]:
    """espeak-ng's PCM for ``text`` and its sample rate (22.05 kHz for its own voices)."""
    done = subprocess.run(
        _command(voice, rate), input=text.encode("utf-8"), capture_output=True, check=True
    )
    return _parse(done.stdout)


async def aspeak(text: str, voice: str = "en-us", rate: int = DEFAULT_RATE) -> tuple[PCM, int]:
    """:func:`speak` without blocking the event loop."""
    process = await asyncio.create_subprocess_exec(
        *_command(voice, rate),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(text.encode("utf-8"))
    if process.returncode:
        raise RuntimeError(f"espeak-ng failed: {err.decode('utf-8', 'replace').strip()}")
    return await asyncio.to_thread(_parse, out)


def telephony_audio(
    pcm: PCM, rate: int, lead_ms: int = 300, tail_ms: int = 800, noise_dbfs: float | None = None
) -> bytes:
    """``pcm`` as a caller's line carries it: 8 kHz μ-law with silence (or noise) around it."""
    lead = np.zeros(rate * lead_ms // 1000, dtype=np.int16)
    tail = np.zeros(rate * tail_ms // 1000, dtype=np.int16)
    signal = np.concatenate([lead, pcm, tail])
    if noise_dbfs is not None:
        signal = add_noise(signal, noise_dbfs)
    return pcm_to_telephony(signal, rate)


def add_noise(pcm: PCM, level_dbfs: float, seed: int = 7) -> PCM:
    """``pcm`` plus white noise at ``level_dbfs`` (RMS), reproducibly."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(len(pcm)) * 32768.0 * 10 ** (level_dbfs / 20)
    return np.clip(pcm.astype(np.float64) + noise, -32768, 32767).astype(np.int16)


def caller_frames(
    text: str,
    voice: str = "en-us",
    rate: int = DEFAULT_RATE,
    lead_ms: int = 300,
    tail_ms: int = 800,
) -> list[bytes]:
    """``text`` spoken in ``voice``, as the 20 ms μ-law frames a test caller sends."""
    pcm, sample_rate = speak(text, voice, rate)
    return frames(telephony_audio(pcm, sample_rate, lead_ms, tail_ms))


async def acaller_frames(
    text: str,
    voice: str = "en-us",
    rate: int = DEFAULT_RATE,
    lead_ms: int = 300,
    tail_ms: int = 800,
) -> list[bytes]:
    """:func:`caller_frames` without blocking the event loop."""
    pcm, sample_rate = await aspeak(text, voice, rate)
    audio = await asyncio.to_thread(telephony_audio, pcm, sample_rate, lead_ms, tail_ms)
    return frames(audio)


async def paced(chunks: Iterable[bytes], frame_ms: int = FRAME_MS) -> AsyncIterator[bytes]:
    """``chunks`` one every ``frame_ms``, on a steady clock (real-time pacing)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for index, chunk in enumerate(chunks):
        delay = start + index * frame_ms / 1000 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        yield chunk


@dataclass(frozen=True, slots=True)
class SpeechJudgement:
    """What returned audio sounds like: its length, voiced share and level."""

    duration_s: float
    voiced_s: float
    voiced_ratio: float
    level_dbfs: float

    def plausible_for(self, text: str) -> bool:
        """Speech, and about as long as saying ``text`` takes (0.15–1.2 s a word, ±0.5 s)."""
        words = max(1, len(text.split()))
        return (
            self.voiced_ratio >= 0.3
            and self.level_dbfs > -45
            and 0.15 * words - 0.5 <= self.voiced_s
            and self.duration_s <= 1.2 * words + 0.5
        )


def judge_speech(ulaw: bytes, config: EndpointerConfig | None = None) -> SpeechJudgement:
    """Judge 8 kHz μ-law audio (e.g. every outbound ``media`` payload of a reply, joined)."""
    pcm = ulaw_decode(ulaw)
    ratio = voiced_ratio(pcm, config or EndpointerConfig(sample_rate=TELEPHONY_RATE))
    duration = len(pcm) / TELEPHONY_RATE
    return SpeechJudgement(
        duration_s=round(duration, 3),
        voiced_s=round(duration * ratio, 3),
        voiced_ratio=round(ratio, 3),
        level_dbfs=round(rms_dbfs(pcm), 1),
    )

"""Where a voice turn's time goes, from the stage times the traced servers note.

A turn runs from the caller's last voiced frame to the first frame of the
reply reaching the caller. Walking back from that frame through one call's
notes (each stage's latest note before the next stage's) finds when each
stage of that turn ended; the stage's time is from the previous one's end.
Threadline's notes come from ``bench/voice_probe.py`` (timed engines, the
live hub), Pipecat's from an observer on its pipeline (``bench/pipecat_peer.py --trace``).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

#: (stage, what it covers, the note it ends at); the last one ends at the caller's first frame
Stages = tuple[tuple[str, str, str], ...]

THREADLINE_STAGES: Final[Stages] = (
    ("endpointing", "trailing silence until webrtcvad's endpointer ends the utterance "
     "(the transcription started at the 200 ms pause and runs meanwhile)", "utterance_ended"),
    ("STT left after the end", "what the transcription (pool queue, resampling, Whisper tiny.en "
     "on the fitted window) still takes after the end, `utterance.transcribed` appended, "
     "relayed, on the hub", "hub_utterance"),
    ("bot turn via log", "bus to the bot, rehydrate, turn, reply appended, relayed, on the hub",
     "hub_reply"),
    ("reply to TTS", "the call's follower queues the reply, playback starts", "tts_called"),
    ("TTS first chunk", "espeak-ng starts and synthesises the first sentence", "tts_first_chunk"),
    ("to the caller", "first frames sent over the media WebSocket and received", "first_frame"),
)  # fmt: skip

PIPECAT_STAGES: Final[Stages] = (
    ("endpointing", "trailing silence until Silero VAD reports the user stopped",
     "vad_stopped"),
    ("STT", "segment padded with 0.5 s of silence, queued, Whisper tiny.en (same settings)",
     "transcription"),
    ("bot turn", "the embedded agent in process, the reply pushed as LLM text", "reply_text"),
    ("TTS first chunk", "sentence aggregation, espeak-ng's first sentence, resampling",
     "tts_audio"),
    ("to the caller", "output transport (40 ms chunks, pacing), Twilio serializer, WebSocket",
     "first_frame"),
)  # fmt: skip


def _last(notes: Sequence[Sequence[object]], stage: str, until: float) -> float | None:
    times = [float(t) for s, t in notes if s == stage and float(t) <= until]  # type: ignore[arg-type]
    return max(times) if times else None


def stages_of(
    notes: Sequence[Sequence[object]], voiced_at: float, first_frame: float, stages: Stages
) -> dict[str, float] | None:
    """Seconds per stage of the turn answered at ``first_frame``; None if a note is missing."""
    at = {"first_frame": first_frame}
    until = first_frame
    for _, _, note in reversed(stages[:-1]):
        found = _last(notes, note, until)
        if found is None or found < voiced_at:
            return None
        at[note] = until = found
    out: dict[str, float] = {}
    start = voiced_at
    for name, _, note in stages:
        out[name] = at[note] - start
        start = at[note]
    return out


def _p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


@dataclass
class Breakdown:
    """Stage times of every turn that could be traced, for one system at ``calls`` calls."""

    system: str
    calls: int
    stages: Stages
    turns: list[dict[str, float] | None]
    #: the knobs it ran with
    note: str = ""

    def table(self) -> str:
        traced = [t for t in self.turns if t is not None]
        title = (f"{self.system} at {self.calls} concurrent calls, {self.note} ({len(traced)} of "
                 f"{len(self.turns)} turns traced):")  # fmt: skip
        if not traced:
            return title + " no turn could be traced through the stages."
        total = [sum(t.values()) * 1000 for t in traced]
        lines = [
            title,
            "",
            "| stage | covers | median ms | p95 ms |",
            "|---|---|---|---|",
        ]
        for name, covers, _ in self.stages:
            values = [t[name] * 1000 for t in traced]
            lines.append(
                f"| {name} | {covers} | {statistics.median(values):,.0f} | {_p95(values):,.0f} |"
            )
        lines.append(f"| whole turn | | {statistics.median(total):,.0f} | {_p95(total):,.0f} |")
        return "\n".join(lines)

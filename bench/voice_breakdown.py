"""Where a Threadline voice turn's time goes, from the stage times :mod:`bench.voice_probe` notes.

A turn runs from the caller's last voiced frame to the first frame of the
reply reaching the caller. Walking back from that frame through one call's
notes finds the synthesiser's first chunk, the synthesis call, the reply and
the utterance reaching the live hub, and the recognition that started it.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

#: (stage, what it covers, the note it ends at)
STAGES: Final = (
    ("endpointing", "trailing silence until the endpointer ends the utterance, resampling",
     "stt_called"),
    ("STT queue", "waiting for the recogniser's one pool thread", "decode_began"),
    ("STT decode", "Whisper tiny.en, beam 5, domain prompt", "decode_ended"),
    ("utterance to log", "back on the loop, `utterance.transcribed` appended, relayed, on the hub",
     "hub_utterance"),
    ("bot turn via log", "bus to the bot, rehydrate, turn, reply appended, relayed, on the hub",
     "hub_reply"),
    ("reply to TTS", "the call's follower queues the reply, playback starts", "tts_called"),
    ("TTS first chunk", "espeak-ng starts and synthesises the first sentence", "tts_first_chunk"),
    ("to the caller", "first frames sent over the media WebSocket and received", "first_frame"),
)  # fmt: skip


def _last(notes: Sequence[tuple[str, float]], stage: str, until: float) -> float | None:
    times = [t for s, t in notes if s == stage and t <= until]
    return max(times) if times else None


def stages_of(
    notes: Sequence[tuple[str, float]], voiced_at: float, first_frame: float
) -> dict[str, float] | None:
    """Seconds per stage of the turn answered at ``first_frame``; None if a note is missing."""
    at = {"first_frame": first_frame}
    until = first_frame
    for _, _, note in reversed(STAGES[:-1]):
        found = _last(notes, note, until)
        if found is None or found < voiced_at:
            return None
        at[note] = until = found
    out: dict[str, float] = {}
    start = voiced_at
    for name, _, note in STAGES:
        out[name] = at[note] - start
        start = at[note]
    return out


@dataclass
class Breakdown:
    """Stage times of every turn that could be traced, at ``calls`` concurrent calls."""

    calls: int
    turns: list[dict[str, float] | None]

    def table(self) -> str:
        traced = [t for t in self.turns if t is not None]
        if not traced:
            return "No turn could be traced through the stages."
        total = [sum(t.values()) * 1000 for t in traced]
        lines = [
            f"Where Threadline's time goes at {self.calls} concurrent calls ({len(traced)} of "
            f"{len(self.turns)} turns traced; `python -m bench.voice_latency --profile "
            f"{self.calls}`, the same service with timed engines):",
            "",
            "| stage | covers | median ms | p95 ms | share of the median turn |",
            "|---|---|---|---|---|",
        ]
        median_total = statistics.median(total)
        for name, covers, _ in STAGES:
            values = sorted(t[name] * 1000 for t in traced)
            median = statistics.median(values)
            p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
            lines.append(
                f"| {name} | {covers} | {median:,.0f} | {p95:,.0f} | {median / median_total:.0%} |"
            )
        p95_total = sorted(total)[min(len(total) - 1, int(0.95 * len(total)))]
        lines.append(f"| whole turn | | {median_total:,.0f} | {p95_total:,.0f} | |")
        return "\n".join(lines)

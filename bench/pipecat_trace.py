"""Stage times of the Pipecat peer's turns, for the latency breakdown (``--trace``).

An observer on each call's pipeline notes, on ``time.monotonic()`` (the clock
the test caller and Threadline's probe use), when Silero VAD reported the
user stopped, the transcript came out of the STT, the bot's reply text was
pushed, and the synthesiser's first audio of that reply was pushed. The
pipeline runs on a clock that reads ``time.monotonic_ns()`` as it is, so each
frame's push timestamp is on that same clock even though observers run later.
"""

from __future__ import annotations

import time

from pipecat.clocks.base_clock import BaseClock
from pipecat.frames.frames import (
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed


class MonotonicClock(BaseClock):
    """The pipeline clock as ``time.monotonic_ns()`` itself, not from the pipeline's start."""

    def get_time(self) -> int:
        return time.monotonic_ns()

    def start(self) -> None:
        return None


class StageClock(BaseObserver):
    """Notes (stage, monotonic seconds) of one call's turns into ``notes``."""

    def __init__(self, notes: list[tuple[str, float]]) -> None:
        super().__init__(observe_every_push=False)
        self.notes = notes
        self._replying = False

    async def on_push_frame(self, data: FramePushed) -> None:
        frame, at = data.frame, data.timestamp / 1e9
        if isinstance(frame, VADUserStoppedSpeakingFrame):
            self.notes.append(("vad_stopped", at))
        elif isinstance(frame, TranscriptionFrame):
            self.notes.append(("transcription", at))
        elif type(frame) is LLMTextFrame:  # the bot's reply (the TTS pushes other text frames)
            self.notes.append(("reply_text", at))
            self._replying = True
        elif isinstance(frame, TTSAudioRawFrame) and self._replying:
            self.notes.append(("tts_audio", at))
            self._replying = False

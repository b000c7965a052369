"""Threadline's service with its speech engines timed, for the turn latency breakdown.

``python -m bench.voice_probe --port 8082`` serves ``create_app`` exactly as
``threadline serve`` does, except that each call's speech pipeline (the same
:class:`~threadline.channels.voice.pipeline.SpeechCall`, the same Whisper and
espeak-ng engines and prompt) gets engines that note, per call, when each
stage of a turn happened on ``time.monotonic()`` (one clock for every process
on the machine): the recogniser called, its decode started and ended, the
utterance and the bot's reply reaching the live hub, the synthesiser called
and its first chunk. ``GET /bench/timings`` hands them out.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import uvicorn
from fastapi import APIRouter, FastAPI

from bench import NORTHWIND
from threadline.api.app import create_app
from threadline.api.deps import service_of
from threadline.channels.voice.hints import domain_hints
from threadline.channels.voice.media import CallHandler, CallSink, HandlerFactory
from threadline.channels.voice.pipeline import SpeechCall, SpeechConfig
from threadline.channels.voice.stt import WhisperConfig, WhisperSTT
from threadline.channels.voice.tts import EspeakTTS
from threadline.channels.voice.vad import EndpointerConfig, UtteranceEnded
from threadline.core.events import EventRecord
from threadline.core.ports import (
    AudioEncoding,
    SpeechChunk,
    SpeechHints,
    SpeechToText,
    TextToSpeech,
    Transcript,
)
from threadline.service import Service
from threadline.settings import load_settings

#: call id -> [(stage, monotonic seconds)] in the order they happened
Timings = defaultdict[str, list[tuple[str, float]]]


class TimedWhisper(WhisperSTT):
    """The embedded recogniser, noting when each decode starts and ends in its pool."""

    def __init__(self, hints: SpeechHints, config: WhisperConfig | None = None) -> None:
        super().__init__(config, hints=hints)
        #: (began, ended) of every decode; one pool thread, so they never overlap
        self.decodes: list[tuple[float, float]] = []

    def _decode(self, audio: np.ndarray, hints: SpeechHints | None, language: str) -> Transcript:
        began = time.monotonic()
        try:
            return super()._decode(audio, hints, language)
        finally:
            self.decodes.append((began, time.monotonic()))

    def decode_of(self, called: float, returned: float) -> tuple[float, float] | None:
        """The decode of a transcription from ``called`` to ``returned``: the last to end."""
        inside = [d for d in self.decodes[-64:] if called <= d[0] and d[1] <= returned]
        return max(inside, key=lambda d: d[1]) if inside else None


class CallSTT(SpeechToText):
    """One call's view of the shared recogniser: its calls and decodes noted for the call."""

    def __init__(self, shared: TimedWhisper, note: Callable[[str, float], None]) -> None:
        self.shared, self.note = shared, note
        self.engine_id = shared.engine_id

    async def transcribe(
        self, pcm: bytes, hints: SpeechHints | None = None, language: str = "en"
    ) -> Transcript:
        called = time.monotonic()
        self.note("stt_called", called)  # at the pause: a draft, kept or dropped
        transcript = await self.shared.transcribe(pcm, hints, language)
        returned = time.monotonic()
        decode = self.shared.decode_of(called, returned)
        if decode is not None:
            self.note("decode_began", decode[0])
            self.note("decode_ended", decode[1])
        self.note("stt_returned", returned)
        return transcript


class CallTTS(TextToSpeech):
    """One call's view of the synthesiser: when each reply was asked for and first sounded."""

    def __init__(self, shared: TextToSpeech, note: Callable[[str, float], None]) -> None:
        self.shared, self.note = shared, note
        self.engine_id = shared.engine_id

    async def synthesize(
        self, text: str, encoding: AudioEncoding = "mulaw", voice: str | None = None
    ) -> AsyncIterator[SpeechChunk]:
        self.note("tts_called", time.monotonic())
        first = True
        async with contextlib.aclosing(self.shared.synthesize(text, encoding, voice)) as speech:
            async for chunk in speech:
                if first:
                    self.note("tts_first_chunk", time.monotonic())
                    first = False
                yield chunk


class TimedSpeechCall(SpeechCall):
    """The pipeline as it is, noting when the endpointer ends each utterance."""

    def __init__(self, *args: Any, note: Callable[[str, float], None]) -> None:
        super().__init__(*args)
        self.note = note

    def _finish(self, utterance: UtteranceEnded) -> None:
        self.note("utterance_ended", time.monotonic())
        super()._finish(utterance)


def probe_app(
    endpointer: EndpointerConfig | None = None, whisper: WhisperConfig | None = None
) -> tuple[FastAPI, Timings]:
    """``create_app`` on the settings from the environment, with timed speech engines.

    ``endpointer`` and ``whisper`` try other knobs than the pipeline's defaults.
    """
    speech = SpeechConfig(endpointer=endpointer or EndpointerConfig())
    app = create_app(load_settings())
    timings: Timings = defaultdict(list)

    def hub_arrivals(record: EventRecord) -> None:
        if record.leg_id and record.type == "utterance.transcribed":
            timings[record.leg_id].append(("hub_utterance", time.monotonic()))
        elif record.leg_id and record.type == "message.sent" and record.actor_kind == "bot":
            timings[record.leg_id].append(("hub_reply", time.monotonic()))

    def handlers(service: Service) -> HandlerFactory:
        gateway = service.voice
        assert gateway is not None, "the probe needs the voice extra"
        calls, hub = gateway.calls, service.hub
        hints = domain_hints(service.business)
        stt = TimedWhisper(hints, whisper)
        tts = EspeakTTS()
        hub.listen(hub_arrivals)

        def make(sink: CallSink) -> CallHandler:
            handler: SpeechCall | None = None

            def note(stage: str, at: float) -> None:
                if handler is not None and handler.call is not None:
                    timings[handler.call.call_id].append((stage, at))

            handler = TimedSpeechCall(sink, calls, hub, CallSTT(stt, note),
                                      CallTTS(tts, note), hints, speech, note=note)  # fmt: skip
            return handler

        return make

    @contextlib.asynccontextmanager
    async def timed(app: FastAPI) -> AsyncIterator[None]:
        """Once the service runs, its calls get the timed pipeline."""
        service = service_of(app)
        gateway = service.voice
        assert gateway is not None, "the probe needs the voice extra"
        gateway.handlers = handlers(service)
        yield

    app.include_router(APIRouter(lifespan=timed))

    @app.get("/bench/timings", include_in_schema=False)
    async def handed_out() -> dict[str, list[tuple[str, float]]]:
        return dict(timings)

    return app, timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--end-silence-ms", type=int, default=EndpointerConfig().end_silence_ms)
    parser.add_argument("--beam", type=int, default=WhisperConfig().beam_size)
    args = parser.parse_args()
    os.environ.setdefault("THREADLINE_BUSINESS", str(NORTHWIND))  # run by hand: the demo
    app, _ = probe_app(
        EndpointerConfig(end_silence_ms=args.end_silence_ms), WhisperConfig(beam_size=args.beam)
    )
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level="warning",
        ws="websockets-sansio", ws_per_message_deflate=False,
    )  # fmt: skip
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()

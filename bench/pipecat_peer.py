"""Pipecat as the peer of the voice latency benchmark, with Threadline's engines and answers.

``python -m bench.pipecat_peer --port 8081 [--stop-secs 0.6]`` serves the same
``POST /voice/twilio/incoming`` as Threadline (TwiML ``<Connect><Stream>``;
the signature is not checked) and runs one Pipecat pipeline per call on the
media WebSocket: ``FastAPIWebsocketTransport`` with ``TwilioFrameSerializer``
→ ``VADProcessor`` (Silero: the only Pipecat VAD analyzer that runs offline,
its ONNX model ships in the wheel) → :class:`BundledWhisperSTT` → :class:`AgentAnswers`
→ :class:`EspeakTTS` → the transport's output. The engines are the ones
Threadline runs: faster-whisper with the bundled tiny.en, decoded with
Threadline's settings and domain prompt on faster-whisper's usual 30 s window
(Threadline's fitted window and early decoding are its own); one espeak-ng
process per sentence; the embedded agent answering in process on the business
pack the service is configured with (``THREADLINE_BUSINESS``, its tools' state
in ``THREADLINE_DATA_DIR``), its state folded from the turn's events in memory,
no event log, so the comparison isolates the voice stack.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import quoteattr

import numpy as np
import uvicorn
from fastapi import FastAPI, Request, Response, WebSocket
from loguru import logger
from pipecat.audio.utils import create_stream_resampler
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.services.settings import STTSettings, TTSSettings
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.services.tts_service import TTSService
from pipecat.transcriptions.language import Language
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport
from pipecat.utils.time import time_now_iso8601
from pipecat.workers.runner import WorkerRunner

from bench import NORTHWIND
from threadline.agents import EmbeddedAgent
from threadline.business import load_configured
from threadline.channels.voice.hints import domain_hints
from threadline.channels.voice.stt import WhisperConfig, bundled_model_path, tidy_numbers
from threadline.channels.voice.telephony.calls import e164
from threadline.channels.voice.tts import READ_BYTES, EspeakConfig, WavStream
from threadline.channels.voice.vad import EndpointerConfig
from threadline.core.conversation import ConversationState, decide, initial
from threadline.core.events import Actor, Event, new_id
from threadline.settings import data_dir, load_settings
from threadline.systems import Systems

#: Whisper hears 16 kHz; the serializer resamples the caller's 8 kHz μ-law up to it.
AUDIO_IN_RATE = 16_000
#: Telephony rate: the synthesiser resamples once, the serializer only encodes μ-law.
AUDIO_OUT_RATE = 8_000
#: Threadline's trailing silence that ends an utterance, the default for the peer's VAD.
THREADLINE_END_SILENCE_S = EndpointerConfig().end_silence_ms / 1000

_model: Any = None
_model_lock = threading.Lock()


def whisper_model() -> Any:
    """The process's one faster-whisper model: the bundled tiny.en, never downloaded."""
    global _model
    with _model_lock:
        if _model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from faster_whisper import WhisperModel

            # Threads and workers as Pipecat's own WhisperSTTService leaves them (CTranslate2
            # picks the threads, one worker): on the padded 30 s window that beats Threadline's
            # one thread per decode, which suits its short fitted windows.
            _model = WhisperModel(
                str(bundled_model_path()),
                device="cpu",
                compute_type=WhisperConfig().compute_type,
                local_files_only=True,
            )
        return _model


def transcribe(pcm: bytes, prompt: str) -> str:
    """16 kHz PCM to text with Threadline's decoding settings (beam, prompt, no timestamps)."""
    cfg = WhisperConfig()
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    segments, _ = whisper_model().transcribe(
        audio,
        language="en",
        beam_size=cfg.beam_size,
        temperature=0.0,
        initial_prompt=prompt or None,
        condition_on_previous_text=False,
        without_timestamps=True,
        vad_filter=False,
    )
    return tidy_numbers(" ".join(t for s in segments if (t := s.text.strip())))


class BundledWhisperSTT(SegmentedSTTService):
    """Pipecat's segmented STT (VAD-delimited segments) over the bundled tiny.en model.

    Pipecat's own ``WhisperSTTService`` takes a model path too, but loads a model
    per call and decodes with faster-whisper's defaults; this subclass decodes
    each segment with Threadline's settings, on one shared model.
    """

    def __init__(self, prompt: str, **kwargs: Any) -> None:
        settings = STTSettings(model="tiny.en", language=Language.EN)
        super().__init__(settings=settings, **kwargs)
        self._prompt = prompt

    @property
    def wants_wav_segments(self) -> bool:
        return False  # the model reads 16-bit PCM

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        text = await asyncio.to_thread(transcribe, audio, self._prompt)
        if text:
            yield TranscriptionFrame(text, self._user_id, time_now_iso8601(), Language.EN)


class EspeakTTS(TTSService):
    """espeak-ng as Threadline runs it: one process per sentence, its WAV read as it comes."""

    def __init__(self, config: EspeakConfig | None = None, **kwargs: Any) -> None:
        self.config = config or EspeakConfig()
        settings = TTSSettings(model=None, voice=self.config.voice, language=Language.EN)
        super().__init__(settings=settings, push_start_frame=True, push_stop_frames=True, **kwargs)

    def _command(self) -> list[str]:
        cfg = self.config
        command = [cfg.executable, "--stdout", "--stdin", "-v", cfg.voice, "-s", str(cfg.rate)]
        return command + (["-p", str(cfg.pitch)] if cfg.pitch is not None else [])

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        process = await asyncio.create_subprocess_exec(
            *self._command(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert process.stdin and process.stdout
        resampler = create_stream_resampler()
        try:
            process.stdin.write(text.encode("utf-8"))
            await process.stdin.drain()
            process.stdin.close()
            wav = WavStream()
            while chunk := await process.stdout.read(READ_BYTES):
                samples = wav.push(chunk)
                if not samples or wav.sample_rate is None:
                    continue
                await self.stop_ttfb_metrics()
                audio = await resampler.resample(samples, wav.sample_rate, self.sample_rate)
                if audio:
                    yield TTSAudioRawFrame(audio, self.sample_rate, 1, context_id=context_id)
            if await process.wait() != 0:
                yield ErrorFrame(f"espeak-ng failed on {text!r}")
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()


class AgentAnswers(FrameProcessor):
    """Each final transcript to the embedded agent's reply, as an LLM's text would come."""

    def __init__(self, bot: EmbeddedAgent, call_id: str, caller: str) -> None:
        super().__init__()
        self.bot = bot
        self.call_id = call_id
        self.customer_id = "caller-" + new_id()
        address = e164(caller) if caller else None
        self.conversation_id = new_id()
        leg: dict[str, object] = {"leg_id": call_id, "channel": "voice"}
        events = [self._event("conversation.started", {"origin": "voice"})]
        events.append(
            self._event("leg.started", {**leg, **({"address": address} if address else {})})
        )
        self.state: ConversationState = decide(initial(self.conversation_id), events)

    def _event(self, type_: str, payload: dict[str, object]) -> Event:
        return Event(
            conversation_id=self.conversation_id,
            type=type_,
            payload=payload,
            channel="voice",
            leg_id=self.call_id,
            actor=Actor("customer", self.customer_id),
            customer_id=self.customer_id,
        )

    async def answer(self, text: str) -> str | None:
        heard = self._event("utterance.transcribed", {"text": text, "confidence": 1.0})
        self.state = decide(self.state, [heard])
        now = datetime.now(UTC)
        turn = await self.bot.take_turn(
            self.state, text, "voice", now, leg_id=self.call_id, in_reply_to=heard.event_id
        )
        self.state = decide(self.state, turn.events)
        return turn.reply

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame):
            reply = await self.answer(frame.text.strip())
            if reply:
                await self.push_frame(LLMFullResponseStartFrame())
                await self.push_frame(LLMTextFrame(reply))
                await self.push_frame(LLMFullResponseEndFrame())
            return
        await self.push_frame(frame, direction)


def create_peer(stop_secs: float = THREADLINE_END_SILENCE_S, trace: bool = False) -> FastAPI:
    """The peer's web app: the incoming-call webhook and the media WebSocket.

    With ``trace``, every call's stage times are noted (see ``bench/pipecat_trace.py``)
    and ``GET /bench/timings`` hands them out.
    """
    timings: dict[str, list[tuple[str, float]]] = {}
    settings = load_settings()  # the business and data folder, as `threadline serve` reads them
    business = load_configured(settings.business)
    systems = Systems.open(business, data_dir(settings))
    bot = EmbeddedAgent(systems)
    prompt = domain_hints(business).prompt

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(whisper_model)  # the first caller should not wait
        try:
            yield
        finally:
            await systems.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/voice/twilio/incoming")
    async def incoming(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8")))
        url = f"ws://{request.url.netloc}/voice/twilio/stream"
        caller = form.get("From", "")
        twiml = (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
            f'<Stream url={quoteattr(url)}><Parameter name="caller" value={quoteattr(caller)}/>'
            "</Stream></Connect></Response>"
        )
        return Response(twiml, media_type="application/xml")

    @app.websocket("/voice/twilio/stream")
    async def stream(websocket: WebSocket) -> None:
        await websocket.accept()
        start: dict[str, Any] = {}
        while not start:  # Twilio sends "connected", then "start"
            message = await websocket.receive_json()
            if message.get("event") == "start":
                start = message["start"]
        serializer = TwilioFrameSerializer(
            start["streamSid"],
            start["callSid"],
            params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
        )
        transport = FastAPIWebsocketTransport(
            websocket,
            FastAPIWebsocketParams(
                audio_in_enabled=True, audio_out_enabled=True, serializer=serializer
            ),
        )
        caller = str(start.get("customParameters", {}).get("caller", ""))
        vad = SileroVADAnalyzer(params=VADParams(stop_secs=stop_secs))
        pipeline = Pipeline([
            transport.input(),
            VADProcessor(vad_analyzer=vad),
            BundledWhisperSTT(prompt),
            AgentAnswers(bot, start["callSid"], caller),
            EspeakTTS(),
            transport.output(),
        ])  # fmt: skip
        traced: dict[str, Any] = {}
        if trace:
            from bench.pipecat_trace import MonotonicClock, StageClock

            notes = timings.setdefault(start["callSid"], [])
            traced = {"clock": MonotonicClock(), "observers": [StageClock(notes)]}
        worker = PipelineWorker(
            pipeline,
            params=PipelineParams(audio_in_sample_rate=AUDIO_IN_RATE,
                                  audio_out_sample_rate=AUDIO_OUT_RATE),
            enable_rtvi=False,
            idle_timeout_secs=None,
            **traced,
        )  # fmt: skip

        @transport.event_handler("on_client_disconnected")
        async def on_client_disconnected(transport: Any, client: Any) -> None:
            await worker.cancel()

        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        await runner.run()

    if trace:

        @app.get("/bench/timings", include_in_schema=False)
        async def handed_out() -> dict[str, list[tuple[str, float]]]:
            return timings

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--stop-secs", type=float, default=THREADLINE_END_SILENCE_S,
                        help="trailing silence that ends a turn: VADParams.stop_secs")  # fmt: skip
    parser.add_argument("--trace", action="store_true", help="note stage times per call")
    args = parser.parse_args()
    os.environ.setdefault("THREADLINE_BUSINESS", str(NORTHWIND))  # run by hand: the demo
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    # The same server settings as `threadline serve`.
    app = create_peer(args.stop_secs, args.trace)
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level="warning",
        ws="websockets-sansio", ws_per_message_deflate=False,
    )  # fmt: skip
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()

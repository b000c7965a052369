"""The speech pipeline of one call: the caller's audio in, the replies spoken back.

Each call gets its own :class:`SpeechCall` (a
:class:`~threadline.channels.voice.media.CallHandler`), so calls never share
a buffer or a turn. Inbound μ-law frames are decoded and endpointed on the
event loop (microseconds a frame); each finished utterance is transcribed by
the speech-to-text port, which runs its model off the loop, and recorded as
``utterance.transcribed``; the bot answers it like any chat message. The
transcription starts early, when the caller pauses (``SpeechPaused``), so it
overlaps the rest of the end-of-turn silence; if the caller speaks again the
draft is dropped, and only a draft of exactly the final audio is used. A
transcription that fails or takes longer than ``transcribe_timeout_s`` loses
that utterance only: it is logged (the kind of failure, never the caller's
audio or words) and the call listens on for the next.

Replies come back through the log: every ``message.sent`` on this call's leg
(the bot's, or a person's from the desk) is synthesised and played, with a
``mark`` after each stretch of audio. The marks the provider echoes back say
how far the caller has listened, so when the caller speaks over a reply the
pipeline sends ``clear``, stops synthesis, and records ``message.heard`` with
only what was actually played. Keyed-in digits go to the keypad handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import structlog

from threadline.channels.voice.codec import (
    FRAME_MS,
    FRAME_SAMPLES,
    pcm_for_stt,
    pcm_to_bytes,
    ulaw_decode,
)
from threadline.channels.voice.media import Call, CallHandler, CallSink, HandlerFactory
from threadline.channels.voice.telephony.calls import GATEWAY, LINEAGE, VoiceCalls
from threadline.channels.voice.telephony.keypad import Keypad
from threadline.channels.voice.vad import (
    Endpointer,
    EndpointerConfig,
    SpeechPaused,
    SpeechStarted,
)
from threadline.channels.voice.vad import UtteranceEnded as Utterance
from threadline.core.errors import ThreadlineError
from threadline.core.events import Actor, Event, EventRecord, Lineage
from threadline.core.ports import SpeechHints, SpeechToText, TextToSpeech, Transcript
from threadline.engine.commands import AppendEvents
from threadline.engine.conversations import Conversations
from threadline.engine.live import LiveHub

log = structlog.get_logger("threadline.voice.pipeline")

#: A mark every this many frames of played audio: how finely barge-in knows what was heard.
MARK_EVERY: Final = 10
#: Frames a character of text takes to say, until a reply has measured its own rate.
FRAMES_PER_CHAR: Final = 3.3
#: Seconds past the end of a reply's audio to wait for its last mark to come back.
MARK_SLACK: Final = 3.0
#: What a call follows on its conversation: replies to say, and replies already heard.
FOLLOWED: Final = frozenset({"message.sent", "message.heard"})
_WORD_END: Final = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class SpeechConfig:
    """Knobs of the per-call pipeline."""

    endpointer: EndpointerConfig = field(default_factory=EndpointerConfig)
    #: The synthesiser's voice; None is its default.
    voice: str | None = None
    #: Utterances shorter than this are line noise or a cough, not a turn.
    min_utterance_ms: int = 200
    #: Seconds one utterance's transcription may take before the call gives it up.
    transcribe_timeout_s: float = 15.0


@dataclass(slots=True)
class Playback:
    """One reply being played: which marks stand for how much of its text."""

    message_id: str
    text: str
    #: mark name -> (frames played, characters of text heard) once it comes back
    marks: dict[str, tuple[int, int]] = field(default_factory=dict)
    frames_sent: int = 0
    frames_heard: int = 0
    heard_through: int = 0
    all_sent: bool = False
    pending: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    interrupted: bool = False
    #: The last position the synthesiser confirmed, and the frames sent by then.
    certain: int = 0
    frames_at_certain: int = 0
    frames_per_char: float = FRAMES_PER_CHAR

    def settle(self, through: int) -> None:
        """The synthesiser has spoken ``text[:through]`` with the frames sent so far."""
        frames = self.frames_sent - self.frames_at_certain
        self.frames_per_char = frames / max(1, through - self.certain)
        self.certain, self.frames_at_certain = through, self.frames_sent

    def estimate(self) -> int:
        """Where the frames sent so far have got to in the text, to the last whole word."""
        chars = (self.frames_sent - self.frames_at_certain) / self.frames_per_char
        reached = self.certain + chars
        ends = [e for e in _word_ends(self.text, self.certain, len(self.text)) if e <= reached]
        return ends[-1] if ends else self.certain

    def heard(self, name: str) -> None:
        position = self.marks.pop(name, None)
        if position is None or self.interrupted:
            return
        frames, through = position
        self.frames_heard = max(self.frames_heard, frames)
        self.heard_through = max(self.heard_through, through)
        self.pending -= 1
        if self.all_sent and self.pending == 0:
            self.done.set()

    @property
    def heard_text(self) -> str:
        return self.text[: self.heard_through].rstrip()


@dataclass(slots=True)
class Draft:
    """A transcription started when the caller paused, for the audio up to ``end_ms``."""

    end_ms: int
    audio_bytes: int
    task: asyncio.Task[Transcript]

    def matches(self, utterance: Utterance) -> bool:
        return self.end_ms == utterance.end_ms and self.audio_bytes == len(utterance.audio)

    def drop(self) -> None:
        self.task.cancel()  # a decode still queued never runs; a running one is ignored
        if self.task.done() and not self.task.cancelled():
            self.task.exception()  # a failed draft nobody needs is not worth a warning


def _word_ends(text: str, start: int, end: int) -> list[int]:
    return [start + m.end() for m in _WORD_END.finditer(text[start:end])]


class SpeechCall(CallHandler):
    """Runs one call: endpointing, transcription, playback with barge-in, keypad."""

    def __init__(
        self,
        sink: CallSink,
        calls: VoiceCalls,
        hub: LiveHub,
        stt: SpeechToText,
        tts: TextToSpeech,
        hints: SpeechHints | None = None,
        config: SpeechConfig | None = None,
    ) -> None:
        self.sink = sink
        self.calls = calls
        self.conversations: Conversations = calls.conversations
        self.hub = hub
        self.stt = stt
        self.tts = tts
        self.hints = hints
        self.config = config or SpeechConfig()
        self.keypad = Keypad(calls)
        self.endpointer = Endpointer(self.config.endpointer)
        self.call: Call | None = None
        self.playback: Playback | None = None
        self.utterances = 0
        self._replies: asyncio.Queue[EventRecord] = asyncio.Queue()
        self._heard: set[str] = set()
        self._utterances: asyncio.Queue[tuple[Utterance, Draft | None]] = asyncio.Queue()
        self._draft: Draft | None = None
        self._speaking: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- the CallHandler hooks ------------------------------------------------------------

    async def on_start(self, call: Call) -> None:
        self.call = call
        await self.keypad.on_start(call)
        self._tasks = [
            asyncio.create_task(self._follow(call), name=f"voice:{call.call_id}:follow"),
            asyncio.create_task(self._speak_replies(), name=f"voice:{call.call_id}:speak"),
            asyncio.create_task(self._transcribe(call), name=f"voice:{call.call_id}:listen"),
        ]

    async def on_audio(self, frame: bytes, timestamp_ms: int) -> None:
        if len(frame) != FRAME_SAMPLES:
            return  # a partial frame (the provider never sends one); not worth a turn
        for event in self.endpointer.feed(pcm_to_bytes(ulaw_decode(frame))):
            if isinstance(event, SpeechStarted):
                await self._barge_in()
            elif isinstance(event, SpeechPaused):
                self._start_draft(event)
            else:
                self._finish(event)
        draft = self._draft
        if draft is not None and self.endpointer.last_voiced_ms > draft.end_ms:
            self._draft = None  # the caller went on speaking
            draft.drop()

    async def on_dtmf(self, digit: str) -> None:
        await self._barge_in()
        await self.keypad.on_dtmf(digit)

    async def on_mark(self, name: str) -> None:
        playback = self.playback
        if playback is not None:
            playback.heard(name)

    async def on_stop(self) -> None:
        for event in self.endpointer.flush():
            if isinstance(event, Utterance):
                self._finish(event)
        await self.keypad.on_stop()
        if self._draft is not None:
            self._draft.drop()
        tasks = [*self._tasks, *([self._speaking] if self._speaking else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- listening --------------------------------------------------------------------------

    def _start_draft(self, pause: SpeechPaused) -> None:
        if self._draft is not None:
            self._draft.drop()
        self._draft = None
        if pause.end_ms - pause.start_ms < self.config.min_utterance_ms:
            return
        task = asyncio.create_task(self._decode(pause.audio))
        self._draft = Draft(pause.end_ms, len(pause.audio), task)

    def _finish(self, utterance: Utterance) -> None:
        draft, self._draft = self._draft, None
        if draft is not None and not draft.matches(utterance):
            draft.drop()
            draft = None
        if utterance.end_ms - utterance.start_ms >= self.config.min_utterance_ms:
            self._utterances.put_nowait((utterance, draft))
        elif draft is not None:
            draft.drop()

    async def _decode(self, pcm: bytes) -> Transcript:
        rate = self.config.endpointer.sample_rate
        audio = await asyncio.to_thread(pcm_for_stt, pcm, rate)
        return await self.stt.transcribe(audio, self.hints)

    async def _transcribe(self, call: Call) -> None:
        """Transcribe and record each utterance; a failure loses that utterance, not the call."""
        while True:
            utterance, draft = await self._utterances.get()
            try:
                await self._recognise(call, utterance, draft)
            except ThreadlineError as exc:  # our own errors say nothing the caller said
                log.warning("utterance not transcribed", call_id=call.call_id, reason=str(exc))
            except TimeoutError:  # ours (transcribe_timeout_s) or the engine's own
                log.warning("utterance not transcribed", call_id=call.call_id, reason="timed out")
            except Exception as exc:  # an engine's message may quote the audio: not logged
                frames = traceback.extract_tb(exc.__traceback__)
                at = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else None
                log.error("utterance not transcribed", call_id=call.call_id,
                          error=type(exc).__name__, at=at)  # fmt: skip

    async def _recognise(self, call: Call, utterance: Utterance, draft: Draft | None) -> None:
        async with asyncio.timeout(self.config.transcribe_timeout_s):
            if draft is not None:
                transcript = await draft.task
            else:
                transcript = await self._decode(utterance.audio)
        text = transcript.text.strip()
        if not text:
            return
        self.utterances += 1
        event = Event(
            conversation_id=call.conversation_id,
            type="utterance.transcribed",
            payload={
                "text": text,
                "confidence": round(min(1.0, max(0.0, transcript.confidence)), 4),
                "start_ms": utterance.start_ms,
                "end_ms": utterance.end_ms,
            },
            channel="voice",
            leg_id=call.call_id,
            actor=Actor("customer", call.customer_id),
            customer_id=call.customer_id,
            idempotency_key=f"{call.stream_id}:utterance:{utterance.start_ms}",
            lineage=Lineage(LINEAGE.producer, LINEAGE.version, model=transcript.engine),
        )
        await self.calls.commands.execute(AppendEvents.of([event]), self.calls.principal)

    # -- speaking ---------------------------------------------------------------------------

    async def _follow(self, call: Call) -> None:
        """Queue every reply on this leg that the caller has not heard yet."""
        async with self.hub.watch(call.conversation_id, types=FOLLOWED) as watcher:
            async for record in self.hub.follow(watcher):
                if record.type == "message.heard":
                    payload = self.conversations.codec.decode(record).payload
                    self._heard.add(str(payload["message_id"]))
                elif (
                    record.type == "message.sent"
                    and record.leg_id == call.call_id
                    and record.actor_id != GATEWAY.id  # the greeting was said by the provider
                    and record.event_id not in self._heard
                ):
                    self._replies.put_nowait(record)

    async def _speak_replies(self) -> None:
        while True:
            record = await self._replies.get()
            if record.event_id in self._heard:
                continue
            text = str(self.conversations.codec.decode(record).payload["text"])
            self._speaking = asyncio.create_task(self._speak(record.event_id, text))
            # wait, not await: a barge-in cancels the reply, never this loop.
            await asyncio.wait([self._speaking])
            self._speaking = None

    async def _speak(self, message_id: str, text: str) -> None:
        playback = self.playback = Playback(message_id, text)
        try:
            chunks = self.tts.synthesize(text, "mulaw", self.config.voice)
            try:
                async for chunk in chunks:
                    await self._play(playback, chunk.audio, chunk.heard_through)
            finally:
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:  # stop synthesis now, not when it is collected
                    await aclose()
            playback.all_sent = True
            if playback.pending == 0:
                playback.done.set()
            # The provider echoes each mark once its audio has played; allow for lost echoes.
            unplayed = (playback.frames_sent - playback.frames_heard) * FRAME_MS / 1000
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(unplayed + MARK_SLACK):
                    await playback.done.wait()
            playback.done.set()
        except asyncio.CancelledError:
            playback.interrupted = True
            raise
        finally:
            if playback.interrupted or playback.done.is_set():
                self._heard.add(message_id)
                await asyncio.shield(self._record_heard(playback, not playback.interrupted))
            self.playback = None

    async def _play(self, playback: Playback, audio: bytes, heard_through: int) -> None:
        """Send ``audio`` with a mark every few frames, each naming how much text it ends.

        The synthesiser says exactly how far the text has been spoken only at
        the end of a stretch (a sentence); within one, the position is
        estimated from the speaking rate measured so far and kept to whole
        words, so a barge-in keeps the words that were played.
        """
        step = MARK_EVERY * FRAME_SAMPLES
        for offset in range(0, len(audio), step):
            piece = audio[offset : offset + step]
            await self.sink.send_media(piece)
            playback.frames_sent += len(piece) // FRAME_SAMPLES
            last = offset + step >= len(audio)
            if last and heard_through > playback.certain:
                playback.settle(heard_through)
                through = heard_through
            else:
                through = playback.estimate()
            name = f"{playback.message_id[-8:]}-{playback.frames_sent}"
            playback.marks[name] = (playback.frames_sent, through)
            playback.pending += 1
            await self.sink.send_mark(name)

    async def _barge_in(self) -> None:
        """The caller spoke over a reply: drop what is queued, stop, keep what was heard."""
        playback, speaking = self.playback, self._speaking
        if playback is None or speaking is None or playback.done.is_set():
            return
        playback.interrupted = True
        await self.sink.clear()
        speaking.cancel()
        while not self._replies.empty():
            self._replies.get_nowait()

    async def _record_heard(self, playback: Playback, complete: bool) -> None:
        call = self.call
        if call is None:
            return
        heard = playback.text if complete else playback.heard_text
        event = Event(
            conversation_id=call.conversation_id,
            type="message.heard",
            payload={
                "message_id": playback.message_id,
                "heard_text": heard,
                "complete": complete,
                "played_ms": playback.frames_heard * 20,
            },
            channel="voice",
            leg_id=call.call_id,
            actor=GATEWAY,
            customer_id=call.customer_id,
            idempotency_key=f"{call.call_id}:heard:{playback.message_id}",
            lineage=LINEAGE,
        )
        try:
            await self.calls.commands.execute(AppendEvents.of([event]), self.calls.principal)
        except ThreadlineError as exc:
            log.warning("what the caller heard was not recorded", reason=str(exc))


def speech_pipeline(
    calls: VoiceCalls,
    hub: LiveHub,
    stt: SpeechToText,
    tts: TextToSpeech,
    hints: Callable[[], SpeechHints | None] = lambda: None,
    config: SpeechConfig | None = None,
) -> HandlerFactory:
    """A factory of :class:`SpeechCall` handlers sharing the engines (and the STT model);
    each call takes the recognition ``hints`` of the business served when it starts."""

    def make(sink: CallSink) -> CallHandler:
        return SpeechCall(sink, calls, hub, stt, tts, hints(), config)

    return make

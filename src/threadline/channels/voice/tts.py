"""Text-to-speech engines: embedded espeak-ng (the default) and any OpenAI-compatible endpoint.

Both speak a text one sentence at a time and stream each sentence's audio as
it is produced, converted to 8 kHz telephony frames (μ-law or PCM, 20 ms each).
Every chunk says how much of the text has been heard once it has played
(:attr:`SpeechChunk.heard_through`), at sentence granularity. Closing the
iterator stops synthesis at once: the espeak-ng process is killed, the HTTP
response closed. Iterate inside ``contextlib.aclosing(...)`` so that cancelling
the playing task (barge-in) closes it too::

    async with contextlib.aclosing(tts.synthesize(reply)) as speech:
        async for chunk in speech:
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
from abc import abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import httpx
import structlog

from threadline.channels.voice.codec import (
    FRAME_SAMPLES,
    ULAW_SILENCE,
    Framer,
    Resampler,
    pcm_from_bytes,
    pcm_to_bytes,
    ulaw_encode,
)
from threadline.channels.voice.stt import api_url
from threadline.core.errors import ThreadlineError
from threadline.core.ports import TTS_SAMPLE_RATE, AudioEncoding, SpeechChunk, TextToSpeech

log = structlog.get_logger("threadline.voice.tts")

#: Read size from a synthesiser; about 0.7 s of 22.05 kHz audio.
READ_BYTES: Final = 32768


class SpeechSynthesisError(ThreadlineError):
    """A synthesiser failed; ``retryable`` when the engine was busy or unreachable."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


_SENTENCE_END: Final = re.compile(r"[.!?;:]+[\"')\]]*(?=\s|$)|\n+")


def sentences(text: str) -> Iterator[tuple[str, int]]:
    """Each sentence of ``text`` with the offset just past it; blank pieces are skipped."""
    start = 0
    for match in _SENTENCE_END.finditer(text):
        piece = text[start : match.end()].strip()
        if piece:
            yield piece, match.end()
        start = match.end()
    tail = text[start:].strip()
    if tail:
        yield tail, len(text.rstrip())


class TelephonyEncoder:
    """PCM at a synthesiser's rate in, whole 20 ms frames at 8 kHz out (μ-law or PCM)."""

    def __init__(self, src_rate: int, encoding: AudioEncoding) -> None:
        if encoding not in ("mulaw", "pcm16"):
            raise ValueError(f"unknown encoding {encoding!r}")
        self.encoding = encoding
        self._resampler = Resampler(src_rate, TTS_SAMPLE_RATE)
        width = 1 if encoding == "mulaw" else 2
        self._framer = Framer(FRAME_SAMPLES * width, ULAW_SILENCE if width == 1 else 0)
        self._odd = b""

    def _encode(self, pcm: bytes) -> bytes:
        samples = pcm_from_bytes(pcm)
        return ulaw_encode(samples) if self.encoding == "mulaw" else pcm_to_bytes(samples)

    def push(self, pcm16: bytes) -> bytes:
        """Frames completed by the next bytes of 16-bit PCM (any length)."""
        data = self._odd + pcm16
        cut = len(data) - len(data) % 2
        self._odd = data[cut:]
        out = self._resampler.process(pcm_from_bytes(data[:cut]))
        return b"".join(self._framer.push(self._encode(pcm_to_bytes(out))))

    def flush(self) -> bytes:
        """The rest, padded with silence to a whole frame."""
        out = self._resampler.flush()
        frames = list(self._framer.push(self._encode(pcm_to_bytes(out))))
        return b"".join([*frames, *self._framer.flush()])


class WavStream:
    """Parses a WAV file as it arrives (a streamed header may carry bogus sizes)."""

    def __init__(self) -> None:
        self._head = b""
        self.sample_rate: int | None = None
        self._in_data = False

    def push(self, data: bytes) -> bytes:
        """Sample bytes in ``data``; b"" until the header has been read."""
        if self._in_data:
            return data
        self._head += data
        head = self._head
        if len(head) >= 12 and (head[:4] != b"RIFF" or head[8:12] != b"WAVE"):
            raise SpeechSynthesisError("synthesiser output is not a WAV file")
        pos = 12
        while pos + 8 <= len(head):
            chunk, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
            if chunk == b"data":
                self._in_data = True
                self._head = b""
                if self.sample_rate is None:
                    raise SpeechSynthesisError("WAV data before its format")
                return head[pos + 8 :]
            if pos + 8 + size > len(head):
                return b""
            if chunk == b"fmt ":
                fmt = head[pos + 8 : pos + 8 + size]
                channels = int.from_bytes(fmt[2:4], "little")
                bits = int.from_bytes(fmt[14:16], "little")
                if int.from_bytes(fmt[0:2], "little") != 1 or channels != 1 or bits != 16:
                    raise SpeechSynthesisError("synthesiser output is not 16-bit mono PCM")
                self.sample_rate = int.from_bytes(fmt[4:8], "little")
            pos += 8 + size + size % 2
        return b""


class SentenceSynthesizer(TextToSpeech):
    """Speaks a text sentence by sentence; subclasses synthesise one sentence."""

    async def synthesize(
        self, text: str, encoding: AudioEncoding = "mulaw", voice: str | None = None
    ) -> AsyncIterator[SpeechChunk]:
        heard = 0
        for sentence, end in sentences(text):
            # Hold one chunk back, so the sentence's last chunk can say it finishes the sentence.
            held: bytes | None = None
            async with contextlib.aclosing(self._sentence(sentence, encoding, voice)) as audio:
                async for chunk in audio:
                    if held is not None:
                        yield SpeechChunk(held, heard)
                    held = chunk
            heard = end
            if held is not None:
                yield SpeechChunk(held, heard)

    @abstractmethod
    def _sentence(
        self, text: str, encoding: AudioEncoding, voice: str | None
    ) -> AsyncGenerator[bytes, None]:
        """Whole frames of one sentence's speech, as they are produced."""


@dataclass(frozen=True, slots=True)
class EspeakConfig:
    """espeak-ng's voice (``espeak-ng --voices=en`` lists them) and rate in words per minute."""

    voice: str = "en-us"
    rate: int = 165
    pitch: int | None = None
    executable: str = "espeak-ng"


class EspeakTTS(SentenceSynthesizer):
    """The embedded synthesiser: each sentence goes to an espeak-ng process started before it
    was asked for, its WAV read as it comes.

    For each command line (voice, rate, pitch) one spare process is kept started and waiting
    on stdin; a sentence takes it, and once its audio comes the next spare starts in the
    background, so only a command line's first sentence waits for a process to start.
    Processes start in a worker thread, where CPython starts them with ``vfork()`` on Linux:
    the event loop never stops for a ``fork()`` whose cost grows with the service's memory.
    A spare found dead is replaced. :meth:`close` kills the spares; a spare also ends when
    this process does, as its stdin then ends.
    """

    def __init__(self, config: EspeakConfig | None = None) -> None:
        self.config = config or EspeakConfig()
        self.engine_id = f"espeak-ng:{self.config.voice}"
        self._spares: dict[tuple[str, ...], asyncio.Task[EspeakProcess | None]] = {}
        self._closed = False

    def _command(self, voice: str) -> tuple[str, ...]:
        cfg = self.config
        command = [cfg.executable, "--stdout", "--stdin", "-v", voice, "-s", str(cfg.rate)]
        if cfg.pitch is not None:
            command += ["-p", str(cfg.pitch)]
        return tuple(command)

    async def _sentence(
        self, text: str, encoding: AudioEncoding, voice: str | None
    ) -> AsyncGenerator[bytes, None]:
        command = self._command(voice or self.config.voice)
        process = await self._process(command)
        try:
            await process.speak(text)
            wav = WavStream()
            encoder: TelephonyEncoder | None = None
            while chunk := await process.read(READ_BYTES):
                self._keep_spare(command)  # after the first audio, which it would slow
                samples = wav.push(chunk)
                if encoder is None and wav.sample_rate is not None:
                    encoder = TelephonyEncoder(wav.sample_rate, encoding)
                if encoder is not None and samples and (frames := encoder.push(samples)):
                    yield frames
            code, errors = await process.exit_status()
            if code != 0 or encoder is None:
                raise SpeechSynthesisError(f"espeak-ng failed: {errors.strip() or 'no audio'}")
            if tail := encoder.flush():
                yield tail
        finally:
            await process.end()

    async def _process(self, command: tuple[str, ...]) -> EspeakProcess:
        """The spare for ``command`` if it is alive, else a new process."""
        spare = self._spares.pop(command, None)
        if spare is not None and (process := await _claim(spare)) is not None:
            if process.alive():
                return process
            log.warning("espeak-ng spare died", pid=process.pid, returncode=process.returncode)
            await process.end()
        return await EspeakProcess.start(command)

    def _keep_spare(self, command: tuple[str, ...]) -> None:
        """Start a spare for ``command`` in the background, unless one is there already."""
        if command not in self._spares and not self._closed:
            self._spares[command] = asyncio.create_task(_spare(command))

    async def close(self) -> None:
        """Kill the spare processes; later sentences start their own, keeping no spare."""
        self._closed = True
        spares, self._spares = list(self._spares.values()), {}
        for spare in spares:
            if (process := await _claim(spare)) is not None:
                await process.end()


class EspeakProcess:
    """One espeak-ng process, started before its text and waiting for it on stdin.

    Its pipes are read and written without blocking, on the event loop's readiness callbacks,
    and closed here, once. (Handing them to pipe transports instead would let uvloop close each
    descriptor twice, the second time possibly a new pipe another thread just opened.)
    """

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen

    @classmethod
    async def start(cls, command: Sequence[str]) -> EspeakProcess:
        """A new process, started in a worker thread; if the caller is cancelled meanwhile,
        the process is killed as soon as it exists."""
        starting = asyncio.get_running_loop().run_in_executor(None, _popen, command)
        try:
            return cls(await asyncio.shield(starting))
        except asyncio.CancelledError:
            starting.add_done_callback(_discard_started)
            raise
        except OSError as exc:
            raise SpeechSynthesisError(f"cannot run {command[0]}: {exc}") from exc

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    def alive(self) -> bool:
        """Whether it still runs (a process that died is reaped here)."""
        return self._popen.poll() is None

    async def speak(self, text: str) -> None:
        """Hand the process its text, all of it: espeak-ng speaks its stdin when it ends."""
        assert self._popen.stdin
        fd = self._popen.stdin.fileno()
        os.set_blocking(fd, False)
        rest = memoryview(text.encode("utf-8"))
        try:
            while rest:
                try:
                    rest = rest[os.write(fd, rest) :]
                except BlockingIOError:
                    await _until_ready(fd, writing=True)
        except BrokenPipeError:
            pass  # it died: its exit status and stderr say why
        finally:
            self._popen.stdin.close()

    async def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of its WAV as soon as there are any; b"" once it has ended."""
        assert self._popen.stdout
        fd = self._popen.stdout.fileno()
        os.set_blocking(fd, False)
        while True:
            try:
                return os.read(fd, size)
            except BlockingIOError:
                await _until_ready(fd, writing=False)

    async def exit_status(self) -> tuple[int, str]:
        """Once stdout has ended: the return code and what the process said on stderr."""
        return await asyncio.to_thread(self._exit_status)

    def _exit_status(self) -> tuple[int, str]:
        assert self._popen.stderr
        errors = self._popen.stderr.read()
        return self._popen.wait(), errors.decode("utf-8", "replace")

    async def end(self) -> None:
        """Kill the process if it still runs, reap it and close its pipes. Cancelled while it
        waits for the killed process (a caller hanging up mid-sentence), it still closes them,
        and the process is reaped by ``subprocess`` later."""
        self._kill()
        try:
            if self._popen.returncode is None:  # else reaped already, by exit_status or _kill
                await asyncio.to_thread(self._popen.wait)
        finally:
            self._popen.poll()
            if self._popen.stderr:
                self._popen.stderr.close()

    def discard(self) -> None:
        """:meth:`end`, blocking: for callbacks, which cannot wait (a killed process is reaped
        within a millisecond)."""
        self._kill()
        self._reap()

    def _kill(self) -> None:
        if self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._popen.kill()
        for pipe in (self._popen.stdin, self._popen.stdout):
            if pipe:
                pipe.close()

    def _reap(self) -> None:
        self._popen.wait()
        if self._popen.stderr:
            self._popen.stderr.close()


async def _until_ready(fd: int, *, writing: bool) -> None:
    """Until ``fd`` can be read (or written) without blocking."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    add, remove = (
        (loop.add_writer, loop.remove_writer) if writing else (loop.add_reader, loop.remove_reader)
    )
    add(fd, _set_ready, ready)
    try:
        await ready
    finally:
        remove(fd)


def _set_ready(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


def _popen(command: Sequence[str]) -> subprocess.Popen[bytes]:
    pipe = subprocess.PIPE
    return subprocess.Popen(command, stdin=pipe, stdout=pipe, stderr=pipe)


async def _spare(command: tuple[str, ...]) -> EspeakProcess | None:
    """A spare process, or None if it cannot start (the sentence that needs one starts its
    own, and reports why that fails)."""
    with contextlib.suppress(SpeechSynthesisError):
        return await EspeakProcess.start(command)
    return None


async def _claim(spare: asyncio.Task[EspeakProcess | None]) -> EspeakProcess | None:
    """The process ``spare`` starts, awaited without cancelling it: if the caller is cancelled
    meanwhile, the process is discarded once started, never left behind."""
    try:
        return await asyncio.shield(spare)
    except asyncio.CancelledError:
        spare.add_done_callback(_discard_spare)
        raise


def _discard_spare(spare: asyncio.Task[EspeakProcess | None]) -> None:
    if spare.cancelled() or spare.exception() is not None:
        return
    if (process := spare.result()) is not None:
        process.discard()


def _discard_started(starting: asyncio.Future[subprocess.Popen[bytes]]) -> None:
    if not starting.cancelled() and starting.exception() is None:
        EspeakProcess(starting.result()).discard()


class OpenAICompatibleTTS(SentenceSynthesizer):
    """Speech through ``POST /v1/audio/speech``, raw PCM streamed back, one request a sentence."""

    def __init__(
        self,
        base_url: str,
        model: str = "tts-1",
        voice: str = "alloy",
        api_key: str | None = None,
        *,
        sample_rate: int = 24000,
        timeout: float = 30.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = api_url(base_url, "audio/speech")
        self.model, self.voice, self.sample_rate = model, voice, sample_rate
        self.engine_id = f"openai-compatible:{model}"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout, headers=headers)
        if client is not None and headers:
            self._client.headers.update(headers)

    async def _sentence(
        self, text: str, encoding: AudioEncoding, voice: str | None
    ) -> AsyncGenerator[bytes, None]:
        body = {
            "model": self.model,
            "input": text,
            "voice": voice or self.voice,
            "response_format": "pcm",
        }
        encoder = TelephonyEncoder(self.sample_rate, encoding)
        try:
            async with self._client.stream("POST", self.url, json=body) as response:
                if response.status_code != 200:
                    code = response.status_code
                    raise SpeechSynthesisError(
                        f"speech endpoint answered {code}", code == 429 or code >= 500
                    )
                async for chunk in response.aiter_bytes():  # as it arrives
                    if frames := encoder.push(chunk):
                        yield frames
        except httpx.HTTPError as exc:
            raise SpeechSynthesisError(f"speech request failed: {exc}", True) from exc
        if tail := encoder.flush():
            yield tail

    async def close(self) -> None:
        if self._own_client:
            await self._client.aclose()

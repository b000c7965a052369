"""Ports: the small abstract interfaces that backends implement.

Core depends on these and never on a backend. Each port has one contract
suite in :mod:`threadline.testing` that every backend passes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

from threadline.core.events import EventRecord

#: ``expected_seq`` that skips the concurrency check.
ANY: Final = -1
#: ``expected_seq`` that requires the conversation to have no events yet.
NO_STREAM: Final = 0


class AppendResult(NamedTuple):
    """Where an append landed. ``duplicate`` is true when an idempotency key
    matched an earlier append, whose result this is; nothing was written."""

    conversation_id: str
    seqs: tuple[int, ...]
    positions: tuple[int, ...]
    duplicate: bool = False

    @property
    def last_seq(self) -> int:
        return self.seqs[-1]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Folded conversation state as of ``seq``, in the state schema ``schema_version``."""

    conversation_id: str
    seq: int
    schema_version: int
    state: bytes


class EventStore(ABC):
    """The append-only log: per-conversation streams with a global order."""

    @abstractmethod
    async def append(
        self, conversation_id: str, records: Sequence[EventRecord], expected_seq: int = ANY
    ) -> AppendResult:
        """Append ``records`` atomically after ``expected_seq`` (or ``ANY``/``NO_STREAM``).

        Raises ConflictError when the stream is elsewhere, IdempotencyError when
        an idempotency key was used for a different append. A repeated append
        (same keys) returns the first result and writes nothing. When this
        returns, the events are durable.
        """

    @abstractmethod
    async def read(
        self, conversation_id: str, from_seq: int = 1, limit: int | None = None
    ) -> list[EventRecord]:
        """Events of one conversation with ``seq >= from_seq``, in seq order."""

    @abstractmethod
    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[EventRecord]:
        """Events of all conversations with ``position > after_position`` in global order.

        Never returns an event while an event with a lower position may still
        commit, so a reader that resumes from the last position it saw never
        skips anything.
        """

    @abstractmethod
    async def close(self) -> None:
        """Finish pending writes and release connections."""


class SnapshotStore(ABC):
    """Latest folded state per conversation, so rehydration reads only the tail."""

    @abstractmethod
    async def save_snapshot(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` unless a newer one (higher seq) is already kept."""

    @abstractmethod
    async def load_snapshot(self, conversation_id: str, schema_version: int) -> Snapshot | None:
        """The latest snapshot in ``schema_version``; snapshots in other versions are ignored."""


class CheckpointStore(ABC):
    """Durable progress of consumer groups, and the ledger of handled events."""

    @abstractmethod
    async def load_checkpoint(self, group: str) -> int:
        """The last position ``group`` finished, or 0."""

    @abstractmethod
    async def save_checkpoint(self, group: str, position: int) -> None:
        """Record that ``group`` finished everything up to ``position``."""

    @abstractmethod
    async def mark_handled(self, group: str, key: str) -> bool:
        """Record that ``group`` handled ``key``; false if it already had."""

    @abstractmethod
    async def was_handled(self, group: str, key: str) -> bool:
        """Whether ``group`` recorded ``key`` as handled."""


class Storage(EventStore, SnapshotStore, CheckpointStore):
    """A backend that keeps the log, snapshots and consumer progress together."""


# --- Keys -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class WrappedKey:
    """A data key encrypted under a master key: ``master_key_id`` names the master key and
    its version (a KMS key ARN, a Vault transit key and version, a local key's digest)."""

    master_key_id: str
    ciphertext: bytes

    def __repr__(self) -> str:
        return f"WrappedKey({self.master_key_id})"


class KeyProvider(ABC):
    """Wraps and unwraps per-customer data keys with a master key that never leaves it.

    The store keeps only wrapped data keys; destroying a customer's wrapped key (and
    every copy of it) makes their encrypted data unreadable for good (crypto-shredding).
    ``context`` names the key's owner (``cus-…``, ``conversation:<id>``): a backend binds
    it to the wrapped key (AES-GCM associated data, a KMS encryption context), so a
    wrapped key moved to another owner does not unwrap.

    A local master key (the default), a cloud KMS (Encrypt/Decrypt of the 32-byte key, or
    GenerateDataKey) or Vault's transit engine (encrypt/decrypt with a key version) each
    fit. The methods may block (a network call): Threadline calls them off the event loop,
    and only when a data key is created or is not in its cache.
    """

    #: The master key (and version) that :meth:`wrap` uses now.
    key_id: str = ""

    @abstractmethod
    def wrap(self, data_key: bytes, context: str) -> WrappedKey:
        """``data_key`` encrypted under the current master key, bound to ``context``."""

    @abstractmethod
    def unwrap(self, wrapped: WrappedKey, context: str) -> bytes:
        """The data key; raises ConfigurationError when the master key that wrapped it is
        not available here, IntegrityError when ``wrapped`` does not authenticate."""


Handler = Callable[[EventRecord], Awaitable[None]]


class Bus(ABC):
    """Delivers appended events to consumer groups, at least once.

    Within a conversation, a group sees events in seq order. Each group has
    its own durable progress; a handler that raises gets the event again.
    ``durable`` says whether the bus itself keeps published events across a
    restart; when it does not, the relay republishes from the slowest group's
    checkpoint instead.
    """

    durable: bool = True

    def groups(self) -> list[str]:
        """Names of the groups subscribed through this bus."""
        return []

    @abstractmethod
    async def publish(self, records: Sequence[EventRecord]) -> None:
        """Hand events to the bus; when this returns the bus has them durably."""

    @abstractmethod
    async def subscribe(
        self,
        group: str,
        handler: Handler,
        *,
        concurrency: int = 1,
        types: Collection[str] | None = None,
    ) -> None:
        """Start delivering to ``group`` through ``handler`` from its checkpoint.

        With ``concurrency`` above 1, up to that many conversations are handled
        at once, each still strictly in seq order; a failing event holds back
        only its own conversation. With ``types``, only events of those types
        reach ``handler``; the others count as handled as they pass.
        """

    @abstractmethod
    async def close(self) -> None:
        """Stop delivery after the events in hand are settled."""


# --- Speech -----------------------------------------------------------------------------------
# Audio crosses these ports as bytes: PCM is 16-bit signed little-endian mono, μ-law is
# G.711 one byte per sample. Codecs and resampling live in threadline.channels.voice.codec.

#: The rate of the PCM that :meth:`SpeechToText.transcribe` takes.
STT_SAMPLE_RATE: Final = 16000
#: The telephony rate that :class:`TextToSpeech` produces.
TTS_SAMPLE_RATE: Final = 8000

AudioEncoding = Literal["mulaw", "pcm16"]


@dataclass(frozen=True, slots=True)
class SpeechHints:
    """What the caller is likely to say, so a recogniser can favour it.

    ``prompt`` is text in the domain's words (engines that take a prompt, like
    Whisper, read it as what came before); ``phrases`` are key words and
    values (order numbers, store names) for engines that boost phrases.
    """

    prompt: str = ""
    phrases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WordTiming:
    """One recognised word, with seconds from the start of the audio."""

    word: str
    start: float
    end: float
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class Transcript:
    """What was said in one utterance.

    ``confidence`` is in [0, 1]; ``words`` is empty when the engine gives no
    timings; ``engine`` names the engine and model (for the event's lineage).
    """

    text: str
    confidence: float
    engine: str
    duration: float = 0.0
    words: tuple[WordTiming, ...] = ()


@dataclass(frozen=True, slots=True)
class TranscriptUpdate:
    """One result while an utterance is recognised: partial text, or the final transcript."""

    text: str
    final: bool
    transcript: Transcript | None = None


class SpeechToText(ABC):
    """Turns an utterance of 16 kHz PCM into text.

    :meth:`transcribe` takes a whole utterance. :meth:`stream` takes its audio
    as it arrives and yields partial results, then exactly one final result;
    an engine that cannot stream keeps the default, which transcribes at the
    end. Implementations never block the event loop.
    """

    engine_id: str = "unknown"

    @abstractmethod
    async def transcribe(
        self, pcm: bytes, hints: SpeechHints | None = None, language: str = "en"
    ) -> Transcript:
        """The transcript of ``pcm`` (16-bit little-endian mono at 16 kHz)."""

    async def stream(
        self, audio: AsyncIterable[bytes], hints: SpeechHints | None = None, language: str = "en"
    ) -> AsyncIterator[TranscriptUpdate]:
        """Partial results while ``audio`` arrives, then one final result."""
        chunks = [chunk async for chunk in audio]
        transcript = await self.transcribe(b"".join(chunks), hints, language)
        yield TranscriptUpdate(transcript.text, True, transcript)

    async def close(self) -> None:
        """Release models, pools and connections."""
        return None


@dataclass(frozen=True, slots=True)
class SpeechChunk:
    """A piece of synthesised speech.

    ``audio`` is in the encoding that was asked for, at 8 kHz, a whole number
    of 20 ms frames. Once it has been played, the listener has heard
    ``text[:heard_through]`` of the text being spoken, which is how barge-in
    keeps only what the caller actually heard.
    """

    audio: bytes
    heard_through: int


class TextToSpeech(ABC):
    """Turns text into 8 kHz telephony audio, a chunk at a time.

    :meth:`synthesize` returns an async generator so streaming engines can
    yield audio before the whole text is spoken. To stop (barge-in), close it
    (``aclose()``): synthesis stops and its resources (processes, connections)
    are released at once. Iterate it inside ``contextlib.aclosing`` so that
    cancelling the playing task closes it as well.
    """

    engine_id: str = "unknown"

    @abstractmethod
    def synthesize(
        self, text: str, encoding: AudioEncoding = "mulaw", voice: str | None = None
    ) -> AsyncIterator[SpeechChunk]:
        """Speech for ``text`` in ``encoding`` at 8 kHz; ``voice`` overrides the default."""

    async def close(self) -> None:
        """Release processes, pools and connections."""
        return None

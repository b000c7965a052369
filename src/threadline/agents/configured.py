"""The automated agent a process runs, as its settings and the business pack say.

With no model configured (neither ``THREADLINE_MODEL_URL`` nor the pack's ``model.url``)
the embedded agent answers alone. With one, the model-backed agent answers, within the
pack's feature flags (``model.channels``, ``model.queues``, ``model.share``), and falls
back as the pack says. The provider is made once per process (its connections and
circuit breaker outlive a reloaded pack); the agent is made again on every reload.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Final, Literal
from urllib.parse import urlsplit

from pydantic import SecretStr

from threadline.agents.codes import CodeSending
from threadline.agents.engine import EmbeddedAgent
from threadline.agents.model_agent import HISTORY_MESSAGES, ModelAgent
from threadline.agents.protocol import Agent
from threadline.business import Business
from threadline.core.conversation import ConversationState
from threadline.core.errors import ConfigurationError
from threadline.core.events import EventRecord
from threadline.core.model import ChatMessage, ModelProvider
from threadline.engine.conversations import Conversations
from threadline.identity.lockouts import Lockouts
from threadline.models import CircuitBreaker, OpenAICompatible
from threadline.settings import Settings
from threadline.systems import Systems

#: The events a model reads as the conversation so far, and as whose words.
_SAID: Final[dict[str, Literal["user", "assistant"]]] = {
    "message.received": "user", "utterance.transcribed": "user", "message.sent": "assistant",
}  # fmt: skip
#: Events read back to find the latest messages (a turn records several besides its reply).
_LOOK_BACK: Final = HISTORY_MESSAGES * 4
#: Conversations whose latest messages are kept between their turns.
KEPT_HISTORIES: Final = 4096
#: Whose listeners on the conversations these are (a reloaded pack's agent replaces them).
HISTORY: Final = "model history"


def provider_from(settings: Settings, business: Business) -> ModelProvider | None:
    """The model provider the settings (else the pack) name; None when neither names one.
    ConfigurationError for a model named without a URL, or a URL without a model."""
    spec = business.pack.model
    url = settings.model_url or (spec.url if spec else None)
    name = settings.model or (spec.model if spec else None)
    if url is None:
        if name is not None:
            raise ConfigurationError("THREADLINE_MODEL needs THREADLINE_MODEL_URL (or the"
                                     " pack's model.url)")  # fmt: skip
        return None
    if name is None:
        raise ConfigurationError("a model URL needs THREADLINE_MODEL (or the pack's model.model)")
    key = settings.model_api_key
    if key is None and spec is not None and spec.api_key is not None:
        value = os.environ.get(spec.api_key)
        if not value:
            raise ConfigurationError(f"the pack's model key is read from {spec.api_key}, which"
                                     " is not set")  # fmt: skip
        key = SecretStr(value)
    timeout = spec.timeout if spec else 20.0
    retries = spec.retries if spec else 2
    return OpenAICompatible(url, name, key, timeout=timeout, retries=retries,
                            breaker=CircuitBreaker(failures=3, cooldown=30.0))  # fmt: skip


def described(settings: Settings, business: Business) -> str:
    """Which agent answers, as the service's banner says it (the model's host, never a
    URL's credentials or a key)."""
    spec = business.pack.model
    url = settings.model_url or (spec.url if spec else None)
    if url is None:
        return "the embedded agent"
    name = settings.model or (spec.model if spec else None)
    host = urlsplit(url).hostname or "?"
    fallback = spec.fallback if spec is not None else "embedded"
    then = "the embedded agent" if fallback == "embedded" else "a person"
    return f"the model {name} at {host} (when it cannot answer: {then})"


class LogHistory:
    """The conversation's latest messages, read from its log, as a model reads them.

    The latest messages of the most recent conversations are held, from a conversation's
    first event or its first turn, and kept up to date from the events this process records
    and is shown (the reply, the customer's next message), so a turn reads nothing from the
    store; a turn after a gap (an event this process did not see) reads only what follows
    what is held. They are dropped with the conversation's state when its customer is
    erased.
    """

    def __init__(self, conversations: Conversations) -> None:
        self.conversations = conversations
        #: Per conversation: the seq held through, and the latest messages by their seq.
        self._kept: OrderedDict[str, tuple[int, tuple[tuple[int, ChatMessage], ...]]] = (
            OrderedDict()
        )
        conversations.on_forget(HISTORY, self.forget)
        conversations.on_event(HISTORY, self.follow)

    def forget(self, conversation_id: str) -> None:
        self._kept.pop(conversation_id, None)

    def follow(self, record: EventRecord) -> None:
        """Take ``record`` if it is the next event of a conversation held (else ignore it:
        a missing event is read when it is needed)."""
        conversation_id = record.conversation_id
        kept = self._kept.get(conversation_id)
        if kept is None:
            if record.seq != 1:
                return
            kept = (0, ())  # held from its start, so its first turn reads nothing back
            self._hold(conversation_id, kept)
        elif record.seq != kept[0] + 1:
            return
        said = kept[1]
        try:
            message = self._message(record)
        except Exception:  # held only to spare a read: the turn reads the log instead
            self.forget(conversation_id)
            return
        if message is not None:
            said = (*said[-HISTORY_MESSAGES:], (record.seq, message))
        self._kept[conversation_id] = (record.seq, said)

    def _hold(
        self, conversation_id: str, kept: tuple[int, tuple[tuple[int, ChatMessage], ...]]
    ) -> None:
        self._kept[conversation_id] = kept
        self._kept.move_to_end(conversation_id)
        if len(self._kept) > KEPT_HISTORIES:
            self._kept.popitem(last=False)

    def _message(self, record: EventRecord) -> ChatMessage | None:
        role = _SAID.get(record.type)
        if role is None:
            return None
        event = self.conversations.codec.decode(record)
        return ChatMessage(role, str(event.payload.get("text") or ""))

    async def __call__(self, state: ConversationState) -> Sequence[ChatMessage]:
        """The messages before ``state``'s latest event (the message the turn answers: the
        agent adds it)."""
        conversation_id = state.conversation_id
        kept = self._kept.get(conversation_id)
        said: list[tuple[int, ChatMessage]] = []
        if kept is not None and kept[0] <= state.seq:
            through = kept[0]
            said += kept[1]
        else:  # new here, or a turn older than what is held (a redelivery)
            through = max(0, state.seq - _LOOK_BACK - 1)
        if through < state.seq:
            for record in await self.conversations.store.read(conversation_id, through + 1):
                message = self._message(record)
                if message is not None:
                    said.append((record.seq, message))
                through = record.seq
        self._hold(conversation_id, (through, tuple(said[-HISTORY_MESSAGES - 1 :])))
        return [message for seq, message in said if seq < state.seq][-HISTORY_MESSAGES:]


def agent_for(
    systems: Systems,
    provider: ModelProvider | None,
    *,
    codes: CodeSending | None,
    lockouts: Lockouts | None,
    conversations: Conversations | None = None,
) -> Agent:
    """The embedded agent, or the model-backed agent over it when there is a provider."""
    embedded = EmbeddedAgent(systems, codes=codes, lockouts=lockouts)
    if provider is None:
        return embedded
    if conversations is None:
        return ModelAgent(embedded, provider)
    agent = ModelAgent(embedded, provider, history=LogHistory(conversations))
    # The redacted texts it keeps: one agent's at a time (it is made again on reloads).
    conversations.on_forget("model redactions", lambda _: agent.provider.forget())
    return agent

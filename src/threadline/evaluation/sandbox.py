"""The product in process, for one conversation run: the parts a turn goes through.

An embedded SQLite store in the run's own folder, the in-process bus and its relay, the
conversations engine, the pack's own systems (their state in a folder of the
run's own), and the bot runtime with the agent under evaluation, its clock
fixed at the scenario's ``now``. The customer speaks through the channel
adapters: the chat adapter records ``message.received``; on a call the voice
adapter answers (caller id as a claim, the greeting and its consent notice)
and each utterance is recorded as ``utterance.transcribed``, as the speech
pipeline records what it heard. What the turn recorded is read back from the
log once the agent has answered: the whole turn, a reply streamed sentence by
sentence (a model's, on a call) included. A scenario may script what some tools
answer (:class:`ScriptedTools`).
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from jsonschema_rs import Draft202012Validator

from threadline.agents.protocol import Agent, LiveTurn, Turn
from threadline.agents.runtime import BotRuntime
from threadline.bus.memory import MemoryBus
from threadline.business import Business
from threadline.business.current import CurrentBusiness
from threadline.channels.chat.adapter import ChatAdapter, ChatLeg
from threadline.channels.voice.telephony.calls import LINEAGE as VOICE_LINEAGE
from threadline.channels.voice.telephony.calls import CallLeg, VoiceCalls
from threadline.channels.voice.telephony.directory import CallerDirectory
from threadline.core.conversation import ConversationState
from threadline.core.events import Actor, Event, EventRecord, Lineage, new_id
from threadline.engine.commands import AppendEvents, Commands
from threadline.engine.conversations import Conversations
from threadline.engine.outbox import Relay
from threadline.evaluation.agents import AgentFactory, AgentSetup
from threadline.privacy.consent import notices
from threadline.settings import Settings
from threadline.store.sqlite import open_sqlite
from threadline.systems import CustomerRecords, Systems, ToolCall, ToolRunner
from threadline.tools import ToolFailure

#: The bus group that hears the agent's replies.
GROUP: Final = "evaluation"
#: How a transcript reads in the log: the voice adapter's producer, a text "engine".
TRANSCRIPT: Final = Lineage(VOICE_LINEAGE.producer, VOICE_LINEAGE.version, model="text")
#: The confidence a typed-in transcript is recorded with.
CONFIDENCE: Final = 1.0
#: Seconds a turn waits for the agent's reply.
TURN_TIMEOUT: Final = 10.0


class ScriptedTools(ToolRunner):
    """The pack's tools, but for those whose answers a scenario scripts: a scripted result
    (checked against the tool's result schema, as every result is) or failure."""

    def __init__(
        self,
        business: Business,
        data_dir: Path,
        results: Mapping[str, Mapping[str, Any]],
        failures: Mapping[str, str],
    ) -> None:
        super().__init__(business, data_dir)
        self.results = results
        self.failures = failures

    async def call(self, call: ToolCall) -> dict[str, Any]:
        code = self.failures.get(call.tool)
        if code is not None:
            raise ToolFailure(code, f"{call.tool} failed ({code}), as the scenario scripts")
        result = self.results.get(call.tool)
        spec = self.business.pack.tools.get(call.tool)
        if result is None or spec is None:
            return await super().call(call)
        problem = _problem(spec.parameters, dict(call.arguments))
        if problem is not None:
            raise ToolFailure("bad_arguments", f"{call.tool}: {problem}")
        problem = _problem(spec.result, result)
        if problem is not None:
            raise ToolFailure("bad_result", f"{call.tool}'s scripted result: {problem}")
        return copy.deepcopy(dict(result))


def _problem(schema: dict[str, Any], value: Any) -> str | None:
    validator = Draft202012Validator(schema, offline=True)
    if validator.is_valid(value):
        return None
    return str(next(iter(validator.iter_errors(value))).message)


class Watched:
    """The agent under evaluation, as the runtime sees it, noting when it has answered a
    customer's message and the last event of its answer (a streamed reply records its
    first sentences before the turn ends)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        #: (conversation, the customer's seq) -> the id of the answer's last event (None:
        #: the agent recorded nothing).
        self.answered: dict[tuple[str, int], str | None] = {}
        self.changed = asyncio.Event()

    @property
    def id(self) -> str:
        return self.agent.id

    async def take_turn(
        self, state: ConversationState, text: str, channel: str, now: datetime, *,
        leg_id: str | None = None, in_reply_to: str | None = None, live: LiveTurn | None = None,
    ) -> Turn:  # fmt: skip
        seen = _SeenLive(live) if live is not None else None
        last: str | None = None
        try:
            turn = await self.agent.take_turn(state, text, channel, now, leg_id=leg_id,
                                              in_reply_to=in_reply_to, live=seen)  # fmt: skip
            events = turn.events or (seen.recorded if seen is not None else ())
            last = events[-1].event_id if events else None
            return turn
        finally:
            self.answered[(state.conversation_id, state.seq)] = last
            self.changed.set()

    def may_process(self, state: ConversationState) -> bool:
        return self.agent.may_process(state)

    async def hand_over(
        self, state: ConversationState, channel: str, now: datetime, *, leg_id: str | None,
        anchor: str,
    ) -> Turn:  # fmt: skip
        """A customer's turn the agent may not process: a person takes it."""
        last: str | None = None
        try:
            turn = await self.agent.hand_over(state, channel, now, leg_id=leg_id, anchor=anchor)
            last = turn.events[-1].event_id if turn.events else None
            return turn
        finally:
            self.answered[(state.conversation_id, state.seq)] = last
            self.changed.set()

    async def settle(self, state: ConversationState, decision: Event, now: datetime) -> Turn:
        return await self.agent.settle(state, decision, now)

    async def welcome_back(
        self, state: ConversationState, channel: str, now: datetime, *, leg_id: str, anchor: str
    ) -> Turn:
        return await self.agent.welcome_back(state, channel, now, leg_id=leg_id, anchor=anchor)

    async def last_of(self, conversation_id: str, seq: int, deadline: float) -> str | None:
        """The last event of the answer to the customer's event ``seq`` (None: none, or no
        answer before ``deadline``, a ``perf_counter`` time)."""
        key = (conversation_id, seq)
        while key not in self.answered:
            left = deadline - time.perf_counter()
            if left <= 0:
                return None
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except TimeoutError:
                return None
        return self.answered.pop(key)


class _SeenLive:
    """A turn's :class:`LiveTurn`, keeping what it recorded early."""

    def __init__(self, live: LiveTurn) -> None:
        self.live = live
        self.recorded: tuple[Event, ...] = ()

    async def record(self, events: Sequence[Event]) -> bool:
        done = await self.live.record(events)
        if done:
            self.recorded += tuple(events)
        return done

    @property
    def interrupted(self) -> bool:
        return self.live.interrupted


@dataclass(frozen=True, slots=True)
class Observed:
    """What one customer turn recorded: the events after the customer's, up to the end of
    the agent's answer; its reply (the sentences of a streamed one, joined)."""

    events: tuple[Event, ...]
    reply: str | None
    latency_ms: float | None


class Sandbox:
    """One conversation run on a fresh embedded service; an async context manager."""

    def __init__(
        self,
        business: Business,
        settings: Settings,
        factory: AgentFactory,
        now: datetime,
        workdir: Path,
        *,
        options: Mapping[str, str] | None = None,
        timeout: float = TURN_TIMEOUT,
        tool_results: Mapping[str, Mapping[str, Any]] | None = None,
        tool_failures: Mapping[str, str] | None = None,
    ) -> None:
        self.business = business
        self.settings = settings
        self.factory = factory
        self.options = dict(options or {})
        self.now = now
        self.workdir = workdir
        self.timeout = timeout
        self.tool_results = dict(tool_results or {})
        self.tool_failures = dict(tool_failures or {})
        self._stack = AsyncExitStack()
        self._replies: list[tuple[EventRecord, float]] = []
        self._arrived = asyncio.Event()
        self._chat: ChatLeg | None = None
        self._call: CallLeg | None = None
        self._said = 0

    async def __aenter__(self) -> Sandbox:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        stack = self._stack
        self.workdir.mkdir(parents=True, exist_ok=True)
        # A file: the store's reader connections would each see a database of their own in
        # memory.
        store = await open_sqlite(self.workdir / "threadline.db")
        stack.push_async_callback(store.close)
        bus = MemoryBus(store)
        stack.push_async_callback(bus.close)
        relay = Relay(store, bus, store)
        self.conversations = Conversations(store, on_append=relay.appended)
        self.commands = Commands(self.conversations)
        clock: Callable[[], datetime] = lambda: self.now  # noqa: E731
        tools = ScriptedTools(self.business, self.workdir / "systems", self.tool_results,
                              self.tool_failures)  # fmt: skip
        self.systems = Systems(tools, CustomerRecords(tools, clock=clock))
        stack.push_async_callback(self.systems.close)
        setup = AgentSetup(self.business, self.systems, self.settings, store, self.conversations,
                           clock, stack, self.options)  # fmt: skip
        self.agent = Watched(self.factory(setup))
        runtime = BotRuntime(self.conversations, self.agent, clock=clock)
        await runtime.start(bus)
        await bus.subscribe(GROUP, self._heard, types=("message.sent",))
        await relay.start()
        stack.push_async_callback(relay.stop)  # first to stop: nothing published after
        self.chat = ChatAdapter(self.commands, CurrentBusiness(self.business))
        self.calls = VoiceCalls(self.commands, CallerDirectory(), self._recognise,
                                self._greeting())  # fmt: skip
        self.calls.notices = lambda decided: notices(self.business, "voice", decided)

    async def _heard(self, record: EventRecord) -> None:
        if record.actor_kind == "bot":
            self._replies.append((record, time.perf_counter()))
            self._arrived.set()

    async def _recognise(self, phone: str) -> str | None:
        record = await self.systems.customers.find("phone", phone)
        return record.id if record is not None else None

    def _greeting(self) -> str:
        business = self.business
        return business.text("greetings", "voice") or business.text("disclosures", "voice") or ""

    # -- the customer ------------------------------------------------------------------------

    async def open_chat(self, customer: str | None = None) -> str:
        """A visitor opens the chat (and signs in as ``customer``); the conversation's id."""
        visitor = "visitor-" + new_id()
        leg = await self.chat.open(visitor)
        if customer is not None:
            level = self.business.pack.verification.level_of("oidc")
            await self.chat.sign_in(leg.conversation_id, visitor, customer, "oidc", level)
        self._chat = leg
        return leg.conversation_id

    async def place_call(self, caller: str | None = None) -> str:
        """A call comes in from ``caller`` (withheld when None); the conversation's id."""
        self._call = await self.calls.answer("CA" + new_id().replace("-", ""), caller or "")
        return self._call.conversation_id

    async def say(self, text: str) -> Observed:
        """The customer says ``text`` on the open chat or call; what the turn recorded."""
        self._said += 1
        started = time.perf_counter()
        if self._chat is not None:
            seq = await self.chat.say(self._chat, f"eval-{self._said}", text)
            return await self._turn(self._chat.conversation_id, seq, started)
        call = self._require_call()
        start = self._said * 10_000  # one utterance every ten seconds of the call
        payload = {"text": text, "confidence": CONFIDENCE, "start_ms": start,
                   "end_ms": start + 2_000}  # fmt: skip
        event = Event(call.conversation_id, "utterance.transcribed", payload, channel="voice",
                      leg_id=call.call_id, actor=Actor("customer", call.customer_id),
                      customer_id=call.customer_id, lineage=TRANSCRIPT,
                      idempotency_key=f"{call.call_id}:utterance:{start}")  # fmt: skip
        executed = await self.commands.execute(AppendEvents.of([event]), self.calls.principal)
        assert executed.result is not None
        return await self._turn(call.conversation_id, executed.result.seqs[0], started)

    async def press(self, digits: str) -> Observed:
        """The caller keys ``digits`` in; what the turn recorded."""
        self._said += 1
        call = self._require_call()
        started = time.perf_counter()
        seq = await self.calls.keyed_in(call.call_id, call.conversation_id, call.customer_id,
                                        digits, f"{call.call_id}:keys:{self._said}")  # fmt: skip
        return await self._turn(call.conversation_id, seq, started)

    def _require_call(self) -> CallLeg:
        if self._call is None:
            raise RuntimeError("no chat or call is open")
        return self._call

    async def _turn(self, conversation_id: str, seq: int, started: float) -> Observed:
        deadline = time.perf_counter() + self.timeout
        reply = await self._reply_after(seq, deadline)
        decode = self.conversations.codec.decode
        if reply is None:
            records = await self.conversations.store.read(conversation_id, from_seq=seq + 1)
            return Observed(tuple(decode(r) for r in records), None, None)
        last = await self.agent.last_of(conversation_id, seq, deadline)
        records = await self._read_to(conversation_id, seq, last, deadline)
        end = next((r.seq for r in records if r.event_id == last), reply[0].seq)
        events = tuple(decode(r) for r in records if r.seq <= max(end, reply[0].seq))
        said = [str(e.payload.get("text")) for e in events
                if e.type == "message.sent" and e.actor.kind == "bot"]  # fmt: skip
        return Observed(events, " ".join(said), (reply[1] - started) * 1000)

    async def _read_to(
        self, conversation_id: str, seq: int, last: str | None, deadline: float
    ) -> list[EventRecord]:
        """The records after ``seq``, once the one ``last`` names is among them (the runtime
        records what is left of a turn just after the agent hands it over)."""
        while True:
            records = await self.conversations.store.read(conversation_id, from_seq=seq + 1)
            if last is None or any(r.event_id == last for r in records):
                return records
            if time.perf_counter() >= deadline:
                return records
            await asyncio.sleep(0.002)

    async def _reply_after(self, seq: int, deadline: float) -> tuple[EventRecord, float] | None:
        """The agent's first reply recorded after ``seq``, and when it was heard; None when
        none came by ``deadline``."""
        while True:
            found = next((r for r in self._replies if r[0].seq > seq), None)
            if found is not None:
                return found
            left = deadline - time.perf_counter()
            if left <= 0:
                return None
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return None

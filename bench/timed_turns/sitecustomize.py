"""Times every customer turn the bot takes, and the model's and the tools' share of it.

:mod:`bench.model_overhead` puts this folder first on ``PYTHONPATH`` of the service it
starts, so Python imports it in that process and in the bot worker it spawns. With
``BENCH_TURNS`` set to a path, each process that takes turns appends one JSON line per
customer turn to ``<path>.<pid>``, after the turn (outside what it times), with ``at``,
when it ended on ``time.monotonic()``:

* ``handled``: :meth:`BotRuntime.handle` from the record's arrival to the reply recorded
  (rehydrating the conversation, authorizing, the agent's turn, appending its events);
* ``agent``: the agent's ``take_turn`` within it;
* ``provider``: the model provider's calls within it (``complete``, and each wait for a
  streamed piece), on the client side: the HTTP exchange with the model included;
* ``tools``: the business's tools within it (:meth:`ToolRunner.call`);
* ``reads``: the store's reads within it (on SQLite, a query on a reader thread);
* ``append``: recording the turn's events within it (:meth:`Conversations.record`:
  deciding on them, and the store's append; on SQLite, the hop to the service's writer
  and back), and ``store_append`` the store's part of it;
* ``lag``: from the store's ``recorded_at`` of the customer's message to the runtime
  being handed it (the hop from the service to the worker, and the bus).

The product has no such hooks: this file is never on its path.
"""

from __future__ import annotations

import contextvars
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

_PATH = os.environ.get("BENCH_TURNS")


class _Turn:
    __slots__ = (
        "agent", "append", "provider", "provider_calls", "reads", "store_append", "tool_calls",
        "tools",
    )  # fmt: skip

    def __init__(self) -> None:
        self.provider = 0.0
        self.provider_calls = 0
        self.tools = 0.0
        self.tool_calls = 0
        self.agent = 0.0
        self.append = 0.0
        self.reads = 0.0
        self.store_append = 0.0


_CURRENT: contextvars.ContextVar[_Turn | None] = contextvars.ContextVar("bench_turn", default=None)


def _install(path: str) -> None:
    import orjson

    from threadline.agents import runtime
    from threadline.engine.conversations import Conversations
    from threadline.models.openai_compatible import OpenAICompatible
    from threadline.store.forwarding import ForwardingStore
    from threadline.store.sqlite import SQLiteStore
    from threadline.systems.runner import ToolRunner

    out = open(f"{path}.{os.getpid()}", "ab", buffering=0)  # noqa: SIM115 (lives as the process)

    handle = runtime.BotRuntime.handle
    complete = OpenAICompatible.complete
    stream = OpenAICompatible.stream
    call = ToolRunner.call
    record_events = Conversations.record
    from threadline.store.postgres import PostgresStore

    reads = {cls: cls.read for cls in (SQLiteStore, PostgresStore)}
    appends = {cls: cls.append for cls in (ForwardingStore, SQLiteStore, PostgresStore)}

    async def timed_handle(self: Any, record: Any) -> None:
        turn = record.type in runtime.CUSTOMER_TURNS and record.actor_kind == "customer"
        if not turn:
            await handle(self, record)
            return
        if not isinstance(self.agent, _TimedAgent):
            self.agent = _TimedAgent(self.agent)
        noted = _Turn()
        token = _CURRENT.set(noted)
        arrived = datetime.now(UTC)
        began = time.perf_counter()
        try:
            await handle(self, record)
        finally:
            handled = time.perf_counter() - began
            _CURRENT.reset(token)
            lag = (arrived - record.recorded_at).total_seconds() if record.recorded_at else None
            out.write(orjson.dumps({
                "event_id": record.event_id, "conversation_id": record.conversation_id,
                "channel": record.channel, "handled": handled, "agent": noted.agent,
                "provider": noted.provider, "provider_calls": noted.provider_calls,
                "tools": noted.tools, "tool_calls": noted.tool_calls, "append": noted.append,
                "reads": noted.reads, "store_append": noted.store_append, "lag": lag,
                "at": time.monotonic(),
            }) + b"\n")  # fmt: skip

    async def timed_complete(self: Any, request: Any) -> Any:
        began = time.perf_counter()
        try:
            return await complete(self, request)
        finally:
            _add_provider(time.perf_counter() - began)

    def timed_stream(self: Any, request: Any) -> AsyncIterator[Any]:
        return _timed_pieces(stream(self, request))

    async def timed_call(self: Any, tool_call: Any) -> Any:
        began = time.perf_counter()
        try:
            return await call(self, tool_call)
        finally:
            noted = _CURRENT.get()
            if noted is not None:
                noted.tools += time.perf_counter() - began
                noted.tool_calls += 1

    def timed(method: Any, part: str) -> Any:
        """``method``, its time within a customer turn added to the turn's ``part``."""

        async def timing(self: Any, *args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return await method(self, *args, **kwargs)
            finally:
                noted = _CURRENT.get()
                if noted is not None:
                    setattr(noted, part, getattr(noted, part) + time.perf_counter() - began)

        return timing

    runtime.BotRuntime.handle = timed_handle  # type: ignore[method-assign]
    OpenAICompatible.complete = timed_complete  # type: ignore[method-assign]
    OpenAICompatible.stream = timed_stream  # type: ignore[method-assign]
    ToolRunner.call = timed_call  # type: ignore[method-assign, assignment]
    Conversations.record = timed(record_events, "append")  # type: ignore[method-assign]
    for cls, read in reads.items():
        cls.read = timed(read, "reads")  # type: ignore[method-assign]
    for cls, append in appends.items():
        cls.append = timed(append, "store_append")  # type: ignore[method-assign]


def _add_provider(seconds: float, calls: int = 1) -> None:
    noted = _CURRENT.get()
    if noted is not None:
        noted.provider += seconds
        noted.provider_calls += calls


async def _timed_pieces(pieces: Any) -> AsyncIterator[Any]:
    """A provider's stream, each wait for its next piece counted as the provider's."""
    first = True
    try:
        while True:
            began = time.perf_counter()
            try:
                piece = await pieces.__anext__()
            except StopAsyncIteration:
                _add_provider(time.perf_counter() - began, 0)
                return
            _add_provider(time.perf_counter() - began, 1 if first else 0)
            first = False
            yield piece
    finally:
        await pieces.aclose()


class _TimedAgent:
    """The runtime's agent, its ``take_turn`` timed; everything else as it is."""

    def __init__(self, agent: Any) -> None:
        self._agent = agent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._agent, name)

    async def take_turn(self, *args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return await self._agent.take_turn(*args, **kwargs)
        finally:
            noted = _CURRENT.get()
            if noted is not None:
                noted.agent += time.perf_counter() - began


if _PATH:
    _install(_PATH)

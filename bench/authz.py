"""What an authorization decision costs: the chat path's appends and reads, per call.

``python -m bench.authz [--calls 20000]`` times :func:`can_append` (a channel
adapter recording a customer's message, the chat path's one decided append per
turn), a bot turn of three events decided together, and :func:`can_read_conversation`
(an agent reading a conversation in their queue), each answered from the policy
engine's decision cache (warm: the chat path's steady state) and put to Cedar every
time (cold: the cache emptied before each call). Run it with ``PYTHONPATH`` on
another source tree to time that tree's rules (only the warm figures apply to rules
without a cache).

``python -m bench.authz --chat 100 --turns 5`` drives the chat path in one process
(the chat adapter opening legs and recording messages, the bot reading and answering,
on the embedded store and bus, serving Northwind) and reports the decisions per turn,
how many the cache answered, and the CPU they took against the CPU of the turns.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from threadline.core.conversation import decide, initial
from threadline.core.events import Actor, Event, utcnow
from threadline.security import authz
from threadline.security.principal import Principal

CID = "conv-bench"
CUSTOMER = Actor("customer", "cus-bench")
BOT = Actor("bot", "northwind-bot")


def _event(type_: str, payload: dict[str, object], actor: Actor = CUSTOMER) -> Event:
    return Event(CID, type_, payload, channel="chat", actor=actor, customer_id="cus-bench",
                 leg_id="chat-1")  # fmt: skip


def _principal(kind: str, subject: str, scopes: frozenset[str], **bindings: object) -> Principal:
    now = utcnow()
    return Principal(subject=subject, kind=kind, scopes=scopes, token_id=f"jti-{subject}",  # type: ignore[arg-type]
                     issued_at=now, expires_at=now + timedelta(hours=1), **bindings)  # type: ignore[arg-type]  # fmt: skip


STATE = decide(initial(CID), [
    _event("conversation.started", {"origin": "chat"}),
    _event("leg.started", {"leg_id": "chat-1", "channel": "chat"}),
    _event("message.received", {"text": "where is my order?"}),
])  # fmt: skip
IN_QUEUE = decide(
    STATE,
    [_event("handoff.requested", {"queue": "orders", "reason_code": "customer_request"}, BOT)],
)
ADAPTER = _principal("adapter", "chat-adapter", frozenset({"adapter:chat"}))
AGENT = _principal("agent", "agent-ana", frozenset({"agent"}), queues=frozenset({"orders"}))
MESSAGE = _event("message.received", {"text": "and the other one?"})
TURN = [
    _event("intent.detected", {"intent": "order_status", "confidence": 0.9}, BOT),
    _event("slot.filled", {"name": "order_id", "value": "1042"}, BOT),
    _event("message.sent", {"text": "It ships tomorrow."}, BOT),
]


def _time(calls: int, run: Callable[[], None], before: Callable[[], None] | None = None) -> float:
    """Microseconds per call of ``run`` (``before`` runs untimed ahead of each)."""
    total = 0.0
    for _ in range(calls):
        if before is not None:
            before()
        start = time.perf_counter()
        run()
        total += time.perf_counter() - start
    return total / calls * 1e6


def main(calls: int) -> None:
    engine = getattr(authz, "ENGINE", None)
    cases: dict[str, Callable[[], None]] = {
        "append: adapter records a customer message": lambda: authz.can_append(
            ADAPTER, STATE, MESSAGE),
        "read: agent reads a conversation in their queue": lambda: authz.can_read_conversation(
            AGENT, IN_QUEUE),
    }  # fmt: skip
    each = getattr(authz, "can_append_each", None)
    if each is not None and hasattr(authz, "automated_agent"):
        bot = authz.automated_agent("northwind-bot")
        cases["append: a bot turn of three events, decided together"] = lambda: each(
            bot, [(STATE, e) for e in TURN]
        )
    print(f"{calls} calls each; microseconds per call")
    for label, run in cases.items():
        run()  # fills the cache
        warm = _time(calls, run)
        line = f"  {label:<58} warm {warm:7.1f}"
        if engine is not None:
            cold = _time(max(calls // 10, 1), run, engine.forget)
            line += f"  cold {cold:7.1f}"
        print(line)
    if engine is not None:
        print(f"  policy {engine.version}; cache hit rate here {engine.hit_rate:.1%}")


async def chat(customers: int, turns: int) -> None:
    """The chat path's decisions, in process: per turn, how many, how many cached, and
    their CPU against the turns' CPU."""
    from bench import NORTHWIND
    from bench.chat_load import QUESTIONS
    from threadline.agents import EmbeddedAgent
    from threadline.agents.runtime import BotRuntime
    from threadline.bus.memory import MemoryBus
    from threadline.business import load
    from threadline.channels.chat.adapter import ChatAdapter
    from threadline.engine.commands import Commands
    from threadline.engine.conversations import Conversations
    from threadline.engine.outbox import Relay
    from threadline.security.policy import ENGINE
    from threadline.store.sqlite import open_sqlite
    from threadline.systems import Systems

    folder = Path(tempfile.mkdtemp(prefix="tl-authz-chat-"))
    store = await open_sqlite(folder / "chat.db")
    systems = Systems.open(load(NORTHWIND), folder / "systems")
    bus = MemoryBus(store)
    relay = Relay(store, bus, store, poll_interval=0.005)
    conversations = Conversations(store, on_append=relay.poke)
    adapter = ChatAdapter(Commands(conversations))
    await BotRuntime(conversations, EmbeddedAgent(systems)).start(bus)
    await relay.start()
    spent = [0.0, 0]
    # Time every check the chat path makes, building Cedar's entities included.
    from threadline.agents import runtime
    from threadline.engine import commands

    checks = [(commands, "can_append_each"), (runtime, "can_append_each"),
              (runtime, "can_read_conversation")]  # fmt: skip
    originals = [getattr(module, name) for module, name in checks]

    def timed(check: Callable[..., None]) -> Callable[..., None]:
        def run(*args: Any) -> None:
            start = time.thread_time()  # the store's writer thread runs meanwhile
            try:
                check(*args)
            finally:
                spent[0] += time.thread_time() - start
                spent[1] += 1

        return run

    for (module, name), check in zip(checks, originals, strict=True):
        setattr(module, name, timed(check))
    try:
        legs = [await adapter.open(f"cus-bench-{n}") for n in range(customers)]
        await asyncio.wait_for(bus.drain(), 60)
        ENGINE.hits = ENGINE.misses = 0
        spent[:] = [0.0, 0]
        began = time.process_time()
        for turn in range(turns):
            question = QUESTIONS[turn % len(QUESTIONS)]
            await asyncio.gather(*(adapter.say(leg, f"t{turn}", question) for leg in legs))
            await asyncio.sleep(0.02)
            await asyncio.wait_for(bus.drain(), 60)
        cpu = time.process_time() - began
    finally:
        for (module, name), check in zip(checks, originals, strict=True):
            setattr(module, name, check)
        await relay.stop()
        await bus.close()
        await systems.close()
        await store.close()
    done = customers * turns
    print(f"{customers} customers x {turns} turns, in one process (adapter, bot, store)")
    print(f"  checks per turn {spent[1] / done:.1f} ({ENGINE.hits + ENGINE.misses} decisions), "
          f"answered from the cache {ENGINE.hit_rate:.1%}")  # fmt: skip
    print(f"  CPU per turn {cpu / done * 1e6:.0f} us, of which authorizing "
          f"{spent[0] / done * 1e6:.0f} us ({spent[0] / cpu:.1%})")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--chat", type=int, default=0, help="customers on the chat path")
    parser.add_argument("--turns", type=int, default=5)
    args = parser.parse_args()
    if args.chat:
        asyncio.run(chat(args.chat, args.turns))
    else:
        main(args.calls)

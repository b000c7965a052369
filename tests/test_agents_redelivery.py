"""A customer turn delivered again (a bot worker restarted from an old checkpoint) is
answered once: never twice, and never a conversation held up by its own old answer."""

from __future__ import annotations

from datetime import UTC, datetime

from threadline.agents import EmbeddedAgent
from threadline.agents.runtime import BotRuntime
from threadline.core.events import Actor, Event, EventRecord, Lineage
from threadline.core.state import RECENT_KEYS
from threadline.engine.conversations import Conversations

NOW = datetime(2025, 3, 4, 17, 0, tzinfo=UTC)
CUSTOMER = Actor("customer", "cus-maya")


def runtime(store, systems) -> BotRuntime:
    """A bot runtime as a freshly started worker has it: nothing kept hot."""
    return BotRuntime(Conversations(store), EmbeddedAgent(systems), clock=lambda: NOW)


async def customer_says(bot: BotRuntime, text: str, n: int) -> EventRecord:
    """Record the customer's message ``n`` and let ``bot`` answer it; the message."""

    def event(type_: str, payload: dict[str, object], key: str) -> Event:
        return Event("conv", type_, payload, channel="chat", leg_id="chat-1", actor=CUSTOMER,
                     customer_id=CUSTOMER.id, idempotency_key=key,
                     lineage=Lineage("chat-adapter", "1"))  # fmt: skip

    events = [event("message.received", {"text": text}, f"m{n}")]
    if n == 0:
        events[:0] = [
            event("conversation.started", {"origin": "chat"}, "start"),
            event("leg.started", {"leg_id": "chat-1", "channel": "chat"}, "leg"),
        ]
    result = await bot.conversations.record("conv", events)
    (message,) = await bot.conversations.store.read("conv", result.seqs[-1], 1)
    await bot.handle(message)
    return message


async def test_a_turn_delivered_again_long_after_its_answer_records_nothing(
    any_store, systems
) -> None:
    bot = runtime(any_store, systems)
    # The first answer asks for the order number; asked again once the customer is known,
    # the same words make a longer turn, under the same keys.
    texts = ["where is my order?", "1042", "94103"]
    texts += ["when are you open on Sunday in Oakland?"] * (RECENT_KEYS // 2)
    messages = [await customer_says(bot, text, n) for n, text in enumerate(texts)]
    before = await any_store.read("conv")
    assert before[-1].seq - messages[0].seq > RECENT_KEYS  # its answer is out of the window

    restarted = runtime(any_store, systems)
    for message in messages:  # everything after a checkpoint taken at the start
        await restarted.handle(message)
    assert await any_store.read("conv") == before

    await customer_says(restarted, "what are the hours at Market Street?", len(texts))
    after = await any_store.read("conv")
    assert [r.type for r in after[len(before) :]].count("message.sent") == 1

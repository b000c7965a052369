"""A returning caller joins by the conversation's own state, not the directory's view of it.

The caller directory is folded from the bus, so it can be a delivery behind the
log. Here it is never fed at all after the first call: whatever the log says
since then, the call must still do the right thing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from threadline.channels.voice.telephony.calls import VoiceCalls
from threadline.channels.voice.telephony.directory import CallerDirectory
from threadline.core.events import Actor, Event
from threadline.engine.commands import Commands
from threadline.engine.conversations import Conversations

MAYA_PHONE = "+14155550123"
AGENT = Actor("human", "agent-ana")


def _calls(store: Any) -> VoiceCalls:
    conversations = Conversations(store)

    async def recognise(phone: str) -> str | None:
        return "cus-maya" if phone == MAYA_PHONE else None

    return VoiceCalls(Commands(conversations), CallerDirectory(), recognise, "Hello.")


async def _resolve(calls: VoiceCalls, conversation_id: str, hours_ago: float) -> None:
    when = datetime.now(UTC) - timedelta(hours=hours_ago)
    closing = Event(
        conversation_id,
        "conversation.resolved",
        {"outcome": "answered"},
        channel="voice",
        actor=AGENT,
        customer_id="cus-maya",
        occurred_at=when,
    )
    await calls.conversations.record(conversation_id, [closing])


async def _types(calls: VoiceCalls, conversation_id: str) -> list[str]:
    return [r.type for r in await calls.conversations.store.read(conversation_id)]


async def test_a_call_after_a_resolution_the_directory_has_not_heard_of_reopens_it(
    any_store,
) -> None:
    calls = _calls(any_store)
    first = await calls.answer("CA-first", MAYA_PHONE)
    await calls.end("CA-first", "completed")
    await _resolve(calls, first.conversation_id, hours_ago=1)
    assert calls.directory.open_conversation("cus-maya") == first.conversation_id  # stale
    second = await calls.answer("CA-second", MAYA_PHONE)
    assert second.conversation_id == first.conversation_id and second.continued
    types = await _types(calls, first.conversation_id)
    assert types[types.index("conversation.resolved") + 1 :][:2] == [
        "conversation.reopened",
        "leg.started",
    ]


async def test_a_call_long_after_a_resolution_starts_a_new_conversation(any_store) -> None:
    calls = _calls(any_store)
    first = await calls.answer("CA-first", MAYA_PHONE)
    await calls.end("CA-first", "completed")
    await _resolve(calls, first.conversation_id, hours_ago=100)
    second = await calls.answer("CA-second", MAYA_PHONE)
    assert second.conversation_id != first.conversation_id and not second.continued
    assert "conversation.reopened" not in await _types(calls, first.conversation_id)


async def test_a_call_while_the_conversation_is_open_joins_it_without_reopening(
    any_store,
) -> None:
    calls = _calls(any_store)
    first = await calls.answer("CA-first", MAYA_PHONE)
    await calls.end("CA-first", "completed")
    second = await calls.answer("CA-second", MAYA_PHONE)
    assert second.conversation_id == first.conversation_id
    types = await _types(calls, first.conversation_id)
    assert types.count("leg.started") == 2 and "conversation.reopened" not in types

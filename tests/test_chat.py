"""The chat channel over a real WebSocket to the running server."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from threadline.api.deps import service_of
from threadline.channels.chat.client import ChatClient, ChatError


async def session(live_server) -> str:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{live_server.http}/chat/session")
    assert response.status_code == 201
    return response.json()["token"]


async def connect(live_server, conversation_id=None, after_seq=0, token=None):
    return ChatClient.connect(
        f"{live_server.ws}/chat/ws", conversation_id, after_seq,
        token=token or await session(live_server),
    )  # fmt: skip


async def test_a_new_chat_opens_a_conversation_and_acknowledges_messages(live_server) -> None:
    async with await connect(live_server) as chat:
        seq = await chat.say("my order 1042 hasn't arrived")
        echoed = await chat.wait_for(lambda e: e["event"] == "message.received")
        assert echoed["seq"] == seq and echoed["text"] == "my order 1042 hasn't arrived"
        assert echoed["actor"] == "customer" and echoed["channel"] == "chat"
    store = service_of(live_server.app).store
    types = [r.type for r in await store.read(chat.conversation_id)]
    # The banner's notice gives consent to AI processing.
    assert types[:4] == ["conversation.started", "leg.started", "consent.granted",
                         "message.received"]  # fmt: skip


async def test_a_resent_message_is_recorded_once(live_server) -> None:
    async with await connect(live_server) as chat:
        first = await chat.say("hello", client_id="client-msg-0001")
        again = await chat.say("hello", client_id="client-msg-0001")
    assert first == again
    records = await service_of(live_server.app).store.read(chat.conversation_id)
    assert [r.type for r in records].count("message.received") == 1


async def test_reconnecting_resumes_with_nothing_lost_or_doubled(live_server) -> None:
    token = await session(live_server)
    async with await connect(live_server, token=token) as chat:
        await chat.say("first")
        await chat.wait_for(lambda e: e.get("text") == "first")
        await chat.wait_for(lambda e: e["event"] == "message.sent")
        conversation_id, seen = chat.conversation_id, chat.last_seq
    async with await connect(live_server, conversation_id, seen, token) as chat:
        await chat.say("second")
        got = await chat.wait_for(lambda e: e["event"] == "message.received")
        assert got["text"] == "second" and got["seq"] > seen
        assert chat.conversation_id == conversation_id
    async with asyncio.timeout(5):  # the server ends a leg once it sees its socket close
        while True:
            records = await service_of(live_server.app).store.read(conversation_id)
            started = [r.leg_id for r in records if r.type == "leg.started"]
            ended = [r.leg_id for r in records if r.type == "leg.ended"]
            if len(ended) == 2:
                break
            await asyncio.sleep(0.02)
    assert len(set(started)) == 2 and sorted(started) == sorted(ended)
    received = [r for r in records if r.type == "message.received"]
    assert [r.seq for r in received] == sorted({r.seq for r in received})


async def test_attachments_are_refused_with_a_clear_message(live_server) -> None:
    async with await connect(live_server) as chat:
        await chat.send({"type": "attachment", "name": "receipt.pdf"})
        error = await chat.errors.get()
        assert error.code == "attachments-unsupported"
        assert await chat.say("ok, here it is in words") > 0


async def test_a_malformed_frame_is_refused_and_the_chat_goes_on(live_server) -> None:
    async with await connect(live_server) as chat:
        await chat.send({"type": "message", "client_id": "short", "text": ""})
        error = await chat.errors.get()
        assert error.code == "bad-frame"
        assert await chat.say("still here") > 0


async def test_another_customers_conversation_cannot_be_joined(live_server) -> None:
    async with await connect(live_server) as chat:
        await chat.say("private")
        theirs = chat.conversation_id
    with pytest.raises(ChatError) as refused:
        async with await connect(live_server, theirs):
            pass
    assert refused.value.code == "bad-hello"


async def test_a_socket_without_a_customer_token_is_refused(live_server) -> None:
    with pytest.raises(ChatError) as refused:
        async with ChatClient.connect(f"{live_server.ws}/chat/ws", token="not-a-token"):
            pass
    assert refused.value.code == "unauthenticated"


async def test_the_bot_answers_an_order_question_on_chat(live_server) -> None:
    async with await connect(live_server) as chat:
        await chat.say("Where is my order 1042?")
        reply = await chat.wait_for(lambda e: e["event"] == "message.sent")
        assert reply["actor"] == "bot"
        assert "1042" in reply["text"]


async def test_asking_for_a_person_hands_the_chat_to_a_queue(live_server) -> None:
    async with await connect(live_server) as chat:
        await chat.say("I want to talk to a person")
        await chat.wait_for(lambda e: e["event"] == "handoff.requested")
    state = await service_of(live_server.app).conversations.rehydrate(chat.conversation_id)
    assert state.status == "awaiting_human"
    assert state.handoff_reason == "customer_request"

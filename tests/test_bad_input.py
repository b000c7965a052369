"""Bad input gets a clear refusal, never a 500 or a broken socket, and writes nothing
(issue 14's probes): seqs beyond what a store holds, binary and oversized chat frames,
NUL characters in text."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
import websockets

from tests.conftest import bearer
from threadline.api.auth import bearer_subprotocols
from threadline.api.deps import service_of
from threadline.channels.chat.client import ChatClient

PROBLEM = "application/problem+json"
TOO_FAR = (2**63, 10**24)


async def _session(server) -> str:
    async with httpx.AsyncClient() as http:
        return str((await http.post(f"{server.http}/chat/session")).json()["token"])


async def _chat(server) -> tuple[str, str]:
    """A visitor's token and the conversation she opened (one message said)."""
    token = await _session(server)
    async with ChatClient.connect(f"{server.ws}/chat/ws", token=token) as chat:
        await chat.say("hello there")
        return token, chat.conversation_id


@pytest.mark.parametrize("after", TOO_FAR)
async def test_an_after_seq_beyond_any_store_is_a_422_problem(live_server, after) -> None:
    _, cid = await _chat(live_server)
    sam = bearer(live_server.app, "sup-sam", "supervisor")
    async with httpx.AsyncClient(base_url=live_server.http, headers=sam) as http:
        response = await http.get(f"/conversations/{cid}/events", params={"after_seq": after})
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM


#: Too long for int(), beyond a bigint, and digits only to str.isdigit (superscript, full-width).
BAD_TAGS = ['"' + "9" * 5000 + '"', f'"{10**24}"', '"\u00b2"', 'W/"\uff11\uff12"']


@pytest.mark.parametrize("tag", BAD_TAGS)
async def test_an_if_match_no_seq_can_equal_is_a_400_problem_and_writes_nothing(
    live_server, tag
) -> None:
    _, cid = await _chat(live_server)
    sam = bearer(live_server.app, "sup-sam", "supervisor")
    note = {"type": "note.added", "payload": {"author_id": "sup-sam", "text": "hi"},
            "actor": {"kind": "human", "id": "sup-sam"}, "channel": "chat"}  # fmt: skip
    async with httpx.AsyncClient(base_url=live_server.http, headers=sam) as http:
        headers = {"If-Match": tag.encode(), "Idempotency-Key": "k-1"}
        response = await http.post(f"/conversations/{cid}/events", json={"events": [note]},
                                   headers=headers)  # fmt: skip
    assert response.status_code == 400 and response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "urn:threadline:problem:bad-if-match"
    stored = await service_of(live_server.app).store.read(cid)
    assert "note.added" not in [r.type for r in stored]


async def test_a_stream_asked_from_beyond_any_store_is_refused_on_the_socket(live_server) -> None:
    _, cid = await _chat(live_server)
    token = service_of(live_server.app).tokens.issue("sup-sam", ["supervisor"],
                                                     timedelta(hours=1), {}).token  # fmt: skip
    url = f"{live_server.ws}/conversations/{cid}/stream?after_seq={10**24}"
    async with websockets.connect(url, subprotocols=bearer_subprotocols(token)) as ws:
        frame = json.loads(await ws.recv())
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
    assert frame["type"] == "error" and frame["code"] == "validation"
    assert ws.close_code == 1008


async def test_a_binary_frame_is_refused_and_the_chat_goes_on(live_server) -> None:
    token = await _session(live_server)
    async with ChatClient.connect(f"{live_server.ws}/chat/ws", token=token) as chat:
        await chat._socket.send(b"\x00\x01binary")
        error = await chat.errors.get()
        assert error.code == "bad-frame" and "binary" in str(error)
        assert await chat.say("still here") > 0


async def test_a_binary_hello_is_refused_cleanly(live_server) -> None:
    token = await _session(live_server)
    url = f"{live_server.ws}/chat/ws"
    async with websockets.connect(url, subprotocols=bearer_subprotocols(token)) as ws:
        await ws.send(b"\x00hello")
        frame = json.loads(await ws.recv())
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
    assert (frame["type"], frame["code"]) == ("error", "bad-hello")
    assert ws.close_code == 1008


async def test_a_hello_from_beyond_any_store_is_refused(live_server) -> None:
    token, cid = await _chat(live_server)
    offered = bearer_subprotocols(token)
    async with websockets.connect(f"{live_server.ws}/chat/ws", subprotocols=offered) as ws:
        await ws.send(json.dumps({"type": "hello", "conversation_id": cid, "after_seq": 10**30}))
        frame = json.loads(await ws.recv())
    assert (frame["type"], frame["code"]) == ("error", "bad-hello")


async def test_text_with_a_nul_character_is_refused_and_nothing_is_stored(live_server) -> None:
    token, cid = await _chat(live_server)
    conversations = service_of(live_server.app).conversations
    before = len(await conversations.timeline(cid))
    async with ChatClient.connect(f"{live_server.ws}/chat/ws", cid, token=token) as chat:
        await chat.send({"type": "message", "client_id": "nul-message-1", "text": "a\x00b"})
        error = await chat.errors.get()
        assert error.code == "refused"
    sam = bearer(live_server.app, "sup-sam", "supervisor")
    async with httpx.AsyncClient(base_url=live_server.http, headers=sam) as http:
        response = await http.post(f"/conversations/{cid}/reply", json={"text": "one\x00two"})
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM
    after = [e for e in (await conversations.timeline(cid))[before:] if "\x00" in str(e.payload)]
    assert after == []

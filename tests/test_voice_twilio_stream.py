"""The media WebSocket over a real server and client: admission by stream token, then the call."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import orjson
import pytest
import websockets
from structlog.testing import capture_logs

from tests.conftest import LiveServer
from tests.twilio_fakes import (
    STRANGER_PHONE,
    MediaCaller,
    open_stream,
    place_call,
    start_message,
    voice_settings,
    wait_for,
)
from threadline.api.app import create_app
from threadline.api.deps import service_of
from threadline.core.events import utcnow
from threadline.security.stream_tokens import StreamTokens

POLICY_VIOLATION = 1008


@pytest.fixture
async def server(any_store):
    async with LiveServer(create_app(voice_settings(), store=any_store)) as live:
        yield live


@pytest.fixture
async def sqlite_server(sqlite_store):
    async with LiveServer(create_app(voice_settings(), store=sqlite_store)) as live:
        yield live


async def log_size(server) -> int:
    """Events on conversations (a customer's own stream takes copies of what a call
    recorded, such as its consent by notice, a moment later)."""
    records = await service_of(server.app).store.read_all(0, 100_000)
    return sum(not r.conversation_id.startswith("customer:") for r in records)


async def settled_size(server) -> int:
    """:func:`log_size` once it holds still: PostgreSQL's ``read_all`` holds back a fresh
    event while an older transaction anywhere in the cluster is open, so the call just
    placed may show a moment late."""
    size = await log_size(server)
    while True:
        await asyncio.sleep(0.1)
        if (now := await log_size(server)) == size:
            return size
        size = now


async def refused(server, parameters, sid=None, **media) -> int | None:
    """Open a stream with this start; the server's close code (nothing must be recorded)."""
    before = await settled_size(server)
    ws = await MediaCaller.connect(server)
    caller = MediaCaller(ws, sid or parameters.get("callSid", "CA0"), "MZ" + uuid.uuid4().hex)
    await caller.connected()
    await caller.start(parameters, **media)
    await caller.dtmf("1")
    await caller.dtmf("#")
    code = await caller.closed_code()
    await ws.close()
    assert await settled_size(server) == before, "a refused stream recorded something"
    return code


def types(records) -> list[str]:
    return [r.type for r in records]


# -- admission --------------------------------------------------------------------------------


async def test_a_stream_with_its_call_token_is_admitted_and_stop_ends_the_leg(server) -> None:
    answer = await place_call(server)
    conversation_id = answer.parameters["conversationId"]
    caller = await open_stream(server, answer)
    await caller.media(b"\xff" * 160, timestamp=0)
    await caller.stop()
    assert await caller.closed_code() == 1000
    records = await wait_for(
        service_of(server.app).store, conversation_id, lambda rs: "leg.ended" in types(rs)
    )
    (ended,) = [r for r in records if r.type == "leg.ended"]
    assert ended.leg_id == answer.parameters["callSid"]
    assert orjson.loads(ended.payload)["reason"] == "stream_stopped"


async def test_a_stream_without_a_token_is_closed_and_records_nothing(server) -> None:
    answer = await place_call(server)
    without = {k: v for k, v in answer.parameters.items() if k != "token"}
    assert await refused(server, without) == POLICY_VIOLATION


async def test_a_used_token_cannot_start_a_second_stream(server) -> None:
    answer = await place_call(server)
    first = await open_stream(server, answer)
    await first.dtmf("5")
    assert await refused(server, answer.parameters) == POLICY_VIOLATION
    await first.ws.close()


async def test_a_replayed_webhook_opens_no_second_stream_for_a_live_call(server) -> None:
    answer = await place_call(server)
    first = await open_stream(server, answer)
    await first.dtmf("5")
    replayed = await place_call(server, answer.parameters["callSid"])  # the same signed post
    assert replayed.parameters["conversationId"] == answer.parameters["conversationId"]
    assert await refused(server, replayed.parameters) == POLICY_VIOLATION
    await first.ws.close()


async def test_a_token_stays_used_after_a_restart(tmp_path) -> None:
    settings = voice_settings(store=f"sqlite:///{tmp_path / 'voice.db'}")
    async with LiveServer(create_app(settings)) as live:
        answer = await place_call(live)
        caller = await open_stream(live, answer)
        await caller.stop()
        await caller.closed_code()
    async with LiveServer(create_app(settings)) as live:
        assert await refused(live, answer.parameters) == POLICY_VIOLATION


async def test_an_expired_token_is_refused(server) -> None:
    service = service_of(server.app)
    answer = await place_call(server)
    params = answer.parameters
    settings = service.settings
    earlier = StreamTokens(
        service.tokens.key,
        service.store,
        service.revocations,
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        clock=lambda: utcnow() - timedelta(minutes=5),
    )
    stale = earlier.issue(params["callSid"], params["conversationId"], "cus-maya")
    assert await refused(server, {**params, "token": stale}) == POLICY_VIOLATION


async def test_a_token_for_another_call_is_refused(server) -> None:
    mine = await place_call(server)
    theirs = await place_call(server, caller=STRANGER_PHONE)
    assert theirs.parameters["conversationId"] != mine.parameters["conversationId"]
    stolen = {**mine.parameters, "token": theirs.parameters["token"]}
    assert await refused(server, stolen) == POLICY_VIOLATION
    # ...and a start naming the other call does not fit this conversation either.
    other_conversation = {**theirs.parameters, "conversationId": mine.parameters["conversationId"]}
    assert await refused(server, other_conversation) == POLICY_VIOLATION
    # The refusals did not use the token up: its own call still gets in.
    caller = await open_stream(server, theirs)
    await caller.stop()
    assert await caller.closed_code() == 1000


async def test_an_api_bearer_token_does_not_open_a_stream(server) -> None:
    answer = await place_call(server)
    issued = service_of(server.app).tokens.issue(
        answer.parameters["callSid"],
        ["customer"],
        timedelta(minutes=1),
        {"customer": "cus-maya", "conversation": answer.parameters["conversationId"]},
    )
    assert await refused(server, {**answer.parameters, "token": issued.token}) == POLICY_VIOLATION


async def test_a_stream_for_a_call_that_has_ended_is_refused(server) -> None:
    from tests.twilio_fakes import post_webhook

    answer = await place_call(server)
    await post_webhook(
        server,
        "/voice/twilio/status",
        {"CallSid": answer.parameters["callSid"], "CallStatus": "completed"},
    )
    assert await refused(server, answer.parameters) == POLICY_VIOLATION


async def test_media_before_the_start_closes_the_socket(sqlite_server) -> None:
    server = sqlite_server
    answer = await place_call(server)
    before = await log_size(server)
    ws = await MediaCaller.connect(server)
    caller = MediaCaller(ws, answer.parameters["callSid"], "MZ" + uuid.uuid4().hex)
    await caller.connected()
    await caller.media(b"\xff" * 160)
    await caller.start(answer.parameters)
    assert await caller.closed_code() == POLICY_VIOLATION
    assert await log_size(server) == before


async def test_a_stream_that_is_not_telephony_audio_is_refused(sqlite_server) -> None:
    answer = await place_call(sqlite_server)
    code = await refused(sqlite_server, answer.parameters, sampleRate=16000)
    assert code == POLICY_VIOLATION


async def test_a_socket_that_never_starts_is_closed(sqlite_server) -> None:
    service_of(sqlite_server.app).voice.start_timeout = 0.2
    ws = await MediaCaller.connect(sqlite_server)
    caller = MediaCaller(ws, "CA0", "MZ0")
    await caller.connected()
    assert await caller.closed_code() == POLICY_VIOLATION


# -- the call ---------------------------------------------------------------------------------


async def test_keyed_in_digits_are_the_callers_message_and_the_bot_answers(server) -> None:
    answer = await place_call(server)
    conversation_id = answer.parameters["conversationId"]
    caller = await open_stream(server, answer)
    for digit in "1042#":
        await caller.dtmf(digit)
    records = await wait_for(
        service_of(server.app).store,
        conversation_id,
        lambda rs: any(r.type == "message.sent" and r.actor_kind == "bot" for r in rs),
    )
    received = [r for r in records if r.type == "message.received"]
    assert [orjson.loads(r.payload)["text"] for r in received] == ["1042"]
    (message,) = received
    assert (message.channel, message.leg_id) == ("voice", answer.parameters["callSid"])
    assert (message.actor_kind, message.actor_id) == ("customer", "cus-maya")
    slots = [orjson.loads(r.payload) for r in records if r.type == "slot.filled"]
    assert {"name": "order_number", "value": "1042", "source": "customer"} in slots
    await caller.stop()
    await caller.closed_code()


async def test_digits_left_when_the_call_stops_are_still_recorded(sqlite_server) -> None:
    answer = await place_call(sqlite_server)
    caller = await open_stream(sqlite_server, answer)
    await caller.dtmf("3")
    await caller.stop()
    await caller.closed_code()
    records = await wait_for(
        service_of(sqlite_server.app).store,
        answer.parameters["conversationId"],
        lambda rs: "leg.ended" in types(rs),
    )
    texts = [orjson.loads(r.payload)["text"] for r in records if r.type == "message.received"]
    assert texts == ["3"]
    assert types(records).index("message.received") < types(records).index("leg.ended")


async def test_malformed_and_unknown_frames_are_logged_and_the_call_goes_on(sqlite_server) -> None:
    server = sqlite_server
    answer = await place_call(server)
    conversation_id = answer.parameters["conversationId"]
    with capture_logs() as logs:
        caller = await open_stream(server, answer)
        await caller.send("this is not json")
        await caller.send({"event": "transcription", "text": "?"})
        await caller.send({"event": "media", "media": {"payload": "***not base64***"}})
        await caller.send({"event": "dtmf", "dtmf": {"digit": "Z"}})
        await caller.send(["a", "list"])
        await caller.ws.send(b"\x00\x01binary")
        await caller.send(start_message(caller.sid, answer.parameters))  # a second start
        await caller.dtmf("7")
        await caller.dtmf("#")
        store = service_of(server.app).store
        await wait_for(store, conversation_id, lambda rs: "message.received" in types(rs))
        await caller.stop()
        assert await caller.closed_code() == 1000
    skipped = [e for e in logs if e["event"] == "media frame skipped"]
    reasons = sorted(e["reason"] for e in skipped)
    assert reasons == sorted(
        [
            "not JSON",
            "unknown event",
            "bad base64 payload",
            "malformed",
            "unknown event",
            "binary frame",
            "unexpected start",
        ]
    )
    records = await service_of(server.app).store.read(conversation_id)
    texts = [orjson.loads(r.payload)["text"] for r in records if r.type == "message.received"]
    assert texts == ["7"]


async def test_a_socket_that_drops_without_stop_ends_the_leg_as_lost(sqlite_server) -> None:
    answer = await place_call(sqlite_server)
    caller = await open_stream(sqlite_server, answer)
    await caller.dtmf("9")
    await caller.ws.close()
    records = await wait_for(
        service_of(sqlite_server.app).store,
        answer.parameters["conversationId"],
        lambda rs: "leg.ended" in types(rs),
    )
    (ended,) = [r for r in records if r.type == "leg.ended"]
    assert orjson.loads(ended.payload)["reason"] == "stream_lost"
    assert "message.received" in types(records)


async def test_a_second_call_from_the_same_number_streams_on_the_same_conversation(server) -> None:
    store = service_of(server.app).store
    first = await place_call(server)
    caller = await open_stream(server, first)
    await caller.dtmf("1")
    await caller.stop()
    await caller.closed_code()
    conversation_id = first.parameters["conversationId"]
    await wait_for(store, conversation_id, lambda rs: "leg.ended" in types(rs))
    second = await place_call(server)
    assert second.parameters["conversationId"] == conversation_id
    caller = await open_stream(server, second)
    await caller.dtmf("2")
    await caller.stop()
    await caller.closed_code()
    records = await wait_for(store, conversation_id, lambda rs: types(rs).count("leg.ended") == 2)
    legs = {r.leg_id for r in records if r.type == "message.received"}
    assert legs == {first.parameters["callSid"], second.parameters["callSid"]}


async def test_a_plugged_in_handler_gets_the_call_and_plays_audio_back(sqlite_store) -> None:
    """The seam the speech pipeline uses: a handler factory with a sink."""
    seen: list[tuple[str, object]] = []

    class Echo:
        def __init__(self, sink) -> None:
            self.sink = sink

        async def on_start(self, call) -> None:
            seen.append(("start", call))

        async def on_audio(self, frame: bytes, timestamp_ms: int) -> None:
            seen.append(("audio", (frame, timestamp_ms)))
            await self.sink.send_media(frame)
            await self.sink.send_mark("echoed")

        async def on_dtmf(self, digit: str) -> None:
            await self.sink.clear()

        async def on_mark(self, name: str) -> None:
            seen.append(("mark", name))

        async def on_stop(self) -> None:
            seen.append(("stop", None))

    async with LiveServer(create_app(voice_settings(), store=sqlite_store)) as server:
        service_of(server.app).voice.handlers = Echo
        await talk_to_echo(server, seen)


async def talk_to_echo(server, seen) -> None:
    answer = await place_call(server)
    caller = await open_stream(server, answer)
    await caller.media(b"\x7f" * 160, timestamp=40)
    sent = [orjson.loads(await asyncio.wait_for(caller.ws.recv(), 5)) for _ in range(2)]
    await caller.dtmf("1")
    cleared = orjson.loads(await asyncio.wait_for(caller.ws.recv(), 5))
    await caller.send(
        {
            "event": "mark",
            "streamSid": caller.stream_sid,
            "sequenceNumber": "9",
            "mark": {"name": "echoed"},
        }
    )
    await caller.stop()
    await caller.closed_code()
    assert sent[0]["event"] == "media" and sent[0]["streamSid"] == caller.stream_sid
    assert sent[1] == {"event": "mark", "streamSid": caller.stream_sid, "mark": {"name": "echoed"}}
    assert cleared == {"event": "clear", "streamSid": caller.stream_sid}
    kinds = [kind for kind, _ in seen]
    assert kinds == ["start", "audio", "mark", "stop"]
    call = seen[0][1]
    assert call.call_id == answer.parameters["callSid"]
    assert call.conversation_id == answer.parameters["conversationId"]
    assert call.customer_id == "cus-maya" and call.caller == "+14155550123"
    assert call.stream_id == caller.stream_sid and call.seq == 6  # with the consent by notice
    assert seen[1][1] == (b"\x7f" * 160, 40)


async def test_two_sockets_racing_with_one_token_admit_one(sqlite_server) -> None:
    answer = await place_call(sqlite_server)
    sockets = [await MediaCaller.connect(sqlite_server) for _ in range(2)]
    callers = [
        MediaCaller(ws, answer.parameters["callSid"], f"MZ{i}") for i, ws in enumerate(sockets)
    ]
    await asyncio.gather(*(c.start(answer.parameters) for c in callers))
    await asyncio.sleep(0.3)
    outcomes = []
    for c in callers:
        try:
            await asyncio.wait_for(c.ws.recv(), 0.3)
        except TimeoutError:
            outcomes.append("open")
        except websockets.ConnectionClosed as exc:
            outcomes.append(exc.rcvd.code if exc.rcvd else None)
    assert sorted(outcomes, key=str) == sorted([POLICY_VIOLATION, "open"], key=str)
    for c in callers:
        await c.ws.close()

"""Call control against a local fake of Twilio's REST API: hang up, transfer, warm transfer."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from tests.conftest import LiveServer
from tests.twilio_fakes import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FakeTwilio,
    open_stream,
    place_call,
    post_webhook,
    voice_settings,
    wait_for,
)
from threadline.api.app import create_app
from threadline.api.deps import service_of
from threadline.channels.voice.telephony import (
    CallControlFailed,
    DialTarget,
    Transfer,
    TwilioTelephony,
)
from threadline.core.events import Actor, Event, utcnow

CALL = "CA" + "ab" * 16


@pytest.fixture
async def twilio():
    fake = FakeTwilio()
    async with LiveServer(fake.app()) as live:
        fake.base = live.http
        yield fake


@pytest.fixture
async def provider(twilio):
    telephony = TwilioTelephony(ACCOUNT_SID, AUTH_TOKEN, api_base=twilio.base)
    yield telephony
    await telephony.close()


def basic_auth() -> str:
    return "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()


def call_path(sid: str = CALL) -> str:
    return f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}.json"


async def test_hang_up_updates_the_call_to_completed(twilio, provider) -> None:
    await provider.hang_up(CALL)
    (request,) = twilio.requests
    assert (request.method, request.path) == ("POST", call_path())
    assert request.form == {"Status": "completed"}
    assert request.authorization == basic_auth()


async def test_a_transfer_says_the_hold_message_then_dials_the_number_with_a_whisper(
    twilio, provider
) -> None:
    whisper = "https://voice.example/voice/twilio/whisper?conversation=c1&agent=agent-ana"
    await provider.transfer(CALL, Transfer(DialTarget("+14155550150"), whisper_url=whisper))
    (request,) = twilio.requests
    assert request.path == call_path()
    assert set(request.form) == {"Twiml"}
    root = ET.fromstring(request.form["Twiml"])
    say, dial = list(root)
    assert say.tag == "Say" and "connecting you" in (say.text or "")
    assert dial.tag == "Dial" and dial.attrib["answerOnBridge"] == "true"
    (number,) = list(dial)
    assert (number.tag, number.text, number.attrib["url"]) == ("Number", "+14155550150", whisper)


async def test_a_transfer_to_a_sip_uri_dials_sip(twilio, provider) -> None:
    await provider.say_and_dial(CALL, None, DialTarget("sip:ben@pbx.northwind.example"))
    root = ET.fromstring(twilio.requests[0].form["Twiml"])
    (dial,) = list(root)
    (sip,) = list(dial)
    assert (sip.tag, sip.text) == ("Sip", "sip:ben@pbx.northwind.example")
    assert "url" not in sip.attrib


@pytest.mark.parametrize(("status", "retryable"), [(404, False), (500, True), (429, True)])
async def test_a_refusal_from_twilio_is_a_call_control_failure(
    twilio, provider, status, retryable
) -> None:
    twilio.fail_with = status
    with pytest.raises(CallControlFailed) as failure:
        await provider.hang_up(CALL)
    assert failure.value.retryable is retryable
    assert str(status) in str(failure.value)


async def test_an_unreachable_api_is_a_retryable_failure(unused_tcp_port) -> None:
    telephony = TwilioTelephony(
        ACCOUNT_SID, AUTH_TOKEN, api_base=f"http://127.0.0.1:{unused_tcp_port}"
    )
    try:
        with pytest.raises(CallControlFailed) as failure:
            await telephony.hang_up(CALL)
    finally:
        await telephony.close()
    assert failure.value.retryable


def test_a_dial_target_is_a_number_or_a_sip_uri() -> None:
    assert DialTarget("+15105550160").kind == "number"
    assert DialTarget("sips:ana@pbx.example.com").kind == "sip"
    for bad in ("5105550160", "tel:+15105550160", "sip:nobody", ""):
        with pytest.raises(ValueError):
            DialTarget(bad)


# -- warm transfer, end to end ------------------------------------------------------------------


async def accept(app, conversation_id: str, agent_id: str = "agent-ana") -> None:
    """The bot hands the call to the orders queue and Ana takes it (as the desk would)."""
    offer = {
        "offer_id": "offer-1",
        "agent_id": agent_id,
        "queue": "orders",
        "expires_at": (utcnow() + timedelta(minutes=1)).isoformat(),
    }
    steps = [
        (
            "handoff.requested",
            Actor("bot", "northwind-bot"),
            {"queue": "orders", "reason_code": "customer_request", "skills": ["orders"]},
        ),
        ("handoff.offered", Actor("system", "router"), offer),
        (
            "handoff.accepted",
            Actor("human", agent_id),
            {"offer_id": "offer-1", "agent_id": agent_id},
        ),
    ]
    events = [
        Event(conversation_id, t, p, channel="voice", actor=a, customer_id="cus-maya")
        for t, a, p in steps
    ]
    await service_of(app).conversations.record(conversation_id, events)


@pytest.fixture
async def server(any_store, twilio):
    settings = voice_settings(twilio_api_base=twilio.base)
    async with LiveServer(create_app(settings, store=any_store)) as live:
        yield live


async def test_accepting_a_live_call_transfers_it_and_the_agent_hears_a_whisper(
    server, twilio
) -> None:
    app, store = server.app, service_of(server.app).store
    answer = await place_call(server)
    sid, conversation_id = answer.parameters["callSid"], answer.parameters["conversationId"]
    caller = await open_stream(server, answer)
    for digit in "1042#":
        await caller.dtmf(digit)
    await wait_for(store, conversation_id, lambda rs: any(r.type == "slot.filled" for r in rs))
    await accept(app, conversation_id)
    records = await wait_for(
        store, conversation_id, lambda rs: any(r.type == "note.added" for r in rs)
    )
    (note,) = [r for r in records if r.type == "note.added"]
    assert orjson.loads(note.payload)["text"] == "Call transferred to agent-ana at +14155550150"
    assert (note.channel, note.leg_id) == ("voice", sid)

    (update,) = twilio.requests
    assert update.path == call_path(sid)
    dial = ET.fromstring(update.form["Twiml"]).find("Dial")
    assert dial is not None
    number = dial.find("Number")
    assert number is not None and number.text == "+14155550150"
    whisper_url = number.attrib["url"]
    query = parse_qs(urlsplit(whisper_url).query)
    assert query == {"conversation": [conversation_id], "agent": ["agent-ana"]}

    # Twilio stops the media stream when the call leaves <Connect>: the leg stays live.
    await caller.stop()
    await caller.closed_code()
    state = await service_of(app).conversations.rehydrate(conversation_id)
    assert sid in state.live_legs

    # The agent answers: Twilio fetches the whisper (signed like every webhook).
    path = whisper_url.removeprefix(server.http)
    response = await post_webhook(
        server, path, {"CallSid": "CA" + "cd" * 16, "CallStatus": "in-progress"}
    )
    assert response.status_code == 200
    said = ET.fromstring(response.text).find("Say")
    assert said is not None
    text = said.text or ""
    assert "Maya Chen" in text and "not verified" in text
    assert "asked for a person" in text and "1042" in text

    # The call ends: the status callback ends the leg.
    await post_webhook(server, "/voice/twilio/status", {"CallSid": sid, "CallStatus": "completed"})
    ended = [r for r in await store.read(conversation_id) if r.type == "leg.ended"]
    assert [orjson.loads(r.payload)["reason"] for r in ended] == ["completed"]


async def test_an_agent_without_a_dial_target_is_noted_and_the_call_stays(server, twilio) -> None:
    store = service_of(server.app).store
    answer = await place_call(server)
    conversation_id = answer.parameters["conversationId"]
    caller = await open_stream(server, answer)
    await accept(server.app, conversation_id, agent_id="agent-zoe")
    records = await wait_for(
        store, conversation_id, lambda rs: any(r.type == "note.added" for r in rs)
    )
    (note,) = [r for r in records if r.type == "note.added"]
    assert "no phone or SIP address for agent-zoe" in orjson.loads(note.payload)["text"]
    assert twilio.requests == []
    await caller.stop()
    records = await wait_for(
        store, conversation_id, lambda rs: any(r.type == "leg.ended" for r in rs)
    )
    (ended,) = [r for r in records if r.type == "leg.ended"]
    assert orjson.loads(ended.payload)["reason"] == "stream_stopped"


async def test_a_failed_transfer_is_noted_and_the_stream_keeps_the_call(server, twilio) -> None:
    twilio.fail_with = 500
    store = service_of(server.app).store
    answer = await place_call(server)
    conversation_id = answer.parameters["conversationId"]
    caller = await open_stream(server, answer)
    await accept(server.app, conversation_id)
    records = await wait_for(
        store, conversation_id, lambda rs: any(r.type == "note.added" for r in rs)
    )
    (note,) = [r for r in records if r.type == "note.added"]
    assert orjson.loads(note.payload)["text"].startswith("Call transfer to agent-ana failed")
    assert answer.parameters["callSid"] not in service_of(server.app).voice.calls.handed_over
    await caller.stop()
    await caller.closed_code()


async def test_the_whisper_needs_a_valid_signature(server) -> None:
    response = await post_webhook(
        server,
        "/voice/twilio/whisper?conversation=x&agent=a",
        {"CallSid": CALL},
        signature="bm9wZQ==",
    )
    assert response.status_code == 403

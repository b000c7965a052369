"""Twilio's call webhooks against the running server: signatures, TwiML, legs, continuity."""

from __future__ import annotations

import orjson
import pytest

from tests.conftest import TOKEN_SECRET, LiveServer
from tests.twilio_fakes import (
    AUTH_TOKEN,
    MAYA_PHONE,
    NORTHWIND_LINE,
    STRANGER_PHONE,
    call_sid,
    incoming_params,
    place_call,
    post_webhook,
    read_answer,
    sign,
    voice_settings,
)
from threadline.api.app import create_app
from threadline.api.deps import service_of
from threadline.settings import Settings

INCOMING = "/voice/twilio/incoming"
STATUS = "/voice/twilio/status"
PUBLIC = "https://voice.northwind.example"


@pytest.fixture
async def server(any_store):
    async with LiveServer(create_app(voice_settings(), store=any_store)) as live:
        yield live


async def records_of(server, conversation_id):
    return await service_of(server.app).store.read(conversation_id)


def payload(record):
    return orjson.loads(record.payload)


async def everything(server):
    return await service_of(server.app).store.read_all(0, 100_000)


# -- signatures ---------------------------------------------------------------------------------


async def test_a_signed_call_is_answered_with_the_greeting_then_the_media_stream(server) -> None:
    sid = call_sid()
    answer = read_answer(await post_webhook(server, INCOMING, incoming_params(sid)))
    assert answer.root.tag == "Response"
    assert [child.tag for child in answer.root] == ["Say", "Connect"]
    assert "automated assistant" in answer.greeting and "recorded" in answer.greeting
    assert answer.stream_url == server.ws + "/voice/twilio/stream"
    params = answer.parameters
    assert set(params) == {"callSid", "from", "to", "conversationId", "token"}
    assert params["callSid"] == sid
    assert (params["from"], params["to"]) == (MAYA_PHONE, NORTHWIND_LINE)
    assert params["token"].count(".") == 2
    types = [r.type for r in await records_of(server, params["conversationId"])]
    assert types == [
        "conversation.started",
        "leg.started",
        "identity.linked",
        "consent.granted",
        "consent.granted",
        "message.sent",
    ]  # the greeting's notice


async def test_a_call_without_a_signature_is_refused_and_records_nothing(server) -> None:
    before = len(await everything(server))
    response = await post_webhook(server, INCOMING, incoming_params(call_sid()), unsigned=True)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:threadline:problem:bad-webhook-signature"
    assert len(await everything(server)) == before


@pytest.mark.parametrize("forgery", ["other-token", "tampered", "other-url", "garbage"])
async def test_a_call_with_a_bad_signature_is_refused_and_records_nothing(server, forgery) -> None:
    params = incoming_params(call_sid())
    url = server.http + INCOMING
    signature = {
        "other-token": sign(url, params, token="not-" + AUTH_TOKEN),
        "tampered": sign(url, {**params, "From": STRANGER_PHONE}),
        "other-url": sign(server.http + STATUS, params),
        "garbage": "c2lnbmF0dXJl",
    }[forgery]
    before = len(await everything(server))
    response = await post_webhook(server, INCOMING, params, signature=signature)
    assert response.status_code == 403
    assert response.json()["type"] == "urn:threadline:problem:bad-webhook-signature"
    assert len(await everything(server)) == before


async def test_with_a_public_url_signatures_cover_it_and_the_stream_is_secure(sqlite_store) -> None:
    app = create_app(voice_settings(public_url=PUBLIC + "/"), store=sqlite_store)
    async with LiveServer(app) as live:
        params = incoming_params(call_sid())
        as_requested = await post_webhook(live, INCOMING, params)
        assert as_requested.status_code == 403
        answer = read_answer(
            await post_webhook(live, INCOMING, params, signed_as=PUBLIC + INCOMING)
        )
    assert answer.stream_url == "wss://voice.northwind.example/voice/twilio/stream"


async def test_without_a_public_url_signatures_cover_the_request_url(server) -> None:
    params = incoming_params(call_sid())
    refused = await post_webhook(server, INCOMING, params, signed_as=PUBLIC + INCOMING)
    assert refused.status_code == 403
    assert (await post_webhook(server, INCOMING, params)).status_code == 200


async def test_without_an_auth_token_the_voice_webhooks_are_unavailable(sqlite_store) -> None:
    app = create_app(Settings(token_secret=TOKEN_SECRET), store=sqlite_store)
    async with LiveServer(app) as live:
        response = await post_webhook(live, INCOMING, incoming_params(call_sid()))
    assert response.status_code == 503
    assert response.json()["type"] == "urn:threadline:problem:voice-unconfigured"


async def test_a_signed_webhook_without_a_call_sid_is_refused_as_invalid(server) -> None:
    params = {k: v for k, v in incoming_params(call_sid()).items() if k != "CallSid"}
    response = await post_webhook(server, INCOMING, params)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "CallSid"


@pytest.mark.parametrize("sid", ["CA 1 2", "CA/../x", "CAé" + "0" * 31, "CA" + "g" * 32, "CA12"])
async def test_a_malformed_call_sid_is_refused_before_anything_is_recorded(server, sid) -> None:
    before = len(await everything(server))
    params = {**incoming_params(call_sid()), "CallSid": sid}
    response = await post_webhook(server, INCOMING, params)
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "CallSid", "reason": "malformed"}]
    assert len(await everything(server)) == before


# -- who is calling -----------------------------------------------------------------------------


async def test_a_known_number_is_the_customer_but_only_as_an_unverified_claim(server) -> None:
    sid = call_sid()
    answer = await place_call(server, sid, caller="(415) 555-0123")
    records = await records_of(server, answer.parameters["conversationId"])
    assert {r.customer_id for r in records} == {"cus-maya"}
    assert all(r.channel == "voice" and r.leg_id == sid for r in records)
    started, leg, identity, *noticed, greeting = records
    assert [payload(n)["purpose"] for n in noticed] == ["recording", "ai_processing"]
    assert payload(started) == {"origin": "voice", "topic": None}
    assert payload(leg)["leg_id"] == sid and payload(leg)["address"] == MAYA_PHONE
    assert (leg.actor_kind, leg.actor_id) == ("customer", "cus-maya")
    assert payload(identity) == {
        "kind": "phone",
        "value": MAYA_PHONE,
        "verified": False,
        "method": "caller_id",
        "level": "claimed",
        "customer_id": None,
    }
    service = service_of(server.app)
    assert payload(greeting)["text"] == service.voice.greeting
    state = await service.conversations.rehydrate(answer.parameters["conversationId"])
    assert state.identities == {"phone": False}
    assert sid in state.live_legs


async def test_a_second_call_from_the_same_number_continues_the_conversation(server) -> None:
    first = await place_call(server)
    ended = await post_webhook(
        server, STATUS, {"CallSid": first.parameters["callSid"], "CallStatus": "completed"}
    )
    assert ended.status_code == 204
    second = await place_call(server)
    conversation_id = first.parameters["conversationId"]
    assert second.parameters["conversationId"] == conversation_id
    assert second.parameters["token"] != first.parameters["token"]
    records = await records_of(server, conversation_id)
    assert [r.type for r in records].count("conversation.started") == 1
    legs = [payload(r)["leg_id"] for r in records if r.type == "leg.started"]
    assert legs == [first.parameters["callSid"], second.parameters["callSid"]]


async def test_unknown_numbers_start_a_new_conversation_each_call(server) -> None:
    first = await place_call(server, caller=STRANGER_PHONE)
    second = await place_call(server, caller=STRANGER_PHONE)
    assert first.parameters["conversationId"] != second.parameters["conversationId"]
    records = await records_of(server, first.parameters["conversationId"])
    assert records[0].customer_id.startswith("caller-")


async def resolve(server, conversation_id: str, hours_ago: float = 0.0) -> None:
    from datetime import UTC, datetime, timedelta

    from threadline.core.events import Actor, Event

    when = datetime.now(UTC) - timedelta(hours=hours_ago)
    resolved = Event(conversation_id, "conversation.resolved", {"outcome": "answered"},
                     channel="voice", actor=Actor("human", "agent-ana"), customer_id="cus-maya",
                     occurred_at=when)  # fmt: skip
    await service_of(server.app).conversations.record(conversation_id, [resolved])


async def test_a_call_soon_after_a_resolution_reopens_the_conversation(server) -> None:
    first = await place_call(server)
    conversation_id = first.parameters["conversationId"]
    await resolve(server, conversation_id, hours_ago=1)
    second = await place_call(server)
    assert second.parameters["conversationId"] == conversation_id
    records = await records_of(server, conversation_id)
    types = [r.type for r in records]
    assert types.count("conversation.started") == 1
    reopened = types.index("conversation.reopened")
    assert types.index("conversation.resolved") < reopened < len(types) - 1
    assert payload(records[reopened]) == {"reason": "returning_caller"}
    assert records[reopened + 1].type == "leg.started"
    state = await service_of(server.app).conversations.rehydrate(conversation_id)
    assert state.status not in {"resolved", "abandoned"}


async def test_a_call_after_the_reopen_window_starts_a_new_conversation(server) -> None:
    first = await place_call(server)
    conversation_id = first.parameters["conversationId"]
    await resolve(server, conversation_id, hours_ago=73)  # the window is 72 hours
    second = await place_call(server)
    assert second.parameters["conversationId"] != conversation_id
    records = await records_of(server, second.parameters["conversationId"])
    assert records[0].type == "conversation.started" and records[0].customer_id == "cus-maya"


async def test_with_no_reopen_window_a_resolved_conversation_stays_closed(sqlite_store) -> None:
    app = create_app(voice_settings(reopen_window_hours=0), store=sqlite_store)
    async with LiveServer(app) as live:
        first = await place_call(live)
        await resolve(live, first.parameters["conversationId"], hours_ago=0.01)
        second = await place_call(live)
    assert second.parameters["conversationId"] != first.parameters["conversationId"]


async def test_the_reopen_window_survives_a_restart(tmp_path) -> None:
    settings = voice_settings(store=f"sqlite:///{tmp_path / 'voice.db'}")
    async with LiveServer(create_app(settings)) as live:
        first = await place_call(live)
        await resolve(live, first.parameters["conversationId"], hours_ago=2)
    async with LiveServer(create_app(settings)) as live:
        second = await place_call(live)
    assert second.parameters["conversationId"] == first.parameters["conversationId"]


async def test_a_retried_incoming_webhook_records_the_call_once(server) -> None:
    sid = call_sid()
    first = await place_call(server, sid, caller=STRANGER_PHONE)
    again = await place_call(server, sid, caller=STRANGER_PHONE)
    assert again.parameters["conversationId"] == first.parameters["conversationId"]
    records = await records_of(server, first.parameters["conversationId"])
    assert [r.type for r in records].count("leg.started") == 1


async def test_the_caller_directory_is_rebuilt_from_the_log_after_a_restart(tmp_path) -> None:
    settings = voice_settings(store=f"sqlite:///{tmp_path / 'voice.db'}")
    async with LiveServer(create_app(settings)) as live:
        first = await place_call(live)
    async with LiveServer(create_app(settings)) as live:
        second = await place_call(live)
    assert second.parameters["conversationId"] == first.parameters["conversationId"]


# -- call status callbacks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("completed", "completed"),
        ("busy", "busy"),
        ("no-answer", "no_answer"),
        ("failed", "failed"),
        ("canceled", "canceled"),
    ],
)
async def test_a_final_call_status_ends_the_leg_once(server, status, reason) -> None:
    answer = await place_call(server)
    sid, conversation_id = answer.parameters["callSid"], answer.parameters["conversationId"]
    for _ in range(3):  # Twilio retries callbacks it did not see acknowledged
        response = await post_webhook(
            server, STATUS, {"CallSid": sid, "CallStatus": status, "AccountSid": "AC" + "1" * 32}
        )
        assert response.status_code == 204
    ended = [r for r in await records_of(server, conversation_id) if r.type == "leg.ended"]
    assert len(ended) == 1
    assert payload(ended[0]) == {"leg_id": sid, "reason": reason}
    assert ended[0].idempotency_key == f"{sid}:status:{status}"


@pytest.mark.parametrize("status", ["queued", "initiated", "ringing", "in-progress"])
async def test_a_call_in_progress_records_nothing(server, status) -> None:
    answer = await place_call(server)
    before = await records_of(server, answer.parameters["conversationId"])
    response = await post_webhook(
        server, STATUS, {"CallSid": answer.parameters["callSid"], "CallStatus": status}
    )
    assert response.status_code == 204
    assert await records_of(server, answer.parameters["conversationId"]) == before


async def test_a_status_callback_needs_a_valid_signature(server) -> None:
    answer = await place_call(server)
    params = {"CallSid": answer.parameters["callSid"], "CallStatus": "completed"}
    response = await post_webhook(server, STATUS, params, signature=sign("http://x/", params))
    assert response.status_code == 403
    records = await records_of(server, answer.parameters["conversationId"])
    assert "leg.ended" not in [r.type for r in records]


async def test_a_status_for_an_unknown_call_is_acknowledged_and_ignored(server) -> None:
    before = len(await everything(server))
    params = {"CallSid": call_sid(), "CallStatus": "completed"}
    assert (await post_webhook(server, STATUS, params)).status_code == 204
    assert len(await everything(server)) == before

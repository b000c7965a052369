"""Phone calls end to end with real audio: espeak-ng speech in, the embedded STT, the bot,
espeak-ng replies out, over the Media Streams protocol on a real WebSocket."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import httpx
import pytest
from structlog.testing import capture_logs

from tests.conftest import LiveServer, bearer
from tests.twilio_fakes import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, voice_settings, wait_for
from threadline.api.app import create_app
from threadline.api.deps import service_of
from threadline.channels.voice import pipeline
from threadline.channels.voice.stt import WhisperSTT
from threadline.channels.voice.vad import EndpointerConfig
from threadline.testing.caller import PhoneCaller, speech_ratio
from threadline.testing.voice import judge_speech

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("espeak")]

MAYA = "+14155550123"
STRANGER = "+12025550199"


@pytest.fixture
async def phone(tmp_path):
    app = create_app(voice_settings(store=f"sqlite:///{tmp_path / 'voice.db'}"))
    async with LiveServer(app) as server:
        yield server


def caller(server) -> PhoneCaller:
    return PhoneCaller(server.http, AUTH_TOKEN, ACCOUNT_SID)


async def events(server, conversation_id: str, type_: str) -> list[dict]:
    """The payloads of ``type_`` on the conversation, each with its ``event_id``."""
    records = await service_of(server.app).store.read(conversation_id)
    codec = service_of(server.app).conversations.codec
    return [{**codec.decode(r).payload, "event_id": r.event_id}
            for r in records if r.type == type_]  # fmt: skip


async def transcribed(server, call: PhoneCaller, count: int, timeout: float = 20.0) -> list[dict]:
    await wait_for(service_of(server.app).store, call.conversation_id,
                   lambda rs: sum(r.type == "utterance.transcribed" for r in rs) >= count,
                   timeout)  # fmt: skip
    return await events(server, call.conversation_id, "utterance.transcribed")


async def test_a_caller_is_heard_understood_and_answered_in_speech(phone) -> None:
    call = caller(phone)
    greeting = await call.dial(STRANGER)
    assert "automated assistant" in greeting and "recorded" in greeting
    await call.say("When are you open on Sunday in Oakland?")
    (utterance,) = await transcribed(phone, call, 1)
    assert "sunday" in utterance["text"].lower() and "oakland" in utterance["text"].lower()
    assert 0 < utterance["start_ms"] < utterance["end_ms"]
    reply = await call.next_reply(0)
    sent = await events(phone, call.conversation_id, "message.sent")
    spoken = [m for m in sent if "Broadway" in m["text"] or "closed" in m["text"]]
    assert spoken, sent
    judged = judge_speech(reply.played_audio)
    assert judged.plausible_for(spoken[-1]["text"]), judged
    await wait_for(service_of(phone.app).store, call.conversation_id,
                   lambda rs: any(r.type == "message.heard" for r in rs))  # fmt: skip
    (heard,) = await events(phone, call.conversation_id, "message.heard")
    assert heard["complete"] and heard["heard_text"] == spoken[-1]["text"]
    await call.hang_up()
    await wait_for(service_of(phone.app).store, call.conversation_id,
                   lambda rs: any(r.type == "leg.ended" for r in rs))  # fmt: skip


async def test_transcription_starts_at_the_pause_and_a_resumed_sentence_supersedes_it(
    phone, monkeypatch
) -> None:
    decodes: list[tuple[float, int]] = []  # when each decode was asked for, bytes of audio
    transcribe = WhisperSTT.transcribe

    async def counted(self, pcm, hints=None, language="en"):
        decodes.append((time.monotonic(), len(pcm)))
        return await transcribe(self, pcm, hints, language)

    monkeypatch.setattr(WhisperSTT, "transcribe", counted)
    call = caller(phone)
    await call.dial(STRANGER)
    # Two sentences, with a pause between them (espeak-ng's own 300 ms and 100 more) shorter
    # than the end of a turn.
    await call.say(["Where is my order?", "It is order 1042."], pause_ms=100)
    spoke_at = call.last_voiced_sent_at
    assert spoke_at is not None
    (utterance,) = await transcribed(phone, call, 1)
    assert "where" in utterance["text"].lower() and "1042" in utterance["text"]
    # A draft of the first sentence, dropped when the caller went on; then one of the whole.
    assert len(decodes) >= 2 and decodes[-1][1] > decodes[0][1]
    assert sum(size == decodes[-1][1] for _, size in decodes) == 1  # never decoded twice
    end_silence = EndpointerConfig().end_silence_ms / 1000
    assert decodes[-1][0] - spoke_at < end_silence - 0.1  # before the turn had ended
    await call.hang_up()


async def test_speaking_over_a_reply_clears_it_and_keeps_only_what_was_heard(phone) -> None:
    call = caller(phone)
    await call.dial(STRANGER)
    # Store hours for both stores make a long reply; interrupt it a second in.
    await call.say("What are your opening hours?")
    await transcribed(phone, call, 1)
    async with asyncio.timeout(20):
        while not call.replies or call.replies[0].played < 50:
            await asyncio.sleep(0.02)
    await call.say("Actually, track order 1057 please.")
    await wait_for(service_of(phone.app).store, call.conversation_id,
                   lambda rs: any(r.type == "message.heard" for r in rs))  # fmt: skip
    assert call.clears >= 1
    first = call.replies[0]
    assert first.cleared > 0 and first.played < len(first.frames)
    (heard,) = await events(phone, call.conversation_id, "message.heard")
    sent = await events(phone, call.conversation_id, "message.sent")
    full = next(m["text"] for m in sent if m["event_id"] == heard["message_id"])
    assert not heard["complete"] and full.startswith(heard["heard_text"])
    assert 0 < len(heard["heard_text"]) < len(full)
    assert heard["played_ms"] <= first.played * 20 + 200
    utterances = await transcribed(phone, call, 2)
    assert "1057" in utterances[-1]["text"]
    await call.hang_up()


class FaultyEngine:
    """Wraps the real recogniser: while ``failing``, every decode fails as ``fault`` says."""

    def __init__(self, monkeypatch, fault: str) -> None:
        self.failing = True
        self.failures = 0
        real = WhisperSTT.transcribe

        async def transcribe(stt, pcm, hints=None, language="en"):
            if not self.failing:
                return await real(stt, pcm, hints, language)
            self.failures += 1
            if fault == "hang":
                await asyncio.Event().wait()
            # An engine whose error quotes what it heard: that must not reach the log.
            raise RuntimeError("decoder failed on 'open on sunday in oakland'")

        monkeypatch.setattr(WhisperSTT, "transcribe", transcribe)


async def until_logged(logs: list[dict], event: str, timeout: float = 20.0) -> dict:
    async with asyncio.timeout(timeout):
        while not (found := [entry for entry in logs if entry["event"] == event]):
            await asyncio.sleep(0.05)
    return found[0]


@pytest.mark.parametrize("fault", ["raise", "hang"])
async def test_a_failed_transcription_is_logged_and_the_call_listens_on(
    phone, monkeypatch, fault
) -> None:
    engine = FaultyEngine(monkeypatch, fault)
    # A short bound on a hung transcription, for the calls this test places.
    quick = dataclasses.replace(pipeline.SpeechConfig(), transcribe_timeout_s=2.0)
    monkeypatch.setattr(pipeline, "SpeechConfig", lambda: quick)
    call = caller(phone)
    await call.dial(STRANGER)
    with capture_logs() as logs:
        await call.say("When are you open on Sunday in Oakland?")
        failed = await until_logged(logs, "utterance not transcribed")
        engine.failing = False
        await call.say("Where is my order 1042?")
        (utterance,) = await transcribed(phone, call, 1)
        reply = await call.next_reply(0)
    assert engine.failures >= 1
    assert "1042" in utterance["text"]
    sent = await events(phone, call.conversation_id, "message.sent")
    assert sent and judge_speech(reply.played_audio).plausible_for(sent[-1]["text"])
    assert failed["call_id"] and failed["log_level"] in {"warning", "error"}
    assert "oakland" not in repr(logs).lower()
    await call.hang_up()


async def test_keyed_in_digits_are_a_turn_too(phone) -> None:
    call = caller(phone)
    await call.dial(STRANGER)
    await call.press("1043#")
    records = await wait_for(service_of(phone.app).store, call.conversation_id,
                             lambda rs: any(r.type == "slot.filled" for r in rs), 10)  # fmt: skip
    slots = [r for r in records if r.type == "slot.filled"]
    assert slots
    reply = await call.next_reply(0)
    assert speech_ratio(reply.audio) > 0.3
    await call.hang_up()


async def test_a_second_call_from_the_same_number_continues_and_is_not_trusted(phone) -> None:
    first = caller(phone)
    await first.dial(MAYA)
    await first.say("Where is my order 1042?")
    await transcribed(phone, first, 1)
    await first.next_reply(0)
    await first.say("My postcode is 94103.")
    await transcribed(phone, first, 2)
    # The bot's check follows the words it heard.
    await wait_for(service_of(phone.app).store, first.conversation_id,
                   lambda rs: any(r.type == "identity.linked" and b'"verified":true' in r.payload
                                  for r in rs), 10)  # fmt: skip
    state = await service_of(phone.app).conversations.rehydrate(first.conversation_id)
    assert state.identities.get("phone") is True
    await first.hang_up()

    second = caller(phone)
    await second.dial(MAYA)
    assert second.conversation_id == first.conversation_id
    welcome = await second.next_reply(0)
    sent = await events(phone, second.conversation_id, "message.sent")
    assert "order 1042" in sent[-1]["text"] and "postcode" in sent[-1]["text"]
    assert judge_speech(welcome.played_audio).plausible_for(sent[-1]["text"])
    state = await service_of(phone.app).conversations.rehydrate(second.conversation_id)
    assert not any(state.identities.values())  # caller id alone proves nothing
    await second.hang_up()


@pytest.fixture
async def twilio_rest():
    fake = FakeTwilio()
    async with LiveServer(fake.app()) as live:
        fake.base = live.http
        yield fake


async def test_asking_for_a_person_holds_the_caller_and_warm_transfers_to_the_agent(
    tmp_path, twilio_rest
) -> None:
    settings = voice_settings(
        store=f"sqlite:///{tmp_path / 'v.db'}", twilio_api_base=twilio_rest.base
    )
    app = create_app(settings)
    async with LiveServer(app) as server:
        ana = bearer(app, "agent-ana", "agent", queues=["orders", "billing"])
        async with httpx.AsyncClient(base_url=server.http, headers=ana) as desk:
            presence = await desk.put("/agents/me/presence", json={"presence": "available"})
            assert presence.status_code == 200
            call = caller(server)
            await call.dial(MAYA)
            await call.say("Where is my order 1042?")
            await call.next_reply(0)
            await call.say("My postcode is 94103.")
            await call.next_reply(1)
            await call.say("I want to talk to a person please.")
            hold = await call.next_reply(2)
            sent = await events(server, call.conversation_id, "message.sent")
            assert "connecting you" in sent[-1]["text"] and "stay on the line" in sent[-1]["text"]
            assert judge_speech(hold.played_audio).plausible_for(sent[-1]["text"])
            records = await wait_for(service_of(app).store, call.conversation_id,
                                     lambda rs: any(r.type == "handoff.offered" for r in rs),
                                     10)  # fmt: skip
            offer = (
                service_of(app)
                .conversations.codec.decode(next(r for r in records if r.type == "handoff.offered"))
                .payload
            )
            assert offer["agent_id"] == "agent-ana"
            packet = (await desk.get(f"/conversations/{call.conversation_id}/packet")).json()
            assert packet["verification"] == "verified"  # by the postcode, on this call
            assert {"name": "order_number", "value": "1042"}.items() <= next(
                s for s in packet["slots"] if s["name"] == "order_number"
            ).items()
            accepted = await desk.post(f"/conversations/{call.conversation_id}/accept",
                                       json={"offer_id": offer["offer_id"]})  # fmt: skip
            assert accepted.status_code == 200, accepted.text
            await wait_for(service_of(app).store, call.conversation_id,
                           lambda rs: any(r.type == "note.added" for r in rs), 10)  # fmt: skip
            (update,) = twilio_rest.requests
            assert call.sid in update.path and "<Dial" in update.form["Twiml"]
            await call.hang_up()

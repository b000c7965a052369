"""The test caller's turn-latency clock, on a real call to the service (real audio both ways)."""

from __future__ import annotations

import pytest

from tests.conftest import LiveServer
from tests.twilio_fakes import ACCOUNT_SID, AUTH_TOKEN, STRANGER_PHONE, voice_settings
from threadline.api.app import create_app
from threadline.channels.voice.vad import EndpointerConfig
from threadline.testing.caller import PhoneCaller, speech_ratio

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("espeak")]


@pytest.fixture
async def phone(tmp_path):
    app = create_app(voice_settings(store=f"sqlite:///{tmp_path / 'voice.db'}"))
    async with LiveServer(app) as server:
        yield server


async def test_reply_latency_runs_from_the_last_voiced_frame_to_the_reply_that_follows(phone):
    call = PhoneCaller(phone.http, AUTH_TOKEN, ACCOUNT_SID)
    await call.dial(STRANGER_PHONE)
    latency = await call.reply_latency("When are you open on Sunday in Oakland?")
    spoke_at = call.last_voiced_sent_at
    assert spoke_at is not None
    (reply,) = call.replies
    assert reply.first_frame_at == pytest.approx(spoke_at + latency)
    # No reply can come before the endpointer has heard the trailing silence that ends a turn.
    assert EndpointerConfig().end_silence_ms / 1000 - 0.1 < latency < 10
    await call.until_quiet()
    assert reply.played == len(reply.frames) and speech_ratio(reply.audio) > 0.3
    await call.hang_up()

"""The voice settings: typed, checked at start-up, typos refused."""

from __future__ import annotations

import pytest

from threadline.core.errors import ConfigurationError
from threadline.settings import load_settings


def test_voice_settings_are_read_from_the_environment() -> None:
    settings = load_settings(
        {
            "THREADLINE_TWILIO_AUTH_TOKEN": "secret-token",
            "THREADLINE_TWILIO_ACCOUNT_SID": "AC" + "a" * 32,
            "THREADLINE_PUBLIC_URL": "https://voice.northwind.example/",
            "THREADLINE_TWILIO_API_BASE": "http://127.0.0.1:9999",
            "THREADLINE_VOICE_GREETING": "Hi, an AI assistant here; calls are recorded.",
            "THREADLINE_VOICE_AGENT_TARGETS": '{"agent-ana": "sip:ana@pbx.northwind.example"}',
        }
    )
    assert settings.twilio_auth_token is not None
    assert settings.twilio_auth_token.get_secret_value() == "secret-token"
    assert settings.public_url == "https://voice.northwind.example"
    assert settings.twilio_api_base == "http://127.0.0.1:9999"
    assert settings.voice_agent_targets == {"agent-ana": "sip:ana@pbx.northwind.example"}
    assert "secret-token" not in repr(settings)


def test_the_defaults_disclose_the_assistant_and_recording_and_dial_the_demo_agents() -> None:
    settings = load_settings({})
    assert settings.twilio_auth_token is None and settings.public_url is None
    assert settings.twilio_api_base == "https://api.twilio.com"
    greeting = settings.voice_greeting.lower()
    assert "northwind" in greeting and "automated assistant" in greeting
    assert "recorded" in greeting
    assert set(settings.voice_agent_targets) == {"agent-ana", "agent-ben"}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("THREADLINE_VOICE_AGENT_TARGETS", '{"agent-ana": "555-0150"}', "neither an E.164"),
        ("THREADLINE_VOICE_AGENT_TARGETS", "agent-ana=+14155550150", "JSON object"),
        ("THREADLINE_PUBLIC_URL", "voice.northwind.example", "THREADLINE_PUBLIC_URL"),
        ("THREADLINE_PUBLIC_URL", "https://voice.example/?x=1", "THREADLINE_PUBLIC_URL"),
        ("THREADLINE_TWILIO_ACCOUNT_SID", "SK123", "THREADLINE_TWILIO_ACCOUNT_SID"),
        ("THREADLINE_VOICE_GREETING", "", "THREADLINE_VOICE_GREETING"),
    ],
)
def test_bad_voice_settings_are_refused_at_start_up(key, value, message) -> None:
    with pytest.raises(ConfigurationError) as refused:
        load_settings({key: value})
    assert message in str(refused.value)


def test_a_misspelt_voice_setting_names_the_right_one() -> None:
    with pytest.raises(ConfigurationError) as refused:
        load_settings({"THREADLINE_TWILIO_AUTH_TOKN": "x"})
    assert "did you mean THREADLINE_TWILIO_AUTH_TOKEN?" in str(refused.value)

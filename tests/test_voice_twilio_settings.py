"""The voice settings: typed, checked at start-up, typos refused; what a call says and whom a
transfer dials are the business pack's."""

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
        }
    )
    assert settings.twilio_auth_token is not None
    assert settings.twilio_auth_token.get_secret_value() == "secret-token"
    assert settings.public_url == "https://voice.northwind.example"
    assert settings.twilio_api_base == "http://127.0.0.1:9999"
    assert "secret-token" not in repr(settings)


def test_the_defaults_are_twilio_itself_and_nothing_secret() -> None:
    settings = load_settings({})
    assert settings.twilio_auth_token is None and settings.public_url is None
    assert settings.twilio_api_base == "https://api.twilio.com"


def test_the_pack_discloses_the_assistant_and_recording_and_names_whom_transfers_dial(
    northwind,
) -> None:
    from threadline.channels.voice.telephony.gateway import voice_greeting

    greeting = voice_greeting(northwind).lower()
    assert "northwind" in greeting and "automated assistant" in greeting
    assert "recorded" in greeting
    assert northwind.transfer_targets() == {"agent-ana": "+14155550150",
                                            "agent-ben": "+15105550160"}  # fmt: skip


@pytest.mark.parametrize("setting", ["THREADLINE_VOICE_GREETING", "THREADLINE_VOICE_AGENT_TARGETS"])
def test_the_settings_that_named_the_demo_business_are_gone(setting) -> None:
    with pytest.raises(ConfigurationError) as refused:
        load_settings({setting: "x"})
    assert f"unknown setting {setting}" in str(refused.value)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("THREADLINE_PUBLIC_URL", "voice.northwind.example", "THREADLINE_PUBLIC_URL"),
        ("THREADLINE_PUBLIC_URL", "https://voice.example/?x=1", "THREADLINE_PUBLIC_URL"),
        ("THREADLINE_TWILIO_ACCOUNT_SID", "SK123", "THREADLINE_TWILIO_ACCOUNT_SID"),
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

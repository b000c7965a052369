"""Typed settings, read once at start-up from ``THREADLINE_*`` variables.

Unknown ``THREADLINE_*`` variables are an error, so a typo never silently
falls back to a default.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Final, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from threadline.core.errors import ConfigurationError

PREFIX = "THREADLINE_"
#: Variables read by tools around the service (tests, benchmarks), not by the service.
OUTSIDE = frozenset(
    {"THREADLINE_TEST_POSTGRES", "THREADLINE_TEST_CHROMIUM", "THREADLINE_TEST_ESPEAK",
     "THREADLINE_BENCH_PG_DSN"}
)  # fmt: skip
#: The buses and caches this build has: the in-process ones.
BUSES: Final = ("memory",)
CACHES: Final = ("memory",)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
#: The settings each notifier cannot send without.
NOTIFIER_NEEDS: Final = {
    "twilio": ("twilio_account_sid", "twilio_auth_token", "sms_from"),
    "smtp": ("smtp_host", "email_from"),
}


def _unsupported(value: str, supported: tuple[str, ...]) -> PydanticCustomError:
    """Names the value by its scheme only: a URL may carry a password."""
    scheme, sep, _ = value.partition("://")
    if sep and _SCHEME.fullmatch(scheme):
        shown = f"{scheme}://…"
    elif _SCHEME.fullmatch(value):
        shown = repr(value)
    else:
        shown = "this value"
    return PydanticCustomError(
        "unsupported",
        "{shown} is not supported by this build (supported: {supported})",
        {"shown": shown, "supported": ", ".join(supported)},
    )


class Settings(BaseSettings):
    """Where Threadline keeps its log, and which bus and cache it uses."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="forbid", frozen=True)

    store: str = Field(
        "sqlite:///var/threadline.db",
        description="sqlite:///relative.db, sqlite:////absolute.db or postgresql://…",
    )
    business: Path | None = Field(
        None, description="the business pack: a folder with business.yaml"
    )
    data_dir: Path | None = Field(
        None,
        description="where the business's in-process tools keep their state; unset: beside"
        " the SQLite store, or ./var",
    )
    env: Literal["development", "production"] = Field(
        "development",
        description="development: a token secret is generated and sign-in links are printed;"
        " production: an explicit token secret or key is required and no token is printed",
    )
    bus: str = Field("memory", description="memory (the in-process bus; the only one built in)")
    cache: str = Field("memory", description="memory (the in-process cache; the only one built in)")
    snapshot_every: int = Field(100, ge=1, description="events between state snapshots")
    master_key_file: Path | None = Field(
        None,
        description="file (mode 0600) holding the 32-byte master key, raw or base64, that wraps"
        " each customer's data key; unset in development: derived from the token key's secret;"
        " production needs it or THREADLINE_MASTER_KEY",
    )
    master_key: SecretStr | None = Field(
        None,
        min_length=40,
        description="the master key as base64 of 32 random bytes (openssl rand -base64 32),"
        " instead of THREADLINE_MASTER_KEY_FILE",
    )
    bot_process: bool = Field(
        False,
        description="run the bot in a worker process beside the service (threadline serve"
        " turns it on unless set)",
    )
    token_issuer: str = Field(
        "threadline", min_length=1, description="iss of the tokens issued and accepted here"
    )
    token_audience: str = Field(
        "threadline-api", min_length=1, description="aud of the tokens issued and accepted here"
    )
    token_secret: SecretStr | None = Field(
        None,
        min_length=32,
        description="HS256 signing secret: at least 32 bytes and 128 bits of estimated"
        " entropy; unset in development: one is generated once into token-secret (mode 0600)"
        " beside the SQLite store",
    )
    token_key_file: Path | None = Field(
        None,
        description="PEM Ed25519 or P-256 key: sign with EdDSA or ES256 instead of HS256"
        " (a public key only verifies)",
    )
    audit_key_file: Path | None = Field(
        None,
        description="PEM Ed25519 key that signs audit checkpoints (a public key only verifies);"
        " unset: derived from the token key's secret",
    )
    audit_checkpoint_every: int = Field(
        100, ge=1, description="audit entries between signed checkpoints"
    )
    token_max_ttl: timedelta = Field(
        timedelta(days=7),
        gt=timedelta(0),
        description="longest token lifetime, as seconds or an ISO 8601 duration (P7D)",
    )
    twilio_auth_token: SecretStr | None = Field(
        None, min_length=1, description="Twilio auth token: checks webhook signatures, calls REST"
    )
    twilio_account_sid: str | None = Field(
        None, pattern=r"^AC[0-9a-fA-F]{32}$", description="Twilio account SID (AC…)"
    )
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$",
        description="the service's URL as callers' providers see it (https://voice.example.com);"
        " webhook signatures are checked against it plus the path",
    )
    twilio_api_base: str = Field(
        "https://api.twilio.com",
        pattern=r"^https?://[^?#\s]+$",
        description="base URL of the Twilio REST API (tests point it at a local fake)",
    )
    retention_every_hours: float = Field(
        24.0,
        ge=0,
        le=24 * 30,
        description="how often the service erases what the pack's retention lets go (0: never;"
        " `threadline retention run` does it on demand)",
    )
    chat_sessions_per_hour: int = Field(
        60,
        ge=1,
        le=100_000,
        description="chat sessions one network address may open in an hour (a guesser"
        " cannot mint a fresh visitor for every guess)",
    )
    reopen_window_hours: float = Field(
        72.0,
        ge=0,
        le=24 * 365,
        description="a known caller whose conversation was resolved this recently reopens it",
    )
    stt: str = Field(
        "whisper",
        pattern=r"^(whisper|off|openai:https?://\S+)$",
        description="speech-to-text on calls: whisper (embedded), openai:<base URL>, or off",
    )
    tts: str = Field(
        "espeak",
        pattern=r"^(espeak|openai:https?://\S+)$",
        description="text-to-speech on calls: espeak (embedded) or openai:<base URL>",
    )
    speech_api_key: SecretStr | None = Field(
        None, min_length=1, description="bearer key for OpenAI-compatible speech endpoints"
    )

    oidc_issuer: str | None = Field(
        None, min_length=1, description="iss of the trusted identity provider's ID tokens"
    )
    oidc_audience: str | None = Field(
        None, min_length=1, description="aud the identity provider's ID tokens must carry"
    )
    oidc_jwks_url: str | None = Field(
        None, pattern=r"^https?://\S+$", description="where the identity provider's JWKS is"
    )

    sms_from: str | None = Field(
        None, min_length=1, description="the Twilio number (E.164) or sender ID texts come from"
    )
    smtp_host: str | None = Field(None, min_length=1, description="the SMTP server e-mail goes to")
    smtp_port: int = Field(587, ge=1, le=65535, description="the SMTP server's port")
    smtp_security: Literal["none", "starttls", "tls"] = Field(
        "starttls",
        description="starttls: upgrade the connection (port 587); tls: TLS from the start"
        " (port 465); none: plain text, for a relay on the same host only",
    )
    smtp_username: str | None = Field(None, min_length=1, description="SMTP login; unset: none")
    smtp_password: SecretStr | None = Field(None, min_length=1, description="SMTP password")
    email_from: str | None = Field(
        None,
        pattern=r"^[^@\s<>]+@[^@\s<>]+$",
        description="the address e-mail comes from; the business's name is shown with it",
    )
    # Last: their checks read the settings above, which pydantic has validated by then.
    notify_sms: Literal["off", "log", "twilio"] = Field(
        "off",
        description="how one-time codes go by text message: off; log (development: written to"
        " the log); twilio (needs THREADLINE_TWILIO_ACCOUNT_SID, _AUTH_TOKEN and SMS_FROM)",
    )
    notify_email: Literal["off", "log", "smtp"] = Field(
        "off",
        description="how one-time codes go by e-mail: off; log (development: written to the"
        " log); smtp (needs THREADLINE_SMTP_HOST and THREADLINE_EMAIL_FROM)",
    )

    model_url: str | None = Field(
        None,
        pattern=r"^https?://\S+$",
        description="an OpenAI-compatible API's base URL (…/v1): the model-backed agent answers"
        " with it (default: the pack's `model.url`; neither: the embedded agent alone)",
    )
    model: str | None = Field(
        None, min_length=1, max_length=200, description="the model's name at THREADLINE_MODEL_URL"
    )
    model_api_key: SecretStr | None = Field(
        None, min_length=1, description="the key for THREADLINE_MODEL_URL (never logged)"
    )

    @field_validator("model_api_key")
    @classmethod
    def _key_with_a_model(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and info.data.get("model_url") is None:
            raise PydanticCustomError(
                "incomplete", "a model key needs THREADLINE_MODEL_URL (it would go nowhere)"
            )
        return value

    @field_validator("bus")
    @classmethod
    def _built_in_bus(cls, value: str) -> str:
        if value not in BUSES:
            raise _unsupported(value, BUSES)
        return value

    @field_validator("cache")
    @classmethod
    def _built_in_cache(cls, value: str) -> str:
        if value not in CACHES:
            raise _unsupported(value, CACHES)
        return value

    @field_validator("notify_sms", "notify_email")
    @classmethod
    def _notifier_can_send(cls, value: str, info: ValidationInfo) -> str:
        if value == "log" and info.data.get("env") == "production":
            raise PydanticCustomError(
                "development_only",
                "log writes one-time codes to the log: development only, not with"
                " THREADLINE_ENV=production",
            )
        missing = [n for n in NOTIFIER_NEEDS.get(value, ()) if info.data.get(n) is None]
        if missing:
            raise PydanticCustomError(
                "incomplete",
                "{value} needs {missing}",
                {"value": value, "missing": ", ".join(PREFIX + n.upper() for n in missing)},
            )
        return value

    @field_validator("public_url", "twilio_api_base")
    @classmethod
    def _no_trailing_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value


def data_dir(settings: Settings) -> Path:
    """Where in-process tools keep their state: the setting, else the SQLite store's folder,
    else ``./var``."""
    if settings.data_dir is not None:
        return settings.data_dir
    if settings.store.startswith("sqlite:///"):
        return Path(settings.store[len("sqlite:///") :]).parent
    return Path("var")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment; raises ConfigurationError on unknown keys."""
    env = os.environ if environ is None else environ
    known = {PREFIX + name.upper() for name in Settings.model_fields}
    for key in env:
        if key.startswith(PREFIX) and key not in known and key not in OUTSIDE:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigurationError(f"unknown setting {key}{hint}")
    values = {
        name: env[PREFIX + name.upper()]
        for name in Settings.model_fields
        if PREFIX + name.upper() in env
    }
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = PREFIX + str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise ConfigurationError(f"bad setting {name}: {first['msg']}") from None

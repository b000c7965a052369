"""Twilio: webhook signatures, the TwiML we answer with, and REST call control.

Everything Twilio-specific goes through the official ``twilio`` library:
``RequestValidator`` for ``X-Twilio-Signature``, ``VoiceResponse`` for TwiML,
and ``twilio.rest.Client`` on its asynchronous aiohttp client for call
updates, so no request blocks the event loop. The REST base URL is a setting
(``THREADLINE_TWILIO_API_BASE``) so tests can point it at a local fake.

The greeting (the AI and recording disclosure) is a ``<Say>`` before the
``<Connect><Stream>``: Twilio speaks it before any audio reaches us, so
nothing is transcribed before the caller has been told, and the disclosure
does not depend on our speech pipeline being up. The speech pipeline then
greets with the conversation's context.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from threadline.channels.voice.telephony.port import (
    CallControlFailed,
    DialTarget,
    TelephonyProvider,
)

SIGNATURE_HEADER: Final = "X-Twilio-Signature"
TWIML_MEDIA_TYPE: Final = "application/xml"
REST_TIMEOUT: Final = 10.0
STREAM_PATH: Final = "/voice/twilio/stream"


# -- webhooks ----------------------------------------------------------------------------


def signed_url(request_url: str, public_url: str | None) -> str:
    """The URL Twilio signed: ``public_url`` plus the request's path and query when
    set (the service sits behind a proxy or tunnel), else the request URL itself."""
    if not public_url:
        return request_url
    parts = urlsplit(request_url)
    base = urlsplit(public_url)
    path = base.path.rstrip("/") + parts.path
    return urlunsplit((base.scheme, base.netloc, path, parts.query, ""))


def stream_url(base_url: str) -> str:
    """The media WebSocket's URL under ``base_url`` (https → wss, http → ws)."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + STREAM_PATH, "", ""))


class SignatureCheck:
    """Checks ``X-Twilio-Signature`` against the account's auth token."""

    def __init__(self, auth_token: str) -> None:
        self._validator = RequestValidator(auth_token)

    def valid(self, url: str, params: Mapping[str, str], signature: str | None) -> bool:
        """Whether ``signature`` is Twilio's HMAC-SHA1 of ``url`` and the sorted ``params``."""
        if not signature:
            return False
        return bool(self._validator.validate(url, dict(params), signature))


# -- TwiML -------------------------------------------------------------------------------


def answer(greeting: str, stream: str, parameters: Mapping[str, str]) -> str:
    """Say the greeting, then connect the call to our media WebSocket with its context."""
    response = VoiceResponse()
    response.say(greeting)
    connect = response.connect()
    media = connect.stream(url=stream)
    for name, value in parameters.items():
        media.parameter(name=name, value=value)
    return str(response.to_xml())


def whisper(text: str) -> str:
    """What the answering agent hears before being bridged to the caller."""
    response = VoiceResponse()
    response.say(text)
    return str(response.to_xml())


def refuse(text: str) -> str:
    """Say ``text`` and hang up (a call we cannot take)."""
    response = VoiceResponse()
    response.say(text)
    response.hangup()
    return str(response.to_xml())


def say_and_dial_twiml(say: str | None, target: DialTarget, whisper_url: str | None) -> str:
    """``<Say>`` to the caller, then ``<Dial>`` the target; its ``url`` plays the whisper.

    ``answerOnBridge`` keeps the caller hearing ringing, not silence, until the
    agent has answered and heard the whisper.
    """
    response = VoiceResponse()
    if say:
        response.say(say)
    dial = response.dial(answer_on_bridge=True)
    extra: dict[str, Any] = {"url": whisper_url} if whisper_url else {}
    if target.kind == "sip":
        dial.sip(target.address, **extra)
    else:
        dial.number(target.address, **extra)
    return str(response.to_xml())


# -- REST call control -------------------------------------------------------------------


class _AsyncHttp(AsyncTwilioHttpClient):  # type: ignore[misc]
    """Twilio's aiohttp client, sending Basic auth as a header: aiohttp deprecates BasicAuth."""

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Any:
        headers = dict(headers or {})
        if auth is not None:
            credentials = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {credentials}"
        return await super().request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            auth=None,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )


class TwilioTelephony(TelephonyProvider):
    """Call control through Twilio's REST API (``Calls/{sid}`` updates)."""

    name: ClassVar[str] = "twilio"

    def __init__(self, account_sid: str, auth_token: str, *, api_base: str) -> None:
        self.account_sid = account_sid
        self._auth_token = auth_token
        self.api_base = api_base.rstrip("/")
        self._client: Client | None = None
        self._http: AsyncTwilioHttpClient | None = None

    def _rest(self) -> Client:
        # Built on first use, inside the event loop that owns its aiohttp session.
        if self._client is None:
            self._http = _AsyncHttp(timeout=REST_TIMEOUT)
            client = Client(self.account_sid, self._auth_token, http_client=self._http)
            client.api.base_url = self.api_base
            self._client = client
        return self._client

    async def _update(self, call_id: str, **fields: str) -> None:
        try:
            await self._rest().calls(call_id).update_async(**fields)
        except TwilioRestException as exc:
            retryable = exc.status >= 500 or exc.status == 429
            raise CallControlFailed(
                f"Twilio refused to update call {call_id}: {exc.status} {exc.msg}",
                retryable=retryable,
            ) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CallControlFailed(f"Twilio is unreachable: {exc}", retryable=True) from None

    async def say_and_dial(
        self, call_id: str, say: str | None, target: DialTarget, whisper_url: str | None = None
    ) -> None:
        await self._update(call_id, twiml=say_and_dial_twiml(say, target, whisper_url))

    async def hang_up(self, call_id: str) -> None:
        await self._update(call_id, status="completed")

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
            self._client = None

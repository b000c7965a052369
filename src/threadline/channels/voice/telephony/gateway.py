"""The phone channel as the service runs it: calls, stream tokens, call control, handlers.

:func:`voice_gateway` builds it once at start-up (the caller directory is
folded from the log first) and closes the speech engines and the provider's
client at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

from threadline.business import Business
from threadline.business.current import CurrentBusiness
from threadline.channels.voice.engines import SpeechEngines, speech_engines
from threadline.channels.voice.hints import domain_hints
from threadline.channels.voice.media import HandlerFactory
from threadline.channels.voice.pipeline import speech_pipeline
from threadline.channels.voice.telephony import stream
from threadline.channels.voice.telephony.calls import VoiceCalls
from threadline.channels.voice.telephony.control import CallControl
from threadline.channels.voice.telephony.directory import CallerDirectory
from threadline.channels.voice.telephony.keypad import keypad
from threadline.channels.voice.telephony.twilio import SignatureCheck, TwilioTelephony
from threadline.core.ports import Bus, Storage
from threadline.engine.commands import Commands
from threadline.engine.live import LiveHub
from threadline.identity.recognition import Recognition
from threadline.privacy.consent import notices
from threadline.security import RevocationList, TokenKey
from threadline.security.stream_tokens import StreamTokens
from threadline.settings import Settings


@dataclass
class VoiceGateway:
    """What the voice endpoints share, built once per service."""

    calls: VoiceCalls
    tokens: StreamTokens
    signatures: SignatureCheck | None
    public_url: str | None
    #: The business served now: its voice greeting and people.
    current: CurrentBusiness
    control: CallControl | None
    #: Makes each call's handler: the speech pipeline, or the keypad with STT off.
    #: Tests and probes may put their own in its place once the service runs.
    handlers: HandlerFactory
    #: Seconds a new socket has to send its ``start``.
    start_timeout: float = stream.START_TIMEOUT

    @property
    def greeting(self) -> str:
        """What a call hears first: the pack's voice greeting, with its disclosure."""
        return voice_greeting(self.current.business)


def voice_greeting(business: Business) -> str:
    """The pack's voice greeting (in its own locale), or its disclosure alone."""
    return (
        business.text("greetings", "voice")
        or business.text("disclosures", "voice")
        or f"{business.brand_name}: you are speaking with an automated assistant."
    )


@asynccontextmanager
async def voice_gateway(
    settings: Settings,
    store: Storage,
    bus: Bus,
    hub: LiveHub,
    commands: Commands,
    current: CurrentBusiness,
    recognition: Recognition,
    key: TokenKey,
    revocations: RevocationList,
) -> AsyncIterator[VoiceGateway]:
    """The gateway, running: call control follows ``bus`` when Twilio is configured."""
    directory = CallerDirectory()
    await directory.load(store, attach=lambda: hub.listen(directory.note))
    window = timedelta(hours=settings.reopen_window_hours)

    async def recognise(phone: str) -> str | None:
        return await recognition.customer("phone", phone)

    calls = VoiceCalls(commands, directory, recognise, voice_greeting(current.business), window)
    current.on_change(lambda business: setattr(calls, "greeting", voice_greeting(business)))
    calls.notices = lambda decided: notices(current.business, "voice", decided)
    engines = speech_engines(settings)
    token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else None
    provider = None
    control = None
    if token and settings.twilio_account_sid:
        provider = TwilioTelephony(
            settings.twilio_account_sid, token, api_base=settings.twilio_api_base
        )
        control = CallControl(
            calls,
            provider,
            current.business.transfer_targets(),
            public_url=settings.public_url,
        )
        current.on_change(lambda business: control.aim(business.transfer_targets()))
        await control.start(bus, store)
    gateway = VoiceGateway(
        calls=calls,
        tokens=StreamTokens(
            key,
            store,
            revocations,
            issuer=settings.token_issuer,
            audience=settings.token_audience,
        ),
        signatures=SignatureCheck(token) if token else None,
        public_url=settings.public_url,
        current=current,
        control=control,
        handlers=_handlers(calls, hub, engines, current),
    )
    warming = None
    if token and engines.stt is not None and hasattr(engines.stt, "load"):
        warming = asyncio.create_task(engines.stt.load())  # the first caller should not wait
    try:
        yield gateway
    finally:
        if warming is not None:
            warming.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await warming
        await engines.close()
        if provider is not None:
            await provider.close()


def _handlers(
    calls: VoiceCalls, hub: LiveHub, engines: SpeechEngines, current: CurrentBusiness
) -> HandlerFactory:
    """The speech pipeline, or the keypad alone when speech-to-text is off. Each call takes
    the speech-recognition hints of the business served when it starts."""
    if engines.stt is None:
        return keypad(calls)
    hints = [domain_hints(current.business)]
    current.on_change(lambda business: hints.__setitem__(0, domain_hints(business)))
    return speech_pipeline(calls, hub, engines.stt, engines.tts, lambda: hints[0])

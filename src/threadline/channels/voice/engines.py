"""The speech engines a service runs with, chosen by one setting each.

``THREADLINE_STT``: ``whisper`` (the embedded default: faster-whisper with the
bundled tiny model), ``openai:<base URL>`` (any OpenAI-compatible
transcription endpoint), or ``off`` (calls take keyed-in digits only).
``THREADLINE_TTS``: ``espeak`` (the embedded default) or ``openai:<base URL>``.
``THREADLINE_SPEECH_API_KEY`` is sent to OpenAI-compatible endpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

from threadline.core.errors import ConfigurationError
from threadline.core.ports import SpeechToText, TextToSpeech
from threadline.settings import Settings

OPENAI = "openai:"


@dataclass(frozen=True, slots=True)
class SpeechEngines:
    """The recogniser and synthesiser every call shares; None when speech is off."""

    stt: SpeechToText | None
    tts: TextToSpeech

    async def close(self) -> None:
        if self.stt is not None:
            await self.stt.close()
        await self.tts.close()


def speech_engines(settings: Settings) -> SpeechEngines:
    """The engines ``settings`` name; raises ConfigurationError for an unknown one."""
    key = settings.speech_api_key.get_secret_value() if settings.speech_api_key else None
    stt: SpeechToText | None
    if settings.stt == "off":
        stt = None
    elif settings.stt == "whisper":
        from threadline.channels.voice.stt import WhisperSTT

        stt = WhisperSTT()
    elif settings.stt.startswith(OPENAI):
        from threadline.channels.voice.stt import OpenAICompatibleSTT

        stt = OpenAICompatibleSTT(settings.stt.removeprefix(OPENAI), api_key=key)
    else:
        raise ConfigurationError(f"THREADLINE_STT: unknown engine {settings.stt!r}")
    tts: TextToSpeech
    if settings.tts == "espeak":
        from threadline.channels.voice.tts import EspeakTTS

        tts = EspeakTTS()
    elif settings.tts.startswith(OPENAI):
        from threadline.channels.voice.tts import OpenAICompatibleTTS

        tts = OpenAICompatibleTTS(settings.tts.removeprefix(OPENAI), api_key=key)
    else:
        raise ConfigurationError(f"THREADLINE_TTS: unknown engine {settings.tts!r}")
    return SpeechEngines(stt, tts)

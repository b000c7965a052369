"""The telephony-provider port: controlling a live call from outside it.

A provider (Twilio here; a SIP B2BUA or another CPaaS later) can say
something to the caller and then connect them to someone else, and can hang
up. Warm transfer is built on the first: the caller hears a holding message,
the agent's phone or SIP endpoint rings, and when the agent answers they hear
the whisper before the two are bridged.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Final, Literal

from threadline.core.errors import ThreadlineError

#: A number in E.164 (+13125550100) or a SIP URI (sip:jo@pbx.example.com).
DIAL_TARGET: Final = re.compile(r"\+[1-9][0-9]{7,14}|sips?:[^@\s]+@[^@\s]+")

HOLD_MESSAGE: Final = "Thanks for waiting. I'm connecting you to a member of our team now."


class CallControlFailed(ThreadlineError):
    """The provider refused or failed a call-control request."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class DialTarget:
    """Where to connect a call: an E.164 number or a SIP URI."""

    address: str

    def __post_init__(self) -> None:
        if not DIAL_TARGET.fullmatch(self.address):
            raise ValueError(f"{self.address!r} is neither an E.164 number nor a SIP URI")

    @property
    def kind(self) -> Literal["number", "sip"]:
        return "sip" if self.address.startswith(("sip:", "sips:")) else "number"


@dataclass(frozen=True, slots=True)
class Transfer:
    """A warm transfer: what the caller hears, who is dialled, what they hear first."""

    target: DialTarget
    announcement: str | None = HOLD_MESSAGE
    #: A URL the provider fetches when the target answers; its TwiML is the whisper.
    whisper_url: str | None = None


class TelephonyProvider(ABC):
    """Call control on one provider. Methods never block the event loop."""

    name: ClassVar[str]

    @abstractmethod
    async def say_and_dial(
        self, call_id: str, say: str | None, target: DialTarget, whisper_url: str | None = None
    ) -> None:
        """Replace what the call is doing: say ``say`` to the caller, then dial ``target``."""

    @abstractmethod
    async def hang_up(self, call_id: str) -> None:
        """End the call."""

    async def transfer(self, call_id: str, transfer: Transfer) -> None:
        """Warm-transfer the caller to ``transfer.target``."""
        await self.say_and_dial(
            call_id, transfer.announcement, transfer.target, transfer.whisper_url
        )

    async def close(self) -> None:  # noqa: B027 - most providers hold nothing to release
        """Release connections."""

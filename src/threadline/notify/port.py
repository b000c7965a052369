"""The notification port: a short text, such as a one-time code, to one customer.

A :class:`Notifier` sends one text to one address: a phone number (E.164) or an
e-mail address. ``key`` is the send's idempotency key: a retry with the same key
must not reach the customer twice where the transport can promise that, and
marks the duplicate where it cannot. A failure is a :class:`NotifyFailure`,
whose message never carries the address or the text: a code in a log is a code
given away.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from threadline.core.errors import ThreadlineError

#: How a code reaches a customer: the kind of identifier it is sent to.
Via = Literal["phone", "email"]


class NotifyFailure(ThreadlineError):
    """A message was not sent. The message names the transport and why, never the
    destination or the text, so it is safe to log."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class Notifier(Protocol):
    """Sends a text to an address on one transport. Never blocks the event loop."""

    async def send(self, to: str, text: str, *, key: str, subject: str | None = None) -> None:
        """Send ``text`` to ``to`` once per ``key``; ``subject`` is for e-mail only.

        Raises :class:`NotifyFailure` when the transport refuses or cannot be reached.
        """
        ...


@dataclass(frozen=True, slots=True)
class Notifiers:
    """The notifiers this service has; ``None`` where a transport is off."""

    sms: Notifier | None = None
    email: Notifier | None = None

    def for_via(self, via: Via) -> Notifier | None:
        """The notifier that reaches a ``via`` identifier, if there is one."""
        return self.sms if via == "phone" else self.email

"""A notifier that writes to the log instead of sending: development only.

The developer trying a verification flow reads the code from the log, so the
text is logged; the destination is masked all the same. Settings refuse
``THREADLINE_NOTIFY_SMS=log`` and ``THREADLINE_NOTIFY_EMAIL=log`` when
``THREADLINE_ENV=production``: there, a logged code would be a code given away.
"""

from __future__ import annotations

from typing import Literal

import structlog

log = structlog.get_logger("threadline.notify")

#: The transport a log notifier stands in for.
Kind = Literal["sms", "email"]


def mask(kind: Kind, to: str) -> str:
    """``+447700900123`` as ``+44*******123``; ``ada@example.com`` as ``a***@example.com``."""
    if kind == "email":
        local, _, domain = to.partition("@")
        return f"{local[:1]}***@{domain}"
    shown = 3 if len(to) > 9 else 0
    return to[:shown] + "*" * (len(to) - 2 * shown) + to[len(to) - shown :]


class LogNotifier:
    """Logs each message (``notify.logged``) with its destination masked; sends nothing."""

    def __init__(self, kind: Kind) -> None:
        self.kind: Kind = kind

    async def send(self, to: str, text: str, *, key: str, subject: str | None = None) -> None:
        log.info(
            "notify.logged",
            kind=self.kind,
            to=mask(self.kind, to),
            key=key,
            subject=subject,
            text=text,
        )

"""Consent, purpose by purpose: what a channel's notice gives, and what processing may use.

The ledger is events: ``consent.granted`` and ``consent.revoked`` on the
conversation (how: by ``notice``, ``express`` or ``verbal``; which notice was
shown), copied to the customer's own stream with the conversation and
channel. A channel that shows the business's disclosure (the call's greeting,
the chat's banner) records the purposes the pack gives by notice there, unless
the customer has already decided. Processing asks :func:`allows` at the
moment of use, so a withdrawal takes effect at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Final

from threadline.business import Business

RECORDING: Final = "recording"
AI_PROCESSING: Final = "ai_processing"
ANALYTICS: Final = "analytics"
MARKETING: Final = "marketing"


def notice_id(channel: str, text: str) -> str:
    """Which notice was shown: the channel, and a digest of the words (a new text, a new id)."""
    return f"{channel}:{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def notices(business: Business, channel: str, decided: Mapping[str, bool]) -> list[dict[str, Any]]:
    """The ``consent.granted`` payloads that showing ``channel``'s disclosure gives: each
    purpose the pack grants by notice there, that the customer has not decided yet (a
    withdrawal stands until they change it)."""
    text = business.text("disclosures", channel)
    if not text:
        return []  # no notice shown, none given
    shown = notice_id(channel, text)
    return [
        {"purpose": purpose, "basis": "notice", "notice": shown}
        for purpose, spec in business.pack.consent.purposes.items()
        if spec.basis == "notice" and channel in spec.notice_on and purpose not in decided
    ]


def allows(business: Business, consent: Mapping[str, bool], purpose: str) -> bool:
    """Whether the conversation's ``consent`` allows processing for ``purpose`` now: never
    after a withdrawal; by notice unless withdrawn; by opt-in only after a yes."""
    decided = consent.get(purpose)
    if decided is not None:
        return decided
    spec = business.pack.consent.purposes.get(purpose)  # type: ignore[call-overload]
    return spec is not None and spec.basis == "notice"

"""Check-in codes as chat messages: the code travels sealed in ``message.sent``.

The log must not hold a usable code (see :mod:`.codes`), yet the customer's
chat must show it after a refresh, from any process. So the message carries a
card: the code's token id, store and expiry in clear, and its QR token and
digits sealed with AES-GCM under a key derived from the token key, bound to
the conversation. Only the service opens it, when it shows the conversation to
its customer; a card copied onto another conversation does not open.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from threadline.business import Business
from threadline.channels.inperson.codes import IssuedCode, key_material, qr_data_url
from threadline.security import TokenKey

NONCE: Final = 12


@dataclass(frozen=True, slots=True)
class Opened:
    """What a card holds: the QR token and the six digits."""

    token: str
    digits: str


def spaced(digits: str) -> str:
    """Six digits as people read them out: ``123 456``."""
    return f"{digits[:3]} {digits[3:]}"


class CheckinCards:
    """Seals check-in codes into message cards and opens them again."""

    def __init__(self, key: TokenKey) -> None:
        secret = hashlib.sha256(b"threadline:checkin-card:" + key_material(key)).digest()
        self._aead = AESGCM(secret)

    @staticmethod
    def _bound(token_id: str, conversation_id: str) -> bytes:
        return f"{token_id}\n{conversation_id}".encode()

    def seal(self, issued: IssuedCode) -> dict[str, Any]:
        """The ``checkin`` card of a ``message.sent`` payload for ``issued``."""
        nonce = os.urandom(NONCE)
        plain = orjson.dumps({"token": issued.token, "digits": issued.digits})
        sealed = self._aead.encrypt(nonce, plain, self._bound(issued.token_id,
                                                               issued.conversation_id))  # fmt: skip
        return {
            "token_id": issued.token_id,
            "store_id": issued.store_id,
            "expires_at": issued.expires_at,
            "sealed": base64.urlsafe_b64encode(nonce + sealed).decode(),
        }

    def open(self, card: Mapping[str, Any], conversation_id: str) -> Opened | None:
        """The code in ``card``, or None when it was not sealed here for this conversation."""
        try:
            raw = base64.urlsafe_b64decode(str(card["sealed"]))
            bound = self._bound(str(card["token_id"]), conversation_id)
            plain = self._aead.decrypt(raw[:NONCE], raw[NONCE:], bound)
        except (InvalidTag, ValueError, KeyError):
            return None
        data = orjson.loads(plain)
        return Opened(str(data["token"]), str(data["digits"]))

    def message(self, issued: IssuedCode, business: Business) -> dict[str, Any]:
        """The ``message.sent`` payload that hands ``issued`` to the customer, in the pack's
        words (its ``checkin_code`` reply)."""
        place = business.location(issued.store_id or "")
        until = issued.expires_at.astimezone(place.timezone if place else business.timezone)
        text = business.reply("checkin_code").render(False, {
            "location": place.to_vars() if place else None, "until": until, "voice": False,
            "business": business.name, "today": until.date(), "slots": {}, "customer": None,
            "locations": {loc.id: loc.to_vars() for loc in business.locations},
            "locale": place.locale if place else business.locale,
        })  # fmt: skip
        return {"text": text, "checkin": self.seal(issued)}

    async def view(
        self,
        card: Mapping[str, Any],
        conversation_id: str,
        business: Business,
        *,
        used: Callable[[str], bool],
        now: datetime,
    ) -> dict[str, Any]:
        """The card as the customer's chat shows it: the code and its QR while it is
        valid; once it is used or expired, only that."""
        expires_at = card["expires_at"]
        if isinstance(expires_at, str):
            expires_at = datetime.fromisoformat(expires_at)
        store = business.location(str(card.get("store_id") or ""))
        view: dict[str, Any] = {
            "expires_at": expires_at.isoformat(),
            "store": {"id": store.id, "name": store.name} if store is not None else None,
        }
        opened = self.open(card, conversation_id)
        if opened is None:
            return {**view, "status": "invalid"}
        if used(str(card["token_id"])):
            return {**view, "status": "used"}
        if expires_at <= now:
            return {**view, "status": "expired"}
        qr = await asyncio.to_thread(qr_data_url, opened.token)
        return {**view, "status": "valid", "code": opened.digits, "qr": qr,
                "alt": f"QR code of check-in code {spaced(opened.digits)}"}  # fmt: skip

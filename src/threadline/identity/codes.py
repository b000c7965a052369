"""One-time codes: made, told about without giving the destination away, and checked.

A code is random digits sent to a phone or email on the customer's record. The
conversation keeps only a digest of it keyed with a secret derived from the
service's token key, so nobody who can read the log can find the code by trying
all of them; the agent, which holds the same key, checks an answer against it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SEND_CODE: Final = "send_code"
"""The action the agent requests; the service sends the code and records the challenge."""
_PURPOSE: Final = b"threadline one-time codes v1"


class CodeKey:
    """The secret that digests codes, shared by the service and its agents."""

    __slots__ = ("_key",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("a code key needs at least 16 bytes of secret")
        self._key = HKDF(hashes.SHA256(), 32, salt=None, info=_PURPOSE).derive(secret)

    def digest(self, conversation_id: str, challenge_id: str, code: str) -> str:
        message = f"{conversation_id}\x00{challenge_id}\x00{code}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def code_for(self, request_id: str, length: int) -> str:
        """The code sent for request ``request_id``: the same on a redelivered request, so a
        notifier that dropped a duplicate leaves the customer holding the right one."""
        mac = hmac.new(self._key, f"code\x00{request_id}".encode(), hashlib.sha256).digest()
        return f"{int.from_bytes(mac[:8], 'big') % 10**length:0{length}d}"

    def matches(self, conversation_id: str, challenge_id: str, code: str, digest: str) -> bool:
        return hmac.compare_digest(self.digest(conversation_id, challenge_id, code), digest)


def told(kind: str, value: str) -> str:
    """A destination as the customer may be told it: a phone's last four digits, an email's
    first letter and domain."""
    if kind == "phone":
        return re.sub(r"\D", "", value)[-4:]
    local, _, domain = value.partition("@")
    return f"{local[:1]}***@{domain}"

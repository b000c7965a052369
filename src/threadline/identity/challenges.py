"""Step-up verification: a one-time code on a verified channel, or a knowledge check.

A code is six digits sent through a :class:`Courier` to an identifier the
customer has already verified; the log keeps only a salted SHA-256 of it
(``verification.code_sent``), with its expiry and attempt limit. Wrong codes
and wrong answers are ``verification.failed`` events, so limits hold across
restarts. A passed step is an ``identity.verified`` link.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Final

from threadline.core.errors import DomainError, NotFound
from threadline.core.events import Actor, new_id, utcnow
from threadline.identity.identifiers import Identifier
from threadline.identity.service import Identity, LinkOutcome

CODE_TTL: Final = timedelta(minutes=10)
MAX_ATTEMPTS: Final = 5
MAX_KNOWLEDGE_FAILURES: Final = 3


class Courier(ABC):
    """Delivers a one-time code on a channel (SMS, email, the chat)."""

    @abstractmethod
    async def deliver(self, customer_id: str, to: Identifier, text: str) -> None:
        """Send ``text`` to ``to``; raise if it cannot be sent."""


class OutboxCourier(Courier):
    """Keeps what it would send (tests and the demo; no real SMS or email gateway)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Identifier, str]] = []

    async def deliver(self, customer_id: str, to: Identifier, text: str) -> None:
        self.sent.append((customer_id, to, text))


def _hash(code: str, salt: str) -> str:
    return salt + "$" + hashlib.sha256(f"{salt}:{code}".encode()).hexdigest()


class Verifications:
    """One-time codes and knowledge checks, recorded on the customer's stream."""

    def __init__(
        self,
        identity: Identity,
        courier: Courier,
        knowledge: Callable[[str], Awaitable[str | None]],
        *,
        sender: str,
        ttl: timedelta = CODE_TTL,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.identity = identity
        self.courier = courier
        #: The answer a knowledge check expects of a customer (their postcode, say).
        self.knowledge = knowledge
        #: Who the code comes from, as the message says (the business's brand).
        self.sender = sender
        self.ttl = ttl
        self.max_attempts = max_attempts

    async def send_code(self, customer_id: str, target: Identifier, *, actor: Actor) -> str:
        """Send a code proving ``target`` to a verified identifier; the challenge id."""
        links = await self.identity.identifiers(customer_id)
        channels = [x for x in links if x.verified and x.kind in {"phone", "email"}
                    and x.key != target.key]  # fmt: skip
        if not channels:
            raise DomainError(f"{customer_id} has no verified phone or email to send a code to")
        via = Identifier(channels[0].kind, channels[0].value)
        code = f"{secrets.randbelow(10**6):06d}"
        challenge_id = new_id()
        payload = {"challenge_id": challenge_id, "kind": target.kind, "value": target.value,
                   "via_kind": via.kind, "via_value": via.value,
                   "code_hash": _hash(code, secrets.token_hex(8)),
                   "expires_at": (utcnow() + self.ttl).isoformat(),
                   "max_attempts": self.max_attempts}  # fmt: skip
        await self.identity.record(customer_id, "verification.code_sent", payload, actor)
        await self.courier.deliver(customer_id, via, f"Your {self.sender} code is {code}")
        return challenge_id

    async def check_code(
        self, customer_id: str, challenge_id: str, code: str, *, actor: Actor
    ) -> LinkOutcome | None:
        """Verify the challenge's identifier if ``code`` is right; None when it is wrong."""
        sent = None
        failures = 0
        used = False
        for event in await self.identity.history(customer_id):
            p = event.payload
            if event.type == "verification.code_sent" and p["challenge_id"] == challenge_id:
                sent = p
            elif event.type == "verification.failed" and p.get("challenge_id") == challenge_id:
                failures += 1
            elif event.type == "identity.verified" and p["reason"] == f"code {challenge_id}":
                used = True
        if sent is None:
            raise NotFound(f"there is no code challenge {challenge_id}")
        if used:
            raise DomainError("this code was already used")
        if datetime.fromisoformat(sent["expires_at"]) <= utcnow():
            raise DomainError("the code has expired; ask for a new one")
        if failures >= sent["max_attempts"]:
            raise DomainError("too many wrong codes; ask for a new one")
        target = Identifier(sent["kind"], sent["value"])
        salt = sent["code_hash"].split("$", 1)[0]
        if not hmac.compare_digest(_hash(code.strip(), salt), sent["code_hash"]):
            await self._failed(customer_id, "otp", target, actor, challenge_id)
            return None
        return await self.identity.link(
            customer_id, target, verified=True, method="otp", linked_by=actor.id,
            reason=f"code {challenge_id}", actor=actor,
        )  # fmt: skip

    async def check_knowledge(
        self, customer_id: str, target: Identifier, postcode: str, *, actor: Actor
    ) -> LinkOutcome | None:
        """Verify ``target`` if ``postcode`` is the customer's; None when it is not."""
        history = await self.identity.history(customer_id)
        failures = sum(1 for e in history if e.type == "verification.failed"
                       and e.payload["method"] == "knowledge"
                       and e.payload["value"] == target.value)  # fmt: skip
        if failures >= MAX_KNOWLEDGE_FAILURES:
            raise DomainError("too many wrong answers; verify another way")
        expected = await self.knowledge(customer_id)
        if expected is None or not hmac.compare_digest(postcode.strip(), expected):
            await self._failed(customer_id, "knowledge", target, actor, None)
            return None
        return await self.identity.link(
            customer_id, target, verified=True, method="knowledge", linked_by=actor.id,
            reason="postcode", actor=actor,
        )  # fmt: skip

    async def _failed(
        self, customer_id: str, method: str, target: Identifier, actor: Actor, challenge: str | None
    ) -> None:
        payload = {"method": method, "challenge_id": challenge, "kind": target.kind,
                   "value": target.value}  # fmt: skip
        await self.identity.record(customer_id, "verification.failed", payload, actor)

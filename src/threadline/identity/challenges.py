"""Knowledge checks made by staff: the customer's answer against the business's record.

Wrong answers are ``verification.failed`` events on the customer's stream, so
the limit holds across restarts; a passed check is an ``identity.verified``
link. (One-time codes are asked for in conversations: :mod:`.code_courier`.)
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Final

from threadline.core.errors import DomainError
from threadline.core.events import Actor
from threadline.identity.identifiers import Identifier
from threadline.identity.service import Identity, LinkOutcome

MAX_KNOWLEDGE_FAILURES: Final = 3


class Verifications:
    """Knowledge checks, recorded on the customer's stream."""

    def __init__(
        self,
        identity: Identity,
        knowledge: Callable[[str], Awaitable[str | None]],
    ) -> None:
        self.identity = identity
        #: The answer a knowledge check expects of a customer (their postcode, say).
        self.knowledge = knowledge

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

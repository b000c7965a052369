"""Limits on guessing: wrong proofs stop proofs, per customer and per client.

One conversation may give the pack's ``knowledge_attempts`` wrong answers. A
guesser who opens conversation after conversation is stopped here:

* **per customer** — the wrong proofs about one customer, on any channel, are
  the ``verification.failed`` events on the customer's own stream (copied
  there from every conversation). Once the pack's ``customer_failures`` are
  reached within ``hours``, no proof by knowledge or code is checked for that
  customer until a person lifts the lockout (``verification.unlocked``, from
  the identity API or ``threadline customers unlock``).
* **per client** — the chat session or calling number that gives the answers.
  Its wrong answers about anyone are counted in this process, for ``hours``.
  (A new chat session is itself limited per network address, at
  ``POST /chat/session``.)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from threadline.business.model import Lockout
from threadline.core.events import EventCodec, utcnow
from threadline.core.ports import EventStore
from threadline.identity.fold import customer_stream

FAILED: Final = "verification.failed"
UNLOCKED: Final = "verification.unlocked"
#: Clients whose wrong answers are remembered, at most (the least recently seen go first).
CLIENTS: Final = 100_000


class Lockouts:
    """Whether a customer or a client may try another proof."""

    def __init__(
        self,
        store: EventStore,
        codec: EventCodec | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.codec = codec or EventCodec()
        self.clock = clock
        self._clients: dict[str, deque[datetime]] = {}

    async def customer_failures(self, customer_id: str, policy: Lockout) -> int:
        """Wrong proofs about ``customer_id`` that count now: within the window, and since a
        person last lifted the lockout."""
        since = self.clock() - timedelta(hours=policy.hours)
        failures = 0
        for record in await self.store.read(customer_stream(customer_id)):
            if record.type == UNLOCKED:
                failures = 0
            elif record.type == FAILED and self.codec.decode(record).occurred_at > since:
                failures += 1
        return failures

    async def customer_locked(self, customer_id: str, policy: Lockout) -> bool:
        return await self.customer_failures(customer_id, policy) >= policy.customer_failures

    def client_locked(self, client: str, policy: Lockout) -> bool:
        return len(self._recent(client, policy)) >= policy.client_failures

    def client_failed(self, client: str, policy: Lockout) -> None:
        """Count one wrong proof from ``client``."""
        self._recent(client, policy).append(self.clock())

    def _recent(self, client: str, policy: Lockout) -> deque[datetime]:
        cutoff = self.clock() - timedelta(hours=policy.hours)
        failures = self._clients.pop(client, None) or deque()
        while failures and failures[0] <= cutoff:
            failures.popleft()
        self._clients[client] = failures  # the latest used last: the first to go when full
        while len(self._clients) > CLIENTS:
            del self._clients[next(iter(self._clients))]
        return failures

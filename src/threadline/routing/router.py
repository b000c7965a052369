"""The router: a bus consumer that offers waiting conversations to human agents.

On start it folds the whole log into a :class:`RoutingState`, subscribes to
the bus, and catches up: offers that expired while it was down are declined
with reason ``expired`` and waiting conversations are offered. From then on
every routing event is folded and the state re-planned (level-triggered), and
a timer expires offers when their time runs out. Offers and expiries go
through :meth:`Conversations.record` with idempotency keys derived from the
events that caused them, so redelivery, a restart or a second router never
writes the same decision twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

import structlog

from threadline.core.errors import DomainError
from threadline.core.events import Actor, Event, EventRecord, Lineage, utcnow
from threadline.core.ports import Bus
from threadline.core.tasks import stop_tasks
from threadline.engine.conversations import Conversations
from threadline.routing.assignment import (
    EXPIRED,
    Action,
    OfferTo,
    next_deadline,
    plan,
    still_pending,
)
from threadline.routing.queues import ROUTING_TYPES, RoutingConfig, RoutingState, fold

log = structlog.get_logger("threadline.router")

ROUTER: Final = Actor("system", "router")
LINEAGE: Final = Lineage("threadline.router", "0.1.0")
OFFER_TTL: Final = 30.0
PAGE: Final = 1000


class Router:
    """Offers, expires and re-offers handoffs as events on the conversations.

    ``offer_ttl`` is how long an agent has to accept, in seconds. ``clock``
    says what time it is (UTC); tests may replace it.
    """

    def __init__(
        self,
        conversations: Conversations,
        config: RoutingConfig,
        *,
        offer_ttl: float = OFFER_TTL,
        group: str = "router",
        clock: Callable[[], datetime] = utcnow,
        retry_delay: float = 0.5,
    ) -> None:
        self._conversations = conversations
        self._codec = conversations.codec
        self.config = config
        self.group = group
        self._ttl = timedelta(seconds=offer_ttl)
        self._clock = clock
        self._retry_delay = retry_delay
        self._state = RoutingState()
        self._pending: dict[str, Action] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None
        self._running = False

    @property
    def state(self) -> RoutingState:
        """The routing state as folded so far."""
        return self._state

    async def start(self, bus: Bus) -> None:
        """Rebuild from the log, subscribe to ``bus``, catch up, and start the offer timer."""
        if self._running:
            raise RuntimeError("the router is already running")
        await self.rebuild()
        self._running = True
        await bus.subscribe(self.group, self.handle, types=ROUTING_TYPES)
        async with self._lock:
            await self._act()
        self._timer = asyncio.create_task(self._expire_offers(), name=f"{self.group}:offers")

    async def stop(self) -> None:
        """Stop the timer; events delivered afterwards are ignored (a restart replays them)."""
        self._running = False
        if self._timer is not None:
            await stop_tasks([self._timer])
            self._timer = None

    async def rebuild(self) -> None:
        """Fold the whole log into a fresh routing state."""
        store = self._conversations.store
        decode = self._codec.decode
        state = RoutingState()
        after = 0
        while page := await store.read_all(after, PAGE):
            state = fold(state, [decode(r) for r in page if r.type in ROUTING_TYPES])
            after = page[-1].position
        async with self._lock:
            self._state = state
            self._pending.clear()

    async def handle(self, record: EventRecord) -> None:
        """The bus handler: fold a routing event, then offer and expire what the state allows.

        A redelivered event folds to the same state and plans nothing new; an
        error reaches the bus, which delivers the event again.
        """
        if not self._running or record.type not in ROUTING_TYPES:
            return
        async with self._lock:
            self._state = fold(self._state, [self._codec.decode(record)])
            await self._act()

    async def _act(self) -> None:
        self._pending = still_pending(self._state, self._pending)
        for action in plan(self._state, self.config, self._clock(), self._pending):
            await self._execute(action)
        self._wake.set()

    async def _execute(self, action: Action) -> None:
        self._pending[action.conversation_id] = action
        try:
            result = await self._conversations.record(action.conversation_id, [self._event(action)])
        except DomainError as exc:
            # The conversation moved on (accepted, resolved, offered elsewhere); the event
            # that says so is on its way. Stay pending so the attempt is not tried again.
            log.info("router action refused", key=action.key, reason=str(exc))
            return
        except BaseException:
            del self._pending[action.conversation_id]
            raise
        log.info(
            "offered" if isinstance(action, OfferTo) else "offer expired",
            conversation_id=action.conversation_id,
            agent_id=action.agent_id,
            duplicate=result.duplicate,
        )

    def _event(self, action: Action) -> Event:
        now = self._clock()
        if isinstance(action, OfferTo):
            type_ = "handoff.offered"
            payload = {
                "offer_id": action.offer_id,
                "agent_id": action.agent_id,
                "queue": action.queue,
                "expires_at": (now + self._ttl).isoformat(),
            }
        else:
            type_ = "handoff.declined"
            payload = {"offer_id": action.offer_id, "agent_id": action.agent_id, "reason": EXPIRED}
        return Event(
            conversation_id=action.conversation_id,
            type=type_,
            payload=payload,
            actor=ROUTER,
            occurred_at=now,
            customer_id=action.customer_id,
            correlation_id=action.correlation_id,
            causation_id=action.cause,
            idempotency_key=action.key,
            lineage=LINEAGE,
        )

    async def _expire_offers(self) -> None:
        while True:
            deadline = next_deadline(self._state, self._pending)
            timeout = None
            if deadline is not None:
                timeout = max(0.0, (deadline - self._clock()).total_seconds())
            self._wake.clear()
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that races with the wake-up.
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
                continue
            except TimeoutError:
                pass
            try:
                async with self._lock:
                    await self._act()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("expiring offers failed; retrying", error=repr(exc))
                await asyncio.sleep(self._retry_delay)

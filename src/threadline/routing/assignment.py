"""What the router should do now: a pure function of the routing state and the clock.

:func:`plan` walks waiting conversations oldest first and returns the offers
to make and the offers to expire. Each action's idempotency key is derived
from the event that caused it, so a redelivered event or a restarted router
proposes the same key and the log keeps one offer.

``pending`` holds actions the router has recorded but not yet seen come back
through the bus; :func:`plan` counts them so nothing is proposed twice meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from threadline.routing.queues import (
    RoutingConfig,
    RoutingState,
    WaitingConversation,
    busy_counts,
    choose_agent,
    queue_order,
)

EXPIRED: Final = "expired"


@dataclass(frozen=True, slots=True)
class OfferTo:
    """Offer the conversation to ``agent_id``; ``cause`` is the routing attempt's event."""

    conversation_id: str
    agent_id: str
    queue: str
    cause: str
    correlation_id: str = ""
    customer_id: str | None = None

    @property
    def key(self) -> str:
        return f"router:offer:{self.cause}"

    @property
    def offer_id(self) -> str:
        # The same attempt always names the same offer, across redeliveries and restarts.
        return f"offer-{self.cause}"


@dataclass(frozen=True, slots=True)
class ExpireOffer:
    """Decline an open offer whose time ran out; ``cause`` is its ``handoff.offered``."""

    conversation_id: str
    offer_id: str
    agent_id: str
    cause: str
    correlation_id: str = ""
    customer_id: str | None = None

    @property
    def key(self) -> str:
        return f"router:expire:{self.cause}"


Action = OfferTo | ExpireOffer


def _expiry(waiting: WaitingConversation) -> ExpireOffer | None:
    offer = waiting.offer
    if offer is None:
        return None
    return ExpireOffer(
        waiting.conversation_id, offer.offer_id, offer.agent_id, offer.event_id,
        waiting.correlation_id, waiting.customer_id,
    )  # fmt: skip


def _is_current(waiting: WaitingConversation | None, action: Action) -> bool:
    if waiting is None:
        return False
    if isinstance(action, OfferTo):
        return waiting.offer is None and waiting.attempt == action.cause
    return waiting.offer is not None and waiting.offer.event_id == action.cause


def still_pending(state: RoutingState, pending: Mapping[str, Action]) -> dict[str, Action]:
    """The pending actions whose effect the state does not show yet."""
    return {
        cid: action
        for cid, action in pending.items()
        if _is_current(state.waiting.get(cid), action)
    }


def plan(
    state: RoutingState,
    config: RoutingConfig,
    now: datetime,
    pending: Mapping[str, Action] | None = None,
) -> list[Action]:
    """Offers to expire and offers to make, oldest waiting conversation first."""
    pending = still_pending(state, pending or {})
    busy = busy_counts(state)
    for action in pending.values():
        if isinstance(action, OfferTo):
            busy[action.agent_id] = busy.get(action.agent_id, 0) + 1
    actions: list[Action] = []
    for waiting in queue_order(state):
        cid = waiting.conversation_id
        if cid in pending:
            continue
        expiry = _expiry(waiting)
        if expiry is not None:
            assert waiting.offer is not None
            if waiting.offer.expires_at <= now:
                actions.append(expiry)
            continue
        agent_id = choose_agent(state, config, waiting, busy)
        if agent_id is not None:
            busy[agent_id] = busy.get(agent_id, 0) + 1
            actions.append(
                OfferTo(
                    cid,
                    agent_id,
                    waiting.queue,
                    waiting.attempt,
                    waiting.correlation_id,
                    waiting.customer_id,
                )
            )
    return actions


def next_deadline(
    state: RoutingState, pending: Mapping[str, Action] | None = None
) -> datetime | None:
    """When the earliest open offer expires, not counting expiries already in flight."""
    in_flight = still_pending(state, pending or {})
    deadlines = [
        w.offer.expires_at
        for w in state.waiting.values()
        if w.offer is not None and w.conversation_id not in in_flight
    ]
    return min(deadlines, default=None)

"""Routing and handoff: queues with skills, presence and capacity; offers, expiries and
re-offers as events; and the packet a human sees when a conversation reaches them.

Importing this package registers the routing event types on the catalogue.
"""

from threadline.routing.assignment import Action, ExpireOffer, OfferTo, next_deadline, plan
from threadline.routing.packet import HandoffPacket, build_packet
from threadline.routing.presence import AgentPresence
from threadline.routing.queues import (
    AVAILABLE,
    AWAY,
    OFFLINE,
    ROUTING_TYPES,
    AgentSpec,
    AgentState,
    Offer,
    QueueSpec,
    RoutingConfig,
    RoutingState,
    WaitingConversation,
    agent_stream,
    choose_agent,
    eligible_agents,
    fold,
    queue_order,
)
from threadline.routing.router import Router

__all__ = [
    "AVAILABLE",
    "AWAY",
    "OFFLINE",
    "ROUTING_TYPES",
    "Action",
    "AgentPresence",
    "AgentSpec",
    "AgentState",
    "ExpireOffer",
    "HandoffPacket",
    "Offer",
    "OfferTo",
    "QueueSpec",
    "Router",
    "RoutingConfig",
    "RoutingState",
    "WaitingConversation",
    "agent_stream",
    "build_packet",
    "choose_agent",
    "eligible_agents",
    "fold",
    "next_deadline",
    "plan",
    "queue_order",
]

"""Routing configuration derived from a business's queues and people."""

from __future__ import annotations

from threadline.business import Business
from threadline.routing.queues import AgentSpec, QueueSpec, RoutingConfig


def routing_config(business: Business, capacity: int = 2) -> RoutingConfig:
    """Every queue with its skills; every agent on the queues they work, with those skills."""
    queues = tuple(QueueSpec(q.id, frozenset(q.skills)) for q in business.queues)
    agents = []
    for person in business.agents:
        theirs = [q for q in business.queues if person.id in q.agent_ids]
        agents.append(
            AgentSpec(
                person.id,
                person.name,
                frozenset(q.id for q in theirs),
                frozenset(skill for q in theirs for skill in q.skills),
                capacity,
                f"desk:{person.id}",
            )
        )
    supervisor = business.supervisor
    agents.append(AgentSpec(supervisor.id, supervisor.name, frozenset(), frozenset(), 0,
                            f"desk:{supervisor.id}"))  # fmt: skip
    return RoutingConfig(queues, tuple(agents))

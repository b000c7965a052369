"""The routing configuration a business pack describes: its queues and the people on them."""

from __future__ import annotations

from threadline.business import Business
from threadline.routing.queues import AgentSpec, QueueSpec, RoutingConfig


def routing_config(business: Business) -> RoutingConfig:
    """Every queue with its skills; every agent on the queues they work, with those skills,
    and each supervisor (who takes no offers, capacity 0)."""
    queues = tuple(QueueSpec(q.id, frozenset(q.skills)) for q in business.queues)
    by_id = {q.id: q for q in business.queues}
    agents = []
    for person in business.people("agent"):
        theirs = [by_id[q] for q in person.queues if q in by_id]
        agents.append(
            AgentSpec(
                person.id,
                person.name,
                frozenset(q.id for q in theirs),
                frozenset(skill for q in theirs for skill in q.skills),
                person.capacity,
                f"desk:{person.id}",
            )
        )
    for person in business.people("supervisor"):
        agents.append(AgentSpec(person.id, person.name, frozenset(), frozenset(), 0,
                                f"desk:{person.id}"))  # fmt: skip
    return RoutingConfig(queues, tuple(agents))

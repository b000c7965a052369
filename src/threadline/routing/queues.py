"""Queues, human agents and the routing state: a pure fold of the log.

The configuration (:class:`QueueSpec`, :class:`AgentSpec`) says who works which
queue with which skills. Everything that changes (presence, capacity, load,
waiting conversations, open offers, sensitive calls waiting for a person's
approval) is a :class:`RoutingState` folded from conversation events and agents'
own streams, so the router can be rebuilt by replaying the log. Choosing an
agent is a pure function of the two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

from threadline.core.errors import ConfigurationError
from threadline.core.events import Event

AVAILABLE: Final = "available"
AWAY: Final = "away"
OFFLINE: Final = "offline"
AGENT_STREAM_PREFIX: Final = "agent:"
_NEVER: Final = datetime.min.replace(tzinfo=UTC)


def agent_stream(agent_id: str) -> str:
    """The conversation id of an agent's own stream: ``agent:<agent_id>``."""
    return f"{AGENT_STREAM_PREFIX}{agent_id}"


def _names(value: Iterable[str], what: str) -> frozenset[str]:
    if isinstance(value, str):
        raise ConfigurationError(f"{what} must be a collection of names, not the string {value!r}")
    return frozenset(value)


# -- configuration -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A queue of conversations waiting for a human, and the skills it serves.

    A handoff that names no skills needs the queue's skills.
    """

    name: str
    skills: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "skills", _names(self.skills, "QueueSpec.skills"))


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """A human agent: the queues they work, their skills, how many conversations at once,
    and where the desk reaches them."""

    id: str
    name: str
    queues: frozenset[str] = frozenset()
    skills: frozenset[str] = frozenset()
    capacity: int = 1
    address: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "queues", _names(self.queues, "AgentSpec.queues"))
        object.__setattr__(self, "skills", _names(self.skills, "AgentSpec.skills"))
        if self.capacity < 0:
            raise ConfigurationError(f"agent {self.id}: capacity must not be negative")


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    """The queues and the agents who work them."""

    queues: tuple[QueueSpec, ...]
    agents: tuple[AgentSpec, ...]
    _queue_by_name: dict[str, QueueSpec] = field(init=False, repr=False, compare=False)
    _agent_by_id: dict[str, AgentSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        queues = {q.name: q for q in self.queues}
        agents = {a.id: a for a in self.agents}
        if len(queues) != len(self.queues) or len(agents) != len(self.agents):
            raise ConfigurationError("queue names and agent ids must be unique")
        for agent in self.agents:
            unknown = agent.queues - queues.keys()
            if unknown:
                raise ConfigurationError(f"agent {agent.id} works unknown queues {sorted(unknown)}")
        object.__setattr__(self, "_queue_by_name", queues)
        object.__setattr__(self, "_agent_by_id", agents)

    def queue(self, name: str) -> QueueSpec | None:
        return self._queue_by_name.get(name)

    def agent(self, agent_id: str) -> AgentSpec | None:
        return self._agent_by_id.get(agent_id)

    def members(self, queue: str) -> list[AgentSpec]:
        """The agents who work ``queue``."""
        return [a for a in self.agents if queue in a.queues]


# -- state ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentState:
    """What the log says about one agent now."""

    agent_id: str
    presence: str = OFFLINE
    #: Set by ``agent.capacity_changed``; None means as configured.
    capacity: int | None = None
    conversations: frozenset[str] = frozenset()
    #: When the agent last accepted or finished a conversation; None if never.
    last_work_at: datetime | None = None

    @property
    def load(self) -> int:
        return len(self.conversations)


@dataclass(frozen=True, slots=True)
class Offer:
    """The open offer of a waiting conversation; ``event_id`` is the ``handoff.offered``."""

    offer_id: str
    agent_id: str
    expires_at: datetime
    event_id: str


@dataclass(frozen=True, slots=True)
class WaitingConversation:
    """A conversation awaiting a human in ``queue``.

    ``attempt`` is the id of the event that opened the current routing attempt
    (the ``handoff.requested``, or the ``handoff.declined`` of the last offer);
    the router derives the idempotency key of its offer from it. ``excluded``
    holds the agents who declined or let an offer expire since the request,
    and on a transfer the agent who passed it on.
    """

    conversation_id: str
    queue: str
    skills: frozenset[str]
    requested_at: datetime
    requested_position: int
    attempt: str
    excluded: frozenset[str] = frozenset()
    offer: Offer | None = None
    correlation_id: str = ""
    customer_id: str | None = None

    @property
    def fifo_key(self) -> tuple[datetime, int, str]:
        return (self.requested_at, self.requested_position, self.conversation_id)


#: An approval's key in the routing state: its conversation and its id there.
ApprovalKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class PendingApproval:
    """A sensitive call waiting on a conversation for an agent of ``queue`` (or a
    supervisor) to approve or deny it.

    Only what routes it is kept: what the call would do (its arguments, the agent's
    reason) is the customer's data, read from the conversation when it is shown.
    """

    approval_id: str
    conversation_id: str
    queue: str
    tool: str
    requested_at: datetime
    requested_position: int
    customer_id: str | None = None

    @property
    def key(self) -> ApprovalKey:
        return (self.conversation_id, self.approval_id)


@dataclass(frozen=True, slots=True)
class RoutingState:
    """Agents, waiting conversations, assignments and pending approvals, folded from the log.

    ``seen`` is the last folded seq of each stream that carried a routing
    event, so folding a redelivered event changes nothing.
    """

    agents: Mapping[str, AgentState] = field(default_factory=dict)
    waiting: Mapping[str, WaitingConversation] = field(default_factory=dict)
    assignees: Mapping[str, str] = field(default_factory=dict)
    seen: Mapping[str, int] = field(default_factory=dict)
    approvals: Mapping[ApprovalKey, PendingApproval] = field(default_factory=dict)

    def agent(self, agent_id: str) -> AgentState:
        return self.agents.get(agent_id) or AgentState(agent_id)


# -- fold ----------------------------------------------------------------------------


class _Draft:
    """Mutable working copy used inside one fold call only."""

    __slots__ = ("agents", "approvals", "assignees", "seen", "waiting")

    def __init__(self, state: RoutingState) -> None:
        self.agents = dict(state.agents)
        self.waiting = dict(state.waiting)
        self.assignees = dict(state.assignees)
        self.seen = dict(state.seen)
        self.approvals = dict(state.approvals)

    def agent(self, agent_id: str) -> AgentState:
        return self.agents.get(agent_id) or AgentState(agent_id)

    def release(self, conversation_id: str, at: datetime) -> str | None:
        """The conversation's assignee, who no longer holds it."""
        agent_id = self.assignees.pop(conversation_id, None)
        if agent_id is not None:
            agent = self.agent(agent_id)
            self.agents[agent_id] = replace(
                agent, conversations=agent.conversations - {conversation_id}, last_work_at=at
            )
        return agent_id

    def freeze(self) -> RoutingState:
        return RoutingState(self.agents, self.waiting, self.assignees, self.seen, self.approvals)


Apply = Callable[[_Draft, Event], None]
_APPLY: dict[str, Apply] = {}


def _applies(*types: str) -> Callable[[Apply], Apply]:
    def decorate(fn: Apply) -> Apply:
        for type_ in types:
            _APPLY[type_] = fn
        return fn

    return decorate


def moment(value: Any) -> datetime:
    """A payload's time (ISO text once stored) as an aware datetime."""
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@_applies("agent.presence_changed")
def _presence(d: _Draft, e: Event) -> None:
    agent = d.agent(e.payload["agent_id"])
    d.agents[agent.agent_id] = replace(agent, presence=e.payload["presence"])


@_applies("agent.capacity_changed")
def _capacity(d: _Draft, e: Event) -> None:
    agent = d.agent(e.payload["agent_id"])
    d.agents[agent.agent_id] = replace(agent, capacity=e.payload["capacity"])


@_applies("handoff.requested")
def _requested(d: _Draft, e: Event) -> None:
    # While with a human this is a transfer: the agent who held it is freed and not offered it.
    previous = d.release(e.conversation_id, e.occurred_at)
    d.waiting[e.conversation_id] = WaitingConversation(
        conversation_id=e.conversation_id,
        queue=e.payload["queue"],
        skills=frozenset(e.payload.get("skills") or ()),
        requested_at=e.occurred_at,
        requested_position=e.position,
        attempt=e.event_id,
        excluded=frozenset({previous}) if previous else frozenset(),
        correlation_id=e.correlation_id,
        customer_id=e.customer_id,
    )


@_applies("handoff.offered")
def _offered(d: _Draft, e: Event) -> None:
    waiting = d.waiting.get(e.conversation_id)
    if waiting is not None:
        p = e.payload
        offer = Offer(p["offer_id"], p["agent_id"], moment(p["expires_at"]), e.event_id)
        d.waiting[e.conversation_id] = replace(waiting, offer=offer)


@_applies("handoff.declined")
def _declined(d: _Draft, e: Event) -> None:
    waiting = d.waiting.get(e.conversation_id)
    if waiting is not None:
        d.waiting[e.conversation_id] = replace(
            waiting,
            offer=None,
            excluded=waiting.excluded | {e.payload["agent_id"]},
            attempt=e.event_id,
        )


@_applies("handoff.accepted")
def _accepted(d: _Draft, e: Event) -> None:
    d.waiting.pop(e.conversation_id, None)
    agent = d.agent(e.payload["agent_id"])
    d.assignees[e.conversation_id] = agent.agent_id
    d.agents[agent.agent_id] = replace(
        agent, conversations=agent.conversations | {e.conversation_id}, last_work_at=e.occurred_at
    )


@_applies("handoff.returned", "conversation.resolved", "conversation.abandoned")
def _finished(d: _Draft, e: Event) -> None:
    d.waiting.pop(e.conversation_id, None)
    d.release(e.conversation_id, e.occurred_at)


@_applies("approval.requested")
def _approval_requested(d: _Draft, e: Event) -> None:
    p = e.payload
    approval = PendingApproval(
        approval_id=p["approval_id"],
        conversation_id=e.conversation_id,
        queue=p["queue"],
        tool=p["tool"],
        requested_at=e.occurred_at,
        requested_position=e.position,
        customer_id=e.customer_id,
    )
    d.approvals[approval.key] = approval


@_applies("approval.granted", "approval.denied")
def _approval_decided(d: _Draft, e: Event) -> None:
    d.approvals.pop((e.conversation_id, e.payload["approval_id"]), None)


#: The event types that change routing; the router ignores every other type.
ROUTING_TYPES: Final = frozenset(_APPLY)


def fold(state: RoutingState, events: Iterable[Event]) -> RoutingState:
    """The routing state after ``events``; other types and already-seen seqs change nothing."""
    draft: _Draft | None = None
    for event in events:
        apply = _APPLY.get(event.type)
        if apply is None:
            continue
        if draft is None:
            draft = _Draft(state)
        if event.seq:
            if event.seq <= draft.seen.get(event.conversation_id, 0):
                continue
            draft.seen[event.conversation_id] = event.seq
        apply(draft, event)
    return state if draft is None else draft.freeze()


# -- decisions -----------------------------------------------------------------------


def queue_order(state: RoutingState, queue: str | None = None) -> list[WaitingConversation]:
    """Waiting conversations, oldest request first; of one queue, or of all."""
    waiting = (w for w in state.waiting.values() if queue is None or w.queue == queue)
    return sorted(waiting, key=lambda w: w.fifo_key)


def required_skills(config: RoutingConfig, waiting: WaitingConversation) -> frozenset[str]:
    """The skills the handoff asked for, or the queue's when it named none."""
    if waiting.skills:
        return waiting.skills
    queue = config.queue(waiting.queue)
    return queue.skills if queue is not None else frozenset()


def busy_counts(state: RoutingState) -> dict[str, int]:
    """Per agent: conversations held plus offers open; what capacity is measured against."""
    counts = {agent_id: agent.load for agent_id, agent in state.agents.items()}
    for waiting in state.waiting.values():
        if waiting.offer is not None:
            counts[waiting.offer.agent_id] = counts.get(waiting.offer.agent_id, 0) + 1
    return counts


def capacity_of(state: RoutingState, spec: AgentSpec) -> int:
    override = state.agent(spec.id).capacity
    return spec.capacity if override is None else override


def _idle_order(agent: AgentState) -> tuple[bool, datetime, str]:
    # Never worked sorts first, then the longest since accepting or finishing; ties by id.
    return (agent.last_work_at is not None, agent.last_work_at or _NEVER, agent.agent_id)


def eligible_agents(
    state: RoutingState,
    config: RoutingConfig,
    waiting: WaitingConversation,
    busy: Mapping[str, int] | None = None,
) -> list[str]:
    """Agents who may be offered ``waiting``, longest idle first.

    Eligible: available, a member of the queue, holding the required skills,
    under capacity (``busy`` counts held conversations and open offers), and
    not excluded from this request.
    """
    counts = busy_counts(state) if busy is None else busy
    needed = required_skills(config, waiting)
    candidates = [
        state.agent(spec.id)
        for spec in config.members(waiting.queue)
        if spec.id not in waiting.excluded
        and state.agent(spec.id).presence == AVAILABLE
        and needed <= spec.skills
        and counts.get(spec.id, 0) < capacity_of(state, spec)
    ]
    return [agent.agent_id for agent in sorted(candidates, key=_idle_order)]


def choose_agent(
    state: RoutingState,
    config: RoutingConfig,
    waiting: WaitingConversation,
    busy: Mapping[str, int] | None = None,
) -> str | None:
    """The agent to offer ``waiting`` to now, or None if nobody is eligible."""
    eligible = eligible_agents(state, config, waiting, busy)
    return eligible[0] if eligible else None

"""An agent's worklist: which events of the log concern which desk, as pure functions.

The routing state (:mod:`threadline.routing.queues`) says, at any position of
the log, which conversations wait in which queue, which offer is open to whom,
who holds what and which sensitive calls wait for whose approval. :func:`changes`
compares the state before and after one event and says what that event did to
worklists (an offer made or closed, an approval requested or decided, a held
conversation changed, a queue's count moved, an agent's presence);
:func:`frame_for` turns that into the one frame a given :class:`Viewer` gets,
or None when the event does not concern them. :func:`rewind` puts a present
state back to an earlier position, so a reconnecting desk can replay the
events it missed with the same functions as a live one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, TypeVar

from threadline.core.events import Event
from threadline.routing.packet import HandoffPacket
from threadline.routing.queues import (
    AGENT_STREAM_PREFIX,
    ROUTING_TYPES,
    AgentState,
    ApprovalKey,
    Offer,
    PendingApproval,
    RoutingState,
    WaitingConversation,
)

EXPIRED: Final = "expired"
PREVIEW_CHARS: Final = 120
SUMMARY_LINES: Final = 5
#: A customer's proof: an offer open for them shows it.
PROOF: Final = "identity.linked"
#: The conversation's status once a held conversation's event is folded, where it says.
STATUS_AFTER: Final = {
    "handoff.accepted": "with_human",
    "handoff.requested": "awaiting_human",
    "handoff.returned": "bot_active",
    "conversation.resolved": "resolved",
    "conversation.abandoned": "abandoned",
    "conversation.waiting": "waiting_on_customer",
    "conversation.reopened": "bot_active",
}
V = TypeVar("V")
_MESSAGES: Final = frozenset({"message.received", "message.sent", "utterance.transcribed"})
_APPROVALS: Final = frozenset({"approval.requested", "approval.granted", "approval.denied"})


@dataclass(frozen=True, slots=True)
class Viewer:
    """Whose worklist a stream shows: an agent and their queues.

    An ``overseer`` (a supervisor on their own stream) sees every open offer and
    every approval waiting.
    """

    agent_id: str
    queues: frozenset[str] = frozenset()
    overseer: bool = False

    def sees_offer_of(self, agent_id: str) -> bool:
        return self.overseer or agent_id == self.agent_id

    def decides_in(self, queue: str) -> bool:
        """Whether approvals waiting in ``queue`` are theirs to decide."""
        return self.overseer or queue in self.queues


@dataclass(frozen=True, slots=True)
class ClosedOffer:
    """An offer that is no longer open; ``why`` is accepted, declined, expired or withdrawn."""

    offer_id: str
    agent_id: str
    why: str


@dataclass(frozen=True, slots=True)
class DecidedApproval:
    """An approval that no longer waits: ``decision`` is granted or denied, by ``agent_id``."""

    approval_id: str
    queue: str
    decision: str
    agent_id: str


@dataclass(frozen=True, slots=True)
class WorkChange:
    """What one event did to worklists, for everyone; :func:`frame_for` picks per viewer."""

    position: int
    conversation_id: str
    event_type: str
    seq: int
    at: str
    offered: Offer | None = None
    offered_queue: str | None = None
    closed: ClosedOffer | None = None
    holder_before: str | None = None
    holder_after: str | None = None
    #: Queues whose count of awaiting conversations this event changed, with the new count.
    queues: Mapping[str, int] = field(default_factory=dict)
    presence: tuple[str, str] | None = None
    preview: str | None = None
    #: The customer proved who they are while the conversation was offered to someone.
    proved: Offer | None = None
    #: A sensitive call that now waits for a person's approval.
    approval: PendingApproval | None = None
    #: An approval that no longer waits.
    decided: DecidedApproval | None = None


def agent_of_stream(conversation_id: str) -> str | None:
    """The agent whose own stream ``conversation_id`` is, or None for a conversation."""
    if conversation_id.startswith(AGENT_STREAM_PREFIX):
        return conversation_id[len(AGENT_STREAM_PREFIX) :]
    return None


def needs_decoding(state: RoutingState, type_: str, conversation_id: str) -> bool:
    """Whether an event can change any worklist: a routing event, any on a held conversation,
    or a proof on a waiting one (its offer shows who the customer is).

    Everything else (the bulk of a busy log) is skipped without decoding its payload.
    """
    return (type_ in ROUTING_TYPES or conversation_id in state.assignees
            or (type_ == PROOF and conversation_id in state.waiting))  # fmt: skip


def awaiting(state: RoutingState, queues: Iterable[str] | None = None) -> dict[str, int]:
    """How many conversations await a human in each queue (of ``queues``, or every one seen)."""
    counts = Counter(w.queue for w in state.waiting.values())
    names = sorted(counts) if queues is None else sorted(queues)
    return {name: counts.get(name, 0) for name in names}


def _offer(waiting: WaitingConversation | None) -> Offer | None:
    return waiting.offer if waiting is not None else None


def _why_closed(event: Event) -> str:
    if event.type == "handoff.accepted":
        return "accepted"
    if event.type == "handoff.declined":
        return EXPIRED if event.payload.get("reason") == EXPIRED else "declined"
    return "withdrawn"


def _preview(event: Event) -> str | None:
    if event.type not in _MESSAGES:
        return None
    text = str(event.payload.get("text") or "")
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def _presence(before: RoutingState, after: RoutingState, event: Event) -> tuple[str, str] | None:
    agent_id = agent_of_stream(event.conversation_id)
    if agent_id is None:
        return None
    now = after.agent(agent_id).presence
    return (agent_id, now) if now != before.agent(agent_id).presence else None


def _approval_moves(
    before: RoutingState, after: RoutingState, event: Event
) -> tuple[PendingApproval | None, DecidedApproval | None]:
    if event.type not in _APPROVALS:
        return None, None
    key: ApprovalKey = (event.conversation_id, str(event.payload["approval_id"]))
    was, now = before.approvals.get(key), after.approvals.get(key)
    if was is None and now is not None:
        return now, None
    if was is not None and now is None:
        decision = "granted" if event.type == "approval.granted" else "denied"
        return None, DecidedApproval(was.approval_id, was.queue, decision,
                                     str(event.payload["agent_id"]))  # fmt: skip
    return None, None


def _queue_moves(before: RoutingState, after: RoutingState, cid: str) -> dict[str, int]:
    was, now = before.waiting.get(cid), after.waiting.get(cid)
    was_queue = was.queue if was is not None else None
    now_queue = now.queue if now is not None else None
    if was_queue == now_queue:
        return {}
    moved = {q for q in (was_queue, now_queue) if q is not None}
    counts = Counter(w.queue for w in after.waiting.values() if w.queue in moved)
    return {q: counts.get(q, 0) for q in sorted(moved)}


def changes(before: RoutingState, after: RoutingState, event: Event) -> WorkChange | None:
    """What ``event`` (folded from ``before`` into ``after``) did to worklists; None if nothing."""
    cid = event.conversation_id
    was, now = _offer(before.waiting.get(cid)), _offer(after.waiting.get(cid))
    offered = now if now is not None and (was is None or was.offer_id != now.offer_id) else None
    closed = None
    if was is not None and (now is None or now.offer_id != was.offer_id):
        closed = ClosedOffer(was.offer_id, was.agent_id, _why_closed(event))
    holder_before, holder_after = before.assignees.get(cid), after.assignees.get(cid)
    queues = _queue_moves(before, after, cid)
    presence = _presence(before, after, event)
    proved = now if event.type == PROOF and event.payload["verified"] and not offered else None
    approval, decided = _approval_moves(before, after, event)
    if not (offered or closed or holder_before or holder_after or queues or presence or proved
            or approval or decided):  # fmt: skip
        return None
    waiting = after.waiting.get(cid)
    return WorkChange(
        position=event.position,
        conversation_id=cid,
        event_type=event.type,
        seq=event.seq,
        at=event.occurred_at.isoformat(),
        offered=offered,
        offered_queue=waiting.queue if (offered or proved) is not None and waiting else None,
        closed=closed,
        holder_before=holder_before,
        holder_after=holder_after,
        queues=queues,
        presence=presence,
        preview=_preview(event) if holder_before or holder_after else None,
        proved=proved,
        approval=approval,
        decided=decided,
    )


def concerns(change: WorkChange, viewer: Viewer) -> bool:
    """Whether ``viewer`` gets a frame for ``change``."""
    return frame_for(change, viewer) is not None


def frame_for(change: WorkChange, viewer: Viewer) -> dict[str, Any] | None:
    """The one frame ``viewer`` gets for ``change``, or None if it does not concern them.

    The frame's ``type`` names the most important thing that happened to them:
    ``handoff.offered``, ``offer.accepted|declined|expired|withdrawn``,
    ``approval.requested`` (a call waits in one of their queues),
    ``approval.decided`` (it waits no more: ``decision`` granted or denied, by
    ``agent_id``), ``conversation.changed``, ``queue.changed`` or
    ``presence.changed``; the other fields say the rest (``held``: whether the
    conversation is theirs after the event; ``queues``: new counts of their
    queues that moved).
    """
    frame: dict[str, Any] = {"cursor": change.position}
    kind: str | None = None
    offered, closed = change.offered, change.closed
    if offered is not None and viewer.sees_offer_of(offered.agent_id):
        kind = "handoff.offered"
        frame.update(offer_out(change.conversation_id, offered, change.offered_queue))
    elif closed is not None and viewer.sees_offer_of(closed.agent_id):
        kind = f"offer.{closed.why}"
        frame.update(offer_id=closed.offer_id, agent_id=closed.agent_id)
    elif change.proved is not None and viewer.sees_offer_of(change.proved.agent_id):
        kind = "offer.updated"
        frame.update(offer_out(change.conversation_id, change.proved, change.offered_queue))
    approval, decided = change.approval, change.decided
    if approval is not None and viewer.decides_in(approval.queue):
        kind = kind or "approval.requested"
        frame.update(approval_out(approval))
    elif decided is not None and viewer.decides_in(decided.queue):
        kind = kind or "approval.decided"
        frame.update(approval_id=decided.approval_id, queue=decided.queue,
                     decision=decided.decision, agent_id=decided.agent_id)  # fmt: skip
    if viewer.agent_id in (change.holder_before, change.holder_after):
        kind = kind or "conversation.changed"
        frame["held"] = change.holder_after == viewer.agent_id
        frame["event"] = change.event_type
        frame["seq"] = change.seq
        frame["at"] = change.at
        status = STATUS_AFTER.get(change.event_type)
        if status is not None:
            frame["status"] = status
        if change.preview is not None:
            frame["preview"] = change.preview
    queues = {q: n for q, n in change.queues.items() if viewer.overseer or q in viewer.queues}
    if queues:
        kind = kind or "queue.changed"
        frame["queues"] = queues
    if change.presence is not None and change.presence[0] == viewer.agent_id:
        kind = kind or "presence.changed"
        frame["presence"] = change.presence[1]
    if kind is None:
        return None
    frame["type"] = kind
    if agent_of_stream(change.conversation_id) is None:
        frame["conversation_id"] = change.conversation_id
    return frame


def offer_out(conversation_id: str, offer: Offer, queue: str | None) -> dict[str, Any]:
    """An open offer as the desk shows it (before the reason and packet are added)."""
    return {
        "conversation_id": conversation_id,
        "offer_id": offer.offer_id,
        "agent_id": offer.agent_id,
        "queue": queue,
        "expires_at": offer.expires_at.isoformat(),
    }


def open_offers(state: RoutingState, viewer: Viewer) -> list[dict[str, Any]]:
    """The offers open to ``viewer`` (every open offer for an overseer), oldest request first."""
    waiting = sorted(state.waiting.values(), key=lambda w: w.fifo_key)
    return [
        offer_out(w.conversation_id, w.offer, w.queue)
        for w in waiting
        if w.offer is not None and viewer.sees_offer_of(w.offer.agent_id)
    ]


def approval_out(approval: PendingApproval) -> dict[str, Any]:
    """A waiting approval as the desk shows it (before what the call would do is added)."""
    return {
        "conversation_id": approval.conversation_id,
        "approval_id": approval.approval_id,
        "queue": approval.queue,
        "tool": approval.tool,
        "requested_at": approval.requested_at.isoformat(),
        "customer_id": approval.customer_id,
    }


def waiting_approvals(state: RoutingState, viewer: Viewer) -> list[PendingApproval]:
    """The approvals ``viewer`` may decide (every one for an overseer), oldest first."""
    pending = (a for a in state.approvals.values() if viewer.decides_in(a.queue))
    return sorted(pending, key=lambda a: (a.requested_position, a.key))


def held(state: RoutingState, viewer: Viewer) -> list[str]:
    """The conversations ``viewer`` holds, by id."""
    return sorted(cid for cid, agent_id in state.assignees.items() if agent_id == viewer.agent_id)


def _put_back(now: dict[str, V], then: Mapping[str, V], key: str) -> None:
    now.pop(key, None)
    if key in then:
        now[key] = then[key]


def rewind(present: RoutingState, earlier: Mapping[str, RoutingState]) -> RoutingState:
    """``present`` with some streams put back to how they were at an earlier position.

    ``earlier`` maps a stream to the routing fold of that stream's own events
    up to that position. Each conversation's routing moves with its own events
    only, and an agent's presence with their own stream, so when ``earlier``
    holds every stream that had a routing event since, the result is the
    routing state as of that position.
    """
    waiting = dict(present.waiting)
    assignees = dict(present.assignees)
    seen = dict(present.seen)
    agents: dict[str, AgentState] = dict(present.agents)
    approvals = {key: a for key, a in present.approvals.items() if key[0] not in earlier}
    for cid, past in earlier.items():
        _put_back(waiting, past.waiting, cid)
        _put_back(assignees, past.assignees, cid)
        _put_back(seen, past.seen, cid)
        approvals.update((key, a) for key, a in past.approvals.items() if key[0] == cid)
        agent_id = agent_of_stream(cid)
        if agent_id is not None:
            was = past.agent(agent_id)
            agent = agents.get(agent_id) or AgentState(agent_id)
            agents[agent_id] = replace(agent, presence=was.presence, capacity=was.capacity)
    holding: dict[str, set[str]] = {}
    for cid, agent_id in assignees.items():
        holding.setdefault(agent_id, set()).add(cid)
    for agent_id in set(agents) | set(holding):
        agent = agents.get(agent_id) or AgentState(agent_id)
        agents[agent_id] = replace(agent, conversations=frozenset(holding.get(agent_id, ())))
    return RoutingState(agents, waiting, assignees, seen, approvals)


def packet_brief(packet: HandoffPacket) -> dict[str, Any]:
    """The part of the handoff packet an offer shows: who, why, what the bot collected."""
    return {
        "customer_id": packet.customer_id,
        "verification": packet.verification,
        "verified_by": packet.verified_by if packet.verification == "verified" else None,
        "reason_code": packet.reason_code,
        "reason_detail": packet.reason_detail,
        "slots": [{"name": s.name, "value": s.value, "channel": s.channel} for s in packet.slots],
        "channels": sorted({leg.channel for leg in packet.legs}),
        "pending_actions": len(packet.pending_actions),
        "summary": list(packet.summary[-SUMMARY_LINES:]),
    }

"""The handoff packet: what a human sees when a conversation reaches them.

Built purely from the conversation's state and its timeline, so any process
that can read the log can build the same packet. ``to_dict`` gives JSON-ready
data for the API.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final

from threadline.core.conversation import ConversationState
from threadline.core.events import Event
from threadline.core.verification import rank

LAST_MESSAGES: Final = 10
VERIFIED: Final = "verified"
UNVERIFIED: Final = "unverified"
ANONYMOUS: Final = "anonymous"


@dataclass(frozen=True, slots=True)
class IntentSeen:
    intent: str
    confidence: float
    channel: str
    seq: int
    at: str


@dataclass(frozen=True, slots=True)
class SlotSeen:
    """A collected value as last filled, and where it came from."""

    name: str
    value: str
    source: str
    channel: str
    seq: int
    at: str


@dataclass(frozen=True, slots=True)
class ActionSeen:
    """A tool call: ``status`` is pending, completed or failed."""

    action_id: str
    tool: str | None
    status: str
    channel: str
    seq: int
    result: Mapping[str, Any] | None = None
    error: str | None = None
    retryable: bool | None = None


@dataclass(frozen=True, slots=True)
class LegSeen:
    leg_id: str
    channel: str
    started_at: str | None
    ended_at: str | None
    location: str | None = None


@dataclass(frozen=True, slots=True)
class MessageSeen:
    """A message in (from the customer) or out (from a bot or human)."""

    seq: int
    at: str
    channel: str
    direction: str
    actor_kind: str
    actor_id: str
    text: str
    heard_text: str | None = None


@dataclass(frozen=True, slots=True)
class HandoffPacket:
    """Everything a human needs to take over without asking the customer again."""

    conversation_id: str
    as_of_seq: int
    status: str | None
    queue: str | None
    reason_code: str | None
    reason_detail: str
    skills: tuple[str, ...]
    customer_id: str | None
    verification: str
    verified_by: str | None
    #: The strongest proof the current contact gave (None: none): claimed .. idp.
    level: str | None
    #: Every proof given in the conversation, oldest first: method, level, kind, channel, at.
    proofs: tuple[Mapping[str, Any], ...]
    identities: Mapping[str, bool]
    consent: Mapping[str, bool]
    assignee: str | None
    summary: tuple[str, ...]
    intents: tuple[IntentSeen, ...]
    slots: tuple[SlotSeen, ...]
    actions: tuple[ActionSeen, ...]
    legs: tuple[LegSeen, ...]
    messages: tuple[MessageSeen, ...]
    notes: tuple[Mapping[str, Any], ...] = field(default=())

    @property
    def pending_actions(self) -> tuple[ActionSeen, ...]:
        return tuple(a for a in self.actions if a.status == "pending")

    def slot(self, name: str) -> SlotSeen | None:
        return next((s for s in self.slots if s.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: dicts, lists, strings, numbers, booleans and None."""
        data: dict[str, Any] = _plain(asdict(self))
        return data


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# -- building ------------------------------------------------------------------------


class _Reading:
    """Mutable collector used while walking one timeline."""

    def __init__(self) -> None:
        self.intents: list[IntentSeen] = []
        self.slots: dict[str, SlotSeen] = {}
        self.actions: dict[str, ActionSeen] = {}
        self.locations: dict[str, str] = {}
        self.messages: list[MessageSeen] = []
        self.notes: list[dict[str, Any]] = []
        self.request: Mapping[str, Any] = {}


Collect = Callable[[_Reading, Event], None]
_COLLECT: dict[str, Collect] = {}


def _collects(*types: str) -> Callable[[Collect], Collect]:
    def decorate(fn: Collect) -> Collect:
        for type_ in types:
            _COLLECT[type_] = fn
        return fn

    return decorate


def _at(e: Event) -> str:
    return e.occurred_at.isoformat()


@_collects("intent.detected")
def _intent(r: _Reading, e: Event) -> None:
    p = e.payload
    r.intents.append(IntentSeen(p["intent"], p["confidence"], e.channel, e.seq, _at(e)))


@_collects("slot.filled")
def _slot(r: _Reading, e: Event) -> None:
    p = e.payload
    r.slots.pop(p["name"], None)  # keep the order of the latest fill
    r.slots[p["name"]] = SlotSeen(p["name"], p["value"], p["source"], e.channel, e.seq, _at(e))


@_collects("action.requested")
def _action_requested(r: _Reading, e: Event) -> None:
    p = e.payload
    r.actions[p["action_id"]] = ActionSeen(p["action_id"], p["tool"], "pending", e.channel, e.seq)


@_collects("action.completed", "action.failed")
def _action_finished(r: _Reading, e: Event) -> None:
    p = e.payload
    asked = r.actions.get(p["action_id"])
    # A completion without its request (an older producer) still shows, without the tool.
    tool, channel, seq = (None, e.channel, e.seq)
    if asked is not None:
        tool, channel, seq = asked.tool, asked.channel, asked.seq
    if e.type == "action.completed":
        done = ActionSeen(p["action_id"], tool, "completed", channel, seq, result=p["result"])
    else:
        done = ActionSeen(
            p["action_id"], tool, "failed", channel, seq,
            error=p["error"], retryable=p["retryable"],
        )  # fmt: skip
    r.actions[p["action_id"]] = done


@_collects("leg.started")
def _leg(r: _Reading, e: Event) -> None:
    if e.payload.get("location"):
        r.locations[e.payload["leg_id"]] = e.payload["location"]


@_collects("message.received", "utterance.transcribed", "message.sent")
def _message(r: _Reading, e: Event) -> None:
    p = e.payload
    direction = "out" if e.type == "message.sent" else "in"
    heard = p.get("heard_text")
    # On voice, show what was heard only when barge-in cut the message short.
    cut = heard if heard is not None and heard != p["text"] else None
    message = MessageSeen(e.seq, _at(e), e.channel, direction, e.actor.kind, e.actor.id, p["text"])
    r.messages.append(message if cut is None else replace(message, heard_text=cut))


@_collects("note.added")
def _note(r: _Reading, e: Event) -> None:
    r.notes.append({"author_id": e.payload["author_id"], "text": e.payload["text"], "at": _at(e)})


@_collects("handoff.requested")
def _request(r: _Reading, e: Event) -> None:
    r.request = e.payload


def _verification(state: ConversationState) -> tuple[str, str | None]:
    """How sure we are who the person on the current contact is, and by what proof: a
    proof given on an earlier contact (a chat before this call) does not count for it."""
    current = [p for p in state.proofs if p["seq"] > state.contact_seq]
    if current:
        best = max(current, key=lambda p: (rank(p["level"]), p["seq"]))
        return VERIFIED, str(best["method"])
    return (UNVERIFIED if state.identities or state.contact else ANONYMOUS), None


def build_packet(
    state: ConversationState, timeline: Sequence[Event], *, last_messages: int = LAST_MESSAGES
) -> HandoffPacket:
    """The packet for ``state``, reading details the state does not keep from ``timeline``."""
    reading = _Reading()
    for event in timeline:
        collect = _COLLECT.get(event.type)
        if collect is not None:
            collect(reading, event)
    in_order = sorted(state.legs.items(), key=lambda kv: kv[1].get("started_at") or "")
    legs = tuple(
        LegSeen(
            leg_id,
            leg["channel"],
            leg.get("started_at"),
            leg.get("ended_at"),
            reading.locations.get(leg_id),
        )
        for leg_id, leg in in_order
    )
    request = reading.request
    verification, verified_by = _verification(state)
    return HandoffPacket(
        conversation_id=state.conversation_id,
        as_of_seq=state.seq,
        status=state.status,
        queue=state.queue,
        reason_code=state.handoff_reason,
        reason_detail=str(request.get("reason_detail", "")),
        skills=tuple(request.get("skills", ())),
        customer_id=state.customer_id,
        verification=verification,
        verified_by=verified_by,
        level=state.level,
        proofs=tuple(dict(p) for p in state.proofs),
        identities=dict(state.identities),
        consent=dict(state.consent),
        assignee=state.assignee,
        summary=state.summary,
        intents=tuple(reading.intents),
        slots=tuple(reading.slots.values()),
        actions=tuple(sorted(reading.actions.values(), key=lambda a: a.seq)),
        legs=legs,
        messages=tuple(reading.messages[-last_messages:] if last_messages > 0 else ()),
        notes=tuple(reading.notes),
    )

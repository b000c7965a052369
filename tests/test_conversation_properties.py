"""Properties of the conversation fold over random valid histories.

Histories are built by walking the state machine: at each step the strategy
picks among the event types that ``check`` allows from the current state, then
draws a realistic payload for it. Some ``message.sent`` and ``handoff.requested``
events are written in their old v1 shape, as an old producer would, so every
history is read back through the upcasters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from threadline.core.conversation import (
    AWAITING_HUMAN,
    BOT_ACTIVE,
    WITH_HUMAN,
    ConversationState,
    check,
    decide,
    fold,
    initial,
)
from threadline.core.errors import IllegalTransition
from threadline.core.events import Actor, Event, EventCodec, EventRecord

CID = "conv-prop"
T0 = datetime(2025, 3, 4, 9, 0, tzinfo=UTC)
CODEC = EventCodec()
MAX_EVENTS = 60
PROPERTIES = settings(max_examples=100, deadline=None)
OLD_SHAPES = frozenset({"message.sent", "handoff.requested"})

CUSTOMER = Actor("customer", "cus-maya")
BOT = Actor("bot", "northwind-bot")
ROUTER = Actor("system", "router")
AGENTS = ("ana", "raj", "li")
QUEUES = ("billing", "returns", "tech")
CHANNELS = ("voice", "chat", "in_person", "sms")
REASON_CODES = ("customer_request", "low_confidence", "sensitive_intent", "tool_failure")
PHRASES = (
    "where is my order 1042?",
    "I want a refund",
    "the screen is cracked",
    "can I talk to a person",
    "Thanks, that helps!",
    "My number is +1 415 555 0100",
)
# Any text a schema takes: every character but NUL and lone surrogates (not Unicode text).
texts = st.sampled_from(PHRASES) | st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
    min_size=1, max_size=12,
)  # fmt: skip
names = st.sampled_from(("order_number", "email", "delivery_date", "postcode"))
confidences = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
# Seconds to days apart: on either side of the seven-day reopen window.
gaps = st.sampled_from([timedelta(seconds=s) for s in (5, 120, 3 * 3600, 6 * 86400, 8 * 86400)])

Draw = Callable[[st.SearchStrategy[Any]], Any]
Payload = dict[str, Any]
Envelope = dict[str, Any]


@dataclass(frozen=True)
class Move:
    """How to propose one event type.

    ``needs`` gives the fields the guards look at, from the state alone (None when
    the move makes no sense now, such as completing an action nobody requested);
    ``make`` draws the rest of a realistic payload and the envelope.
    """

    needs: Callable[[ConversationState, int], Payload | None]
    make: Callable[[Draw, ConversationState, Payload], tuple[Payload, Envelope]]


def _always(state: ConversationState, seq: int) -> Payload:
    return {}


def _started(draw: Draw, s: ConversationState, p: Payload) -> tuple[Payload, Envelope]:
    origin = draw(st.sampled_from(CHANNELS))
    return {"origin": origin, "topic": draw(st.none() | texts)}, {"channel": origin}


def _new_leg(s: ConversationState, seq: int) -> Payload:
    return {"leg_id": f"leg-{seq}"}


def _leg_started(draw: Draw, s: ConversationState, p: Payload) -> tuple[Payload, Envelope]:
    channel = draw(st.sampled_from(CHANNELS))
    address = draw(st.none() | st.just("+14155550100"))
    return {**p, "channel": channel, "address": address}, {"channel": channel}


def _live_leg(s: ConversationState, seq: int) -> Payload | None:
    return {"leg_id": min(s.live_legs)} if s.live_legs else None


def _leg_ended(draw: Draw, s: ConversationState, p: Payload) -> tuple[Payload, Envelope]:
    leg = draw(st.sampled_from(sorted(s.live_legs)))
    return {"leg_id": leg, "reason": draw(st.sampled_from(("completed", "hangup")))}, {}


def _received(draw: Draw, s: ConversationState, p: Payload) -> tuple[Payload, Envelope]:
    return {"text": draw(texts)}, {"actor": CUSTOMER}


def _sent(draw: Draw, s: ConversationState, p: Payload) -> tuple[Payload, Envelope]:
    text = draw(texts)
    heard = draw(st.sampled_from((text, None, text[: len(text) // 2] or None)))
    return {"text": text, "heard_text": heard}, {}


def _transcribed(draw: Draw, s: ConversationState, p: Payload) -> tuple[Payload, Envelope]:
    start = draw(st.integers(0, 60_000))
    payload = {"text": draw(texts), "confidence": draw(confidences), "start_ms": start}
    return {**payload, "end_ms": start + draw(st.integers(0, 5_000))}, {"actor": CUSTOMER}


def _intent(draw: Draw, s: ConversationState, p: Payload) -> tuple[Payload, Envelope]:
    name = draw(st.sampled_from(("order_status", "refund", "cancel", "talk_to_human")))
    return {"intent": name, "confidence": draw(confidences)}, {}


def _slot(draw: Draw, s: ConversationState, p: Payload) -> tuple[Payload, Envelope]:
    source = draw(st.sampled_from(("customer", "crm")))
    return {"name": draw(names), "value": draw(texts), "source": source}, {}


def _new_action(s: ConversationState, seq: int) -> Payload:
    return {"action_id": f"act-{seq}"}


def _action_requested(draw: Draw, s: ConversationState, p: Payload) -> tuple[Payload, Envelope]:
    tool = draw(st.sampled_from(("lookup_order", "issue_refund", "book_visit")))
    return {**p, "tool": tool, "arguments": {"order": "1042"}}, {}


def _pending(s: ConversationState, seq: int) -> Payload | None:
    return {} if s.pending_actions else None


def _action_completed(draw: Draw, s: ConversationState, p: Payload) -> tuple[Payload, Envelope]:
    action_id = draw(st.sampled_from(sorted(s.pending_actions)))
    return {"action_id": action_id, "result": {"status": "shipped"}}, {}


def _action_failed(draw: Draw, s: ConversationState, p: Payload) -> tuple[Payload, Envelope]:
    action_id = draw(st.sampled_from(sorted(s.pending_actions)))
    payload = {"action_id": action_id, "error": "timeout", "retryable": draw(st.booleans())}
    return payload, {}


def _handoff_requested(draw: Draw, s: ConversationState, p: Payload) -> tuple[Payload, Envelope]:
    code = draw(st.sampled_from(REASON_CODES))
    detail = draw(st.sampled_from(("", "asked twice for a person")))
    if detail:
        code = "other"
    skills = draw(st.lists(st.sampled_from(("refunds", "de", "hardware")), max_size=2))
    payload = {"queue": draw(st.sampled_from(QUEUES)), "reason_code": code}
    return {**payload, "reason_detail": detail, "skills": skills}, {}


def _offered(draw: Draw, s: ConversationState, p: Payload) -> tuple[Payload, Envelope]:
    agent = draw(st.sampled_from(AGENTS))
    offer_id = f"offer-{s.seq + 1}"
    payload = {"offer_id": offer_id, "agent_id": agent, "queue": s.queue or "billing"}
    return {**payload, "expires_at": "2025-03-04T09:05:00+00:00"}, {"actor": ROUTER}


def _open_offer(s: ConversationState, seq: int) -> Payload | None:
    if s.offer is None:
        return None
    return {"offer_id": s.offer["offer_id"], "agent_id": s.offer["agent_id"]}


def _answer(draw: Draw, s: ConversationState, p: Payload) -> tuple[Payload, Envelope]:
    return p, {"actor": Actor("human", p["agent_id"])}


def _assignee(s: ConversationState, seq: int) -> Payload | None:
    return None if s.assignee is None else {"agent_id": s.assignee}


def _returned(draw: Draw, s: ConversationState, p: Payload) -> tuple[Payload, Envelope]:
    return {**p, "note": draw(st.none() | texts)}, {"actor": Actor("human", p["agent_id"])}


def _reason(draw: Draw, s: ConversationState, p: Payload) -> tuple[Payload, Envelope]:
    return {"reason": draw(st.sampled_from(("new contact", "no reply", "awaiting photo")))}, {}


def _resolved(draw: Draw, s: ConversationState, p: Payload) -> tuple[Payload, Envelope]:
    outcome = draw(st.sampled_from(("answered", "refund_issued", "visit_booked")))
    return {"outcome": outcome, "note": draw(st.none() | texts)}, {}


def _note(draw: Draw, s: ConversationState, p: Payload) -> tuple[Payload, Envelope]:
    return {"author_id": s.assignee or "system", "text": draw(texts)}, {}


def _consent(draw: Draw, s: ConversationState, p: Payload) -> tuple[Payload, Envelope]:
    return {"purpose": draw(st.sampled_from(("recording", "transcription", "marketing")))}, {}


def _identity(draw: Draw, s: ConversationState, p: Payload) -> tuple[Payload, Envelope]:
    kind = draw(st.sampled_from(("phone", "email", "member")))
    return {"kind": kind, "value": f"{kind}-value", "verified": draw(st.booleans())}, {}


MOVES: dict[str, Move] = {
    "conversation.started": Move(_always, _started),
    "conversation.resolved": Move(_always, _resolved),
    "conversation.reopened": Move(_always, _reason),
    "conversation.abandoned": Move(_always, _reason),
    "conversation.waiting": Move(_always, _reason),
    "leg.started": Move(_new_leg, _leg_started),
    "leg.ended": Move(_live_leg, _leg_ended),
    "message.received": Move(_always, _received),
    "message.sent": Move(_always, _sent),
    "utterance.transcribed": Move(_always, _transcribed),
    "intent.detected": Move(_always, _intent),
    "slot.filled": Move(_always, _slot),
    "action.requested": Move(_new_action, _action_requested),
    "action.completed": Move(_pending, _action_completed),
    "action.failed": Move(_pending, _action_failed),
    "handoff.requested": Move(_always, _handoff_requested),
    "handoff.offered": Move(_always, _offered),
    "handoff.accepted": Move(_open_offer, _answer),
    "handoff.declined": Move(_open_offer, _answer),
    "handoff.returned": Move(_assignee, _returned),
    "note.added": Move(_always, _note),
    "consent.granted": Move(_always, _consent),
    "consent.revoked": Move(_always, _consent),
    "identity.linked": Move(_always, _identity),
}
TYPES = sorted(MOVES)
# Handoff moves are few among many allowed ones; weight them so that histories
# regularly reach a human, hand back, transfer and reopen.
WEIGHTS = {
    "handoff.requested": 3,
    "handoff.offered": 8,
    "handoff.accepted": 8,
    "handoff.returned": 3,
    "conversation.reopened": 4,
    "message.received": 2,
    "message.sent": 2,
}


def allowed(state: ConversationState, seq: int, when: datetime) -> list[str]:
    """The event types that ``check`` allows next, given the state alone."""
    out = []
    for type_ in TYPES:
        needs = MOVES[type_].needs(state, seq)
        if needs is None:
            continue
        try:
            check(state, Event(CID, type_, needs, event_id="probe", occurred_at=when))
        except IllegalTransition:
            continue
        out.append(type_)
    return out


def _as_v1(type_: str, payload: Payload) -> Payload:
    """The payload an old producer would have written for the same event."""
    if type_ == "message.sent":
        return {"text": payload["text"]}
    reason = payload["reason_detail"] or payload["reason_code"]
    return {"queue": payload["queue"], "reason": reason}


@st.composite
def histories(draw: Draw, max_events: int = MAX_EVENTS) -> list[EventRecord]:
    """A valid history as stored: records with seqs, some in old payload versions."""
    size = draw(st.integers(1, max_events))
    state = initial(CID)
    when = T0
    stored: list[EventRecord] = []
    for seq in range(1, size + 1):
        when += draw(gaps)
        choices = [t for t in allowed(state, seq, when) for _ in range(WEIGHTS.get(t, 1))]
        type_ = draw(st.sampled_from(choices))
        move = MOVES[type_]
        needs = move.needs(state, seq)
        assert needs is not None
        payload, envelope = move.make(draw, state, needs)
        version = 0
        if type_ in OLD_SHAPES and draw(st.booleans()):
            payload, version = _as_v1(type_, payload), 1
        written = Event(
            CID,
            type_,
            payload,
            version=version,
            event_id=f"evt-{seq}",
            occurred_at=when,
            idempotency_key=f"key-{seq}",
            customer_id="cus-maya",
            **({"actor": BOT, "channel": "system"} | envelope),
        )
        record = CODEC.encode(written)._replace(seq=seq, position=seq)
        event = CODEC.decode(record)
        check(state, event)  # the drawn details never make an allowed move illegal
        state = fold(state, [event])
        stored.append(record)
    return stored


def read(records: list[EventRecord]) -> list[Event]:
    return [CODEC.decode(r) for r in records]


# -- properties ------------------------------------------------------------------------------


@PROPERTIES
@given(histories())
def test_snapshot_through_bytes_then_tail_equals_the_full_fold(records: list[EventRecord]) -> None:
    events = read(records)
    whole = fold(initial(CID), events)
    for k in range(len(events) + 1):
        snapshot = fold(initial(CID), events[:k]).to_bytes()
        assert fold(ConversationState.from_bytes(snapshot), events[k:]) == whole, k


@PROPERTIES
@given(histories())
def test_fold_is_deterministic(records: list[EventRecord]) -> None:
    events = read(records)
    first = fold(initial(CID), events)
    second = fold(initial(CID), events)
    assert first == second
    assert first.to_bytes() == second.to_bytes()


@PROPERTIES
@given(histories(), st.data())
def test_fold_does_not_change_the_state_it_starts_from(
    records: list[EventRecord], data: st.DataObject
) -> None:
    events = read(records)
    k = data.draw(st.integers(0, len(events)))
    start = fold(initial(CID), events[:k])
    before = start.to_bytes()
    fold(start, events[k:])
    assert start.to_bytes() == before


@PROPERTIES
@given(histories())
def test_upcast_then_fold_is_deterministic(records: list[EventRecord]) -> None:
    assert fold(initial(CID), read(records)) == fold(initial(CID), read(records))


@PROPERTIES
@given(histories())
def test_decide_accepts_every_valid_history(records: list[EventRecord]) -> None:
    events = read(records)
    assert decide(initial(CID), events) == fold(initial(CID), events)


@PROPERTIES
@given(histories())
def test_the_state_counts_every_event(records: list[EventRecord]) -> None:
    state = fold(initial(CID), read(records))
    assert state.seq == len(records)
    assert state.recent_keys[-1] == f"key-{len(records)}"


@PROPERTIES
@given(histories())
def test_an_assignee_is_set_only_while_a_human_holds_the_conversation(
    records: list[EventRecord],
) -> None:
    state = initial(CID)
    for event in read(records):
        state = fold(state, [event])
        if state.status == WITH_HUMAN:
            assert state.assignee is not None
        if state.status in {BOT_ACTIVE, AWAITING_HUMAN}:
            assert state.assignee is None, state.summary

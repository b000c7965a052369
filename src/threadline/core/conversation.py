"""Conversation state: a pure fold of canonical events, and the guards that
refuse illegal transitions before anything is appended.

``fold(state, events)`` applies one small function per event type. ``check``
raises :class:`IllegalTransition` for an event the state does not allow. The
state itself, frozen and serialisable for snapshots, is in
:mod:`threadline.core.state`; its names are importable from here too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Final

from threadline.core.errors import DomainError, IllegalTransition
from threadline.core.events import Event
from threadline.core.state import (
    ABANDONED,
    AWAITING_HUMAN,
    BOT_ACTIVE,
    CLOSED_STATES,
    DEFAULT_POLICY,
    OPEN_STATES,
    RECENT_INTENTS,
    RECENT_KEYS,
    RECENT_PROOFS,
    RESOLVED,
    STATE_SCHEMA_VERSION,
    SUMMARY_LINES,
    WAITING_ON_CUSTOMER,
    WITH_HUMAN,
    ConversationState,
    Draft,
    Policy,
    evolve,
)
from threadline.core.verification import anonymous

Apply = Callable[[Any, Event], None]
_APPLY: dict[str, Apply] = {}


def _applies(type_: str) -> Callable[[Apply], Apply]:
    def decorate(fn: Apply) -> Apply:
        _APPLY[type_] = fn
        return fn

    return decorate


def _ts(event: Event) -> str:
    return event.occurred_at.isoformat()


def _iso(value: Any) -> str:
    """A payload's time as text: a datetime once decoded, its text while being decided."""
    return value.isoformat() if isinstance(value, datetime) else str(value)


@_applies("conversation.started")
def _started(d: Any, e: Event) -> None:
    d.status = BOT_ACTIVE
    d.origin = e.payload["origin"]
    d.opened_at = _ts(e)
    d.note(f"started on {e.payload['origin']}")


@_applies("conversation.resolved")
def _resolved(d: Any, e: Event) -> None:
    d.status = RESOLVED
    d.closed_at = _ts(e)
    d.outcome = e.payload["outcome"]
    d.continued_in = e.payload.get("continued_in")
    d.assignee = None
    d.offer = None
    d.note(f"resolved: {e.payload['outcome']}")


@_applies("conversation.abandoned")
def _abandoned(d: Any, e: Event) -> None:
    d.status = ABANDONED
    d.closed_at = _ts(e)
    d.offer = None
    d.note(f"abandoned: {e.payload['reason']}")


@_applies("conversation.reopened")
def _reopened(d: Any, e: Event) -> None:
    d.status = BOT_ACTIVE
    d.closed_at = None
    d.outcome = None
    d.continued_in = None
    # An abandoned conversation may still name the human who held it; the bot holds it now.
    d.assignee = None
    d.note(f"reopened: {e.payload['reason']}")


@_applies("conversation.waiting")
def _waiting(d: Any, e: Event) -> None:
    d.resume_status = d.status
    d.status = WAITING_ON_CUSTOMER
    d.note(f"waiting on customer: {e.payload['reason']}")


@_applies("leg.started")
def _leg_started(d: Any, e: Event) -> None:
    p = e.payload
    d.legs[p["leg_id"]] = {"channel": p["channel"], "started_at": _ts(e), "ended_at": None}
    if p.get("location"):
        # Where a visit happens decides which store's associates may work it.
        d.legs[p["leg_id"]]["location"] = p["location"]
    d.note(f"{p['channel']} leg started")


@_applies("leg.ended")
def _leg_ended(d: Any, e: Event) -> None:
    leg = d.legs.get(e.payload["leg_id"])
    if leg is not None:
        leg["ended_at"] = _ts(e)
        d.note(f"{leg['channel']} leg ended: {e.payload['reason']}")


@_applies("message.received")
def _message_received(d: Any, e: Event) -> None:
    d.messages_in += 1
    if d.status == WAITING_ON_CUSTOMER:
        d.status = d.resume_status or BOT_ACTIVE
        d.resume_status = None


@_applies("utterance.transcribed")
def _utterance(d: Any, e: Event) -> None:
    d.messages_in += 1
    if d.status == WAITING_ON_CUSTOMER:
        d.status = d.resume_status or BOT_ACTIVE
        d.resume_status = None


@_applies("message.sent")
def _message_sent(d: Any, e: Event) -> None:
    d.messages_out += 1


@_applies("message.heard")
def _message_heard(d: Any, e: Event) -> None:
    if not e.payload["complete"]:
        d.note(f"caller spoke over the reply after: {e.payload['heard_text']!r}")


@_applies("intent.detected")
def _intent(d: Any, e: Event) -> None:
    p = e.payload
    d.intents.append({"intent": p["intent"], "confidence": p["confidence"], "seq": d.seq})
    if len(d.intents) > RECENT_INTENTS:
        del d.intents[0]
    d.note(f"intent {p['intent']} ({p['confidence']:.2f}) on {e.channel}")


@_applies("slot.filled")
def _slot(d: Any, e: Event) -> None:
    p = e.payload
    d.slots[p["name"]] = {"value": p["value"], "source": p["source"], "seq": d.seq}
    d.note(f"{p['name']} = {p['value']} ({e.channel})")


@_applies("action.requested")
def _action_requested(d: Any, e: Event) -> None:
    p = e.payload
    d.pending_actions[p["action_id"]] = {"tool": p["tool"], "seq": d.seq}


def _settled(d: Any, action_id: str) -> None:
    """An approved call that ran (an approval's id is its action's) leaves the approvals."""
    # Read without copying: most calls are no approval's.
    approvals = d.approvals if "approvals" in d._touched else d._source.approvals
    if action_id in approvals:
        d.approvals.pop(action_id, None)


@_applies("action.completed")
def _action_completed(d: Any, e: Event) -> None:
    _settled(d, e.payload["action_id"])
    action = d.pending_actions.pop(e.payload["action_id"], None)
    d.actions_done += 1
    if action is not None:
        d.note(f"{action['tool']} done")


@_applies("action.failed")
def _action_failed(d: Any, e: Event) -> None:
    _settled(d, e.payload["action_id"])
    action = d.pending_actions.pop(e.payload["action_id"], None)
    d.actions_failed += 1
    if action is not None:
        d.note(f"{action['tool']} failed: {e.payload['error']}")


@_applies("approval.requested")
def _approval_requested(d: Any, e: Event) -> None:
    p = e.payload
    d.approvals[p["approval_id"]] = {"tool": p["tool"], "arguments": p["arguments"],
                                     "queue": p["queue"], "status": "pending",
                                     "reason": p.get("reason", ""), "seq": d.seq}  # fmt: skip
    d.note(f"{p['tool']} waits for approval in {p['queue']}")


def _decided(d: Any, e: Event, status: str) -> None:
    approval = d.approvals.get(e.payload["approval_id"])
    if approval is not None:
        d.approvals[e.payload["approval_id"]] = {**approval, "status": status,
                                                 "by": e.payload["agent_id"]}  # fmt: skip
        if e.payload["agent_id"] not in d.approvers:
            d.approvers.append(e.payload["agent_id"])
        d.note(f"{approval['tool']} {status} by {e.payload['agent_id']}")


@_applies("approval.granted")
def _approval_granted(d: Any, e: Event) -> None:
    _decided(d, e, "granted")


@_applies("approval.denied")
def _approval_denied(d: Any, e: Event) -> None:
    _decided(d, e, "denied")


@_applies("model.fell_back")
def _fell_back(d: Any, e: Event) -> None:
    d.note(f"model {e.payload['reason']}: the turn went to {e.payload['to']}")


@_applies("bot.transferred")
def _bot_transferred(d: Any, e: Event) -> None:
    d.bot_agent = e.payload["to_agent"]
    d.note(f"agent {e.payload['from_agent']} handed over to {e.payload['to_agent']}")


@_applies("guardrail.triggered")
def _guardrail(d: Any, e: Event) -> None:
    p = e.payload
    d.note(f"guardrail {p['guardrail']} on the {p['where']}: {p['outcome']}")


@_applies("handoff.requested")
def _handoff_requested(d: Any, e: Event) -> None:
    p = e.payload
    d.status = AWAITING_HUMAN
    d.queue = p["queue"]
    d.handoff_reason = p["reason_code"]
    d.assignee = None
    d.offer = None
    d.note(f"handoff to {p['queue']}: {p['reason_code']}")


@_applies("handoff.offered")
def _offered(d: Any, e: Event) -> None:
    p = e.payload
    d.offer = {"offer_id": p["offer_id"], "agent_id": p["agent_id"], "expires_at": p["expires_at"]}


@_applies("handoff.declined")
def _declined(d: Any, e: Event) -> None:
    d.offer = None


@_applies("handoff.accepted")
def _accepted(d: Any, e: Event) -> None:
    d.status = WITH_HUMAN
    d.assignee = e.payload["agent_id"]
    d.offer = None
    d.note(f"accepted by {e.payload['agent_id']}")


@_applies("handoff.returned")
def _returned(d: Any, e: Event) -> None:
    d.status = BOT_ACTIVE
    d.assignee = None
    d.queue = None
    d.note(f"returned to bot by {e.payload['agent_id']}")


@_applies("note.added")
def _note(d: Any, e: Event) -> None:
    d.note(f"note by {e.payload['author_id']}")


@_applies("consent.granted")
def _consent_granted(d: Any, e: Event) -> None:
    d.consent[e.payload["purpose"]] = True


@_applies("consent.revoked")
def _consent_revoked(d: Any, e: Event) -> None:
    d.consent[e.payload["purpose"]] = False


#: Claims that come with a new contact (a call's caller id): until that contact proves who
#: they are, what earlier contacts proved does not vouch for them.
CONTACT_CLAIMS: Final = frozenset({"caller_id"})


@_applies("identity.linked")
def _identity(d: Any, e: Event) -> None:
    p = e.payload
    kind = p["kind"]
    if not p["verified"] and p.get("method") in CONTACT_CLAIMS:
        for known in d.identities:
            d.identities[known] = False
        d.identities[kind] = False
        d.contact_seq = d.seq
        d.contact = {"kind": kind, "value": p["value"]}
        d.note(f"{kind} claimed by a new contact, not verified")
        return
    d.identities[kind] = bool(p["verified"]) or bool(d.identities.get(kind))
    if p["verified"]:
        d.proofs.append({"method": p["method"], "level": p["level"], "kind": kind,
                         "channel": e.channel, "seq": d.seq, "at": _ts(e)})  # fmt: skip
        if len(d.proofs) > RECENT_PROOFS:
            del d.proofs[0]
        if kind == "device" and p["value"] not in d.aliases:
            d.aliases.append(p["value"])  # a chat session that proved itself speaks for it
        if p["method"] == "otp":
            d.challenge = None
        d.note(f"{kind} verified by {p['method']} ({p['level']}) on {e.channel}")
    identified = p.get("customer_id")
    if identified and identified != d.customer_id:
        if d.customer_id and d.customer_id not in d.aliases:
            d.aliases.append(d.customer_id)
        d.customer_id = identified
        d.note(f"identified as {identified}")


@_applies("verification.challenged")
def _challenged(d: Any, e: Event) -> None:
    p = e.payload  # the challenge, its time as text (the state is plain data)
    d.challenge = {**p, "expires_at": _iso(p["expires_at"]), "attempts": 0}
    d.codes_sent += 1
    d.note(f"one-time code sent by {p['via']}")


@_applies("verification.rejected")
def _rejected(d: Any, e: Event) -> None:
    p = e.payload
    if p["reason"] == "wrong":
        d.failed_proofs[p["method"]] = d.failed_proofs.get(p["method"], 0) + 1
    challenge = d.challenge
    if challenge is not None and challenge["challenge_id"] == p.get("challenge_id"):
        attempts = challenge["attempts"] + (p["reason"] == "wrong")
        spent = p["reason"] != "wrong" or attempts >= challenge["max_attempts"]
        d.challenge = None if spent else {**challenge, "attempts": attempts}
    d.note(f"{p['method']} not passed: {p['reason']}")


def _apply(draft: Any, event: Event, seq: int) -> None:
    """Apply ``event`` as the conversation's event ``seq`` (apply functions read it as
    ``d.seq``: an event being decided has no seq of its own yet)."""
    apply = _APPLY.get(event.type)
    if apply is None:
        raise DomainError(f"{event.type} is not an event of a conversation")
    draft.seq = seq
    apply(draft, event)
    if not draft.conversation_id:
        draft.conversation_id = event.conversation_id
    if draft.customer_id is None and event.customer_id:
        draft.customer_id = event.customer_id
    if draft.correlation_id is None:
        draft.correlation_id = event.correlation_id
    keys = draft.recent_keys
    keys.append(event.idempotency_key)
    if len(keys) > RECENT_KEYS:
        del keys[0]


def _frozen(draft: Any, last: Event) -> ConversationState:
    draft.updated_at = _ts(last)
    after: ConversationState = draft.freeze()
    return after


def fold(state: ConversationState, events: Iterable[Event]) -> ConversationState:
    """The state after ``events``; a pure function of its arguments."""
    draft: Any = None
    last: Event | None = None
    for event in events:
        if draft is None:
            draft = Draft(state)
        _apply(draft, event, event.seq or draft.seq + 1)
        last = event
    if draft is None or last is None:
        return state
    return _frozen(draft, last)


# -- guards ----------------------------------------------------------------------

Guard = Callable[[ConversationState, Event, Policy], None]
_ALLOWED_IN: dict[str, frozenset[str | None]] = {
    "conversation.started": frozenset({None}),
    "conversation.resolved": OPEN_STATES,
    "conversation.abandoned": OPEN_STATES,
    "conversation.reopened": CLOSED_STATES,
    "conversation.waiting": frozenset({BOT_ACTIVE, WITH_HUMAN}),
    "leg.started": OPEN_STATES,
    "leg.ended": OPEN_STATES | CLOSED_STATES,
    "message.received": OPEN_STATES,
    "message.sent": OPEN_STATES,
    "message.heard": OPEN_STATES | CLOSED_STATES,
    "utterance.transcribed": OPEN_STATES,
    "intent.detected": OPEN_STATES,
    "slot.filled": OPEN_STATES,
    "action.requested": OPEN_STATES,
    "action.completed": OPEN_STATES | CLOSED_STATES,
    "action.failed": OPEN_STATES | CLOSED_STATES,
    "handoff.requested": frozenset({BOT_ACTIVE, WITH_HUMAN, WAITING_ON_CUSTOMER}),
    "handoff.offered": frozenset({AWAITING_HUMAN}),
    "handoff.declined": frozenset({AWAITING_HUMAN}),
    "handoff.accepted": frozenset({AWAITING_HUMAN}),
    "handoff.returned": frozenset({WITH_HUMAN}),
    "note.added": OPEN_STATES | CLOSED_STATES,
    "consent.granted": OPEN_STATES | CLOSED_STATES,
    "consent.revoked": OPEN_STATES | CLOSED_STATES,
    "identity.linked": OPEN_STATES | CLOSED_STATES,
    "verification.challenged": OPEN_STATES,
    "verification.rejected": OPEN_STATES,
    "approval.requested": OPEN_STATES,
    # A decision stands even once the conversation closed: the customer is told, or not.
    "approval.granted": OPEN_STATES | CLOSED_STATES,
    "approval.denied": OPEN_STATES | CLOSED_STATES,
    "model.fell_back": OPEN_STATES,
    "bot.transferred": OPEN_STATES,
    "guardrail.triggered": OPEN_STATES,
}
_GUARDS: dict[str, Guard] = {}


def _guards(type_: str) -> Callable[[Guard], Guard]:
    def decorate(fn: Guard) -> Guard:
        _GUARDS[type_] = fn
        return fn

    return decorate


@_guards("conversation.reopened")
def _reopen_in_window(state: ConversationState, event: Event, policy: Policy) -> None:
    assert state.closed_at is not None
    closed = datetime.fromisoformat(state.closed_at)
    if event.occurred_at - closed > policy.reopen_window:
        raise IllegalTransition(
            event.type, str(state.status), "the reopen window has passed; start a new conversation"
        )


@_guards("handoff.offered")
def _one_offer_at_a_time(state: ConversationState, event: Event, policy: Policy) -> None:
    if state.offer is not None:
        raise IllegalTransition(event.type, str(state.status), "an offer is already open")


def _offer_matches(state: ConversationState, event: Event, policy: Policy) -> None:
    offer = state.offer
    if offer is None or offer["offer_id"] != event.payload["offer_id"]:
        raise IllegalTransition(event.type, str(state.status), "no such open offer")
    if offer["agent_id"] != event.payload["agent_id"]:
        raise IllegalTransition(event.type, str(state.status), "the offer is for another agent")


_GUARDS["handoff.accepted"] = _offer_matches
_GUARDS["handoff.declined"] = _offer_matches


@_guards("handoff.returned")
def _only_the_assignee_returns(state: ConversationState, event: Event, policy: Policy) -> None:
    if state.assignee != event.payload["agent_id"]:
        raise IllegalTransition(event.type, str(state.status), "only the assignee can return it")


def _approval_pending(state: ConversationState, event: Event, policy: Policy) -> None:
    approval = state.approvals.get(event.payload["approval_id"])
    if approval is None or approval["status"] != "pending":
        raise IllegalTransition(event.type, str(state.status), "no such approval is waiting")
    if approval["queue"] != event.payload["queue"]:
        raise IllegalTransition(
            event.type, str(state.status), f"the approval waits in {approval['queue']}"
        )


_GUARDS["approval.granted"] = _approval_pending
_GUARDS["approval.denied"] = _approval_pending


@_guards("approval.requested")
def _approval_is_new(state: ConversationState, event: Event, policy: Policy) -> None:
    if event.payload["approval_id"] in state.approvals:
        raise IllegalTransition(event.type, str(state.status), "that approval already waits")


@_guards("leg.ended")
def _leg_is_live(state: ConversationState, event: Event, policy: Policy) -> None:
    if event.payload["leg_id"] not in state.live_legs:
        raise IllegalTransition(event.type, str(state.status), "that leg is not live")


@_guards("leg.started")
def _leg_is_new(state: ConversationState, event: Event, policy: Policy) -> None:
    if event.payload["leg_id"] in state.legs:
        raise IllegalTransition(event.type, str(state.status), "that leg has already started")


@_guards("identity.linked")
def _identified_by_proof_only(state: ConversationState, event: Event, policy: Policy) -> None:
    identified = event.payload.get("customer_id")
    if not identified or identified == state.customer_id:
        return
    if not event.payload["verified"]:
        raise IllegalTransition(event.type, str(state.status), "only a proof identifies")
    if not anonymous(state.customer_id):
        raise IllegalTransition(
            event.type, str(state.status), "the conversation is another customer's"
        )


def check(state: ConversationState, event: Event, policy: Policy = DEFAULT_POLICY) -> None:
    """Raise IllegalTransition unless ``event`` may follow ``state``."""
    allowed = _ALLOWED_IN.get(event.type)
    if allowed is None:
        raise IllegalTransition(event.type, str(state.status), "unknown to the state machine")
    if state.status not in allowed:
        raise IllegalTransition(event.type, state.status or "not started")
    guard = _GUARDS.get(event.type)
    if guard is not None:
        guard(state, event, policy)


def decide(
    state: ConversationState, events: Iterable[Event], policy: Policy = DEFAULT_POLICY
) -> ConversationState:
    """Check each event against the state it would follow; the state after all of them."""
    draft: Any = None
    last: Event | None = None
    for event in events:
        # A draft reads like the state it will become, so later events are checked on it.
        check(state if draft is None else draft, event, policy)
        if draft is None:
            draft = Draft(state)
        _apply(draft, event, draft.seq + 1)
        last = event
    if draft is None or last is None:
        return state
    return _frozen(draft, last)


def initial(conversation_id: str) -> ConversationState:
    """The state of a conversation that has no events yet."""
    return ConversationState(conversation_id=conversation_id)


__all__ = [
    "ABANDONED",
    "AWAITING_HUMAN",
    "BOT_ACTIVE",
    "CLOSED_STATES",
    "CONTACT_CLAIMS",
    "DEFAULT_POLICY",
    "OPEN_STATES",
    "RECENT_INTENTS",
    "RECENT_KEYS",
    "RESOLVED",
    "STATE_SCHEMA_VERSION",
    "SUMMARY_LINES",
    "WAITING_ON_CUSTOMER",
    "WITH_HUMAN",
    "ConversationState",
    "Policy",
    "check",
    "decide",
    "evolve",
    "fold",
    "initial",
]

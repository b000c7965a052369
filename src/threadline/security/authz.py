"""Authorization: pure functions of a principal, a conversation's state and an event.

Every check raises :class:`Forbidden` with the reason, or returns None when
the action is allowed; :func:`allows` turns a check into a bool. Everything
is denied unless a rule below allows it:

* **customer** reads their own conversation (the one bound to the token, if
  any) and appends only ``message.received`` as themselves to it.
* **adapter** appends only events on its own channel(s), of the types a
  channel produces (never routing decisions, tool calls or system events),
  and reads conversations that have a leg on its channel.
* **agent** reads conversations in their queues, assigned to them or offered to
  them; answers an offer or adds a note before holding one, and does the rest of
  the work (replies, resolving, consent, identity) only on those assigned to them,
  acting only as themselves. Staff never record a customer's proof: they confirm
  who a customer is as method ``agent``.
* **supervisor** reads every conversation and intervenes as themselves in any.
* **associate** reads conversations with an in-person leg at their store and,
  while a visit there is live, records the visit's events as themselves; the
  in-person API opens a visit only for a check-in code or a recorded look-up.
* **kiosk** reads and writes no conversation; it only checks customers in.
* **admin** may do everything, including managing tokens and system streams.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from threadline.core.conversation import ConversationState
from threadline.core.events import Event
from threadline.security.errors import Forbidden
from threadline.security.principal import Principal

SYSTEM_PREFIX: Final = "system:"

#: What a channel adapter may write (on its own channel only).
ADAPTER_EVENTS: Final = frozenset({
    "conversation.started", "conversation.reopened", "conversation.waiting",
    "conversation.abandoned", "conversation.resolved", "leg.started", "leg.ended",
    "message.received", "message.sent", "message.heard", "utterance.transcribed", "slot.filled",
    "identity.linked", "consent.granted", "consent.revoked", "note.added", "handoff.requested",
})  # fmt: skip
#: What a human agent may write on a conversation they hold.
AGENT_EVENTS: Final = frozenset({
    "message.sent", "note.added", "slot.filled", "identity.linked", "consent.granted",
    "consent.revoked", "action.requested", "handoff.requested", "handoff.accepted",
    "handoff.declined", "handoff.returned", "conversation.waiting", "conversation.resolved",
})  # fmt: skip
#: What an agent may write on a conversation before they hold it (it waits in their queue
#: or is offered to them): their answer to the offer, and a note. The rest is the
#: assignee's work, as on the desk.
AGENT_BEFORE_HOLDING: Final = frozenset({"handoff.accepted", "handoff.declined", "note.added"})
#: How staff record that they confirmed who a customer is; every other proof (a knowledge
#: answer, a code, a sign-in) is the customer's, recorded by what checked it.
STAFF_PROOFS: Final = frozenset({"agent"})
#: What a supervisor may write on any conversation: an agent's events, and interventions.
SUPERVISOR_EVENTS: Final = AGENT_EVENTS | {
    "handoff.offered",
    "conversation.reopened",
    "conversation.abandoned",
}
#: What a store associate may write while a visit at their store is live.
ASSOCIATE_EVENTS: Final = frozenset({
    "leg.started", "leg.ended", "note.added", "action.requested", "action.completed",
    "message.sent", "conversation.waiting", "conversation.resolved",
})  # fmt: skip
#: Payload fields that name the agent acting, for events an agent does as themselves.
_AGENT_FIELDS: Final = {
    "handoff.accepted": "agent_id",
    "handoff.declined": "agent_id",
    "handoff.returned": "agent_id",
    "note.added": "author_id",
}

ReadRule = Callable[[Principal, ConversationState], None]
AppendRule = Callable[[Principal, ConversationState, Event], None]
_READ: dict[str, ReadRule] = {}
_APPEND: dict[str, AppendRule] = {}


def _deny(principal: Principal, reason: str) -> Forbidden:
    return Forbidden(f"{principal.kind} {principal.subject}: {reason}")


def _rule(table: dict[str, Any], *kinds: str) -> Callable[[Any], Any]:
    def decorate(fn: Any) -> Any:
        for kind in kinds:
            table[kind] = fn
        return fn

    return decorate


def allows(check: Callable[..., None], *args: Any) -> bool:
    """Whether ``check(*args)`` allows the action: ``allows(can_append, p, state, event)``."""
    try:
        check(*args)
    except Forbidden:
        return False
    return True


# -- public checks ---------------------------------------------------------------


def can_read_conversation(principal: Principal, state: ConversationState) -> None:
    """Raise Forbidden unless ``principal`` may read the conversation ``state`` folds."""
    _only_admin_on_system_streams(principal, state.conversation_id)
    rule = _READ.get(principal.kind)
    if rule is None:
        raise _deny(principal, "may not read conversations")
    rule(principal, state)


def can_append(principal: Principal, state: ConversationState, event: Event) -> None:
    """Raise Forbidden unless ``principal`` may append ``event`` to the conversation ``state``."""
    if event.conversation_id != state.conversation_id:
        raise _deny(principal, f"the event is for conversation {event.conversation_id}, "
                               f"not {state.conversation_id}")  # fmt: skip
    _only_admin_on_system_streams(principal, state.conversation_id)
    rule = _APPEND.get(principal.kind)
    if rule is None:
        raise _deny(principal, "may not append events")
    rule(principal, state, event)


def can_read_queue(principal: Principal, queue: str) -> None:
    """Raise Forbidden unless ``principal`` may see the conversations waiting in ``queue``."""
    if principal.kind in {"admin", "supervisor"}:
        return
    if principal.kind == "agent" and queue in principal.queues:
        return
    raise _deny(principal, f"may not see queue {queue}")


def can_manage_tokens(principal: Principal) -> None:
    """Raise Forbidden unless ``principal`` may issue and revoke tokens (admins only)."""
    if principal.kind != "admin":
        raise _deny(principal, "only admins manage tokens")


def _only_admin_on_system_streams(principal: Principal, conversation_id: str) -> None:
    if conversation_id.startswith(SYSTEM_PREFIX) and principal.kind != "admin":
        raise _deny(principal, f"{conversation_id} is a system stream; only admins may use it")


# -- admin -----------------------------------------------------------------------


@_rule(_READ, "admin")
def _admin_reads(principal: Principal, state: ConversationState) -> None:
    return


@_rule(_APPEND, "admin")
def _admin_appends(principal: Principal, state: ConversationState, event: Event) -> None:
    return


# -- customer --------------------------------------------------------------------


@_rule(_READ, "customer")
def _customer_reads(principal: Principal, state: ConversationState) -> None:
    who = principal.customer_id
    if who is None or (who != state.customer_id and who not in state.aliases):
        raise _deny(principal, f"conversation {state.conversation_id} is not theirs")
    bound = principal.conversation_id
    if bound is not None and bound != state.conversation_id:
        raise _deny(principal, f"the token is bound to conversation {bound}")


@_rule(_APPEND, "customer")
def _customer_appends(principal: Principal, state: ConversationState, event: Event) -> None:
    _customer_reads(principal, state)
    if event.type != "message.received":
        raise _deny(principal, f"customers may only send messages, not {event.type}")
    if event.actor.kind != "customer" or event.actor.id != principal.customer_id:
        raise _deny(principal, "customers may only write as themselves")
    if event.customer_id != principal.customer_id:
        raise _deny(principal, "the event must name the customer of the token")
    if event.channel == "system":
        raise _deny(principal, "customers may not write on the system channel")


# -- channel adapters ------------------------------------------------------------


@_rule(_READ, "adapter")
def _adapter_reads(principal: Principal, state: ConversationState) -> None:
    channels = principal.channels
    if state.origin in channels or any(
        leg.get("channel") in channels for leg in state.legs.values()
    ):
        return
    raise _deny(principal, f"conversation {state.conversation_id} has no "
                           f"{'/'.join(sorted(channels))} leg")  # fmt: skip


@_rule(_APPEND, "adapter")
def _adapter_appends(principal: Principal, state: ConversationState, event: Event) -> None:
    channels = principal.channels
    if event.channel not in channels:
        raise _deny(principal, f"may write only {'/'.join(sorted(channels))} events, "
                               f"not {event.channel}")  # fmt: skip
    if event.type not in ADAPTER_EVENTS:
        raise _deny(principal, f"channel adapters may not write {event.type}")
    payload = event.payload
    named = {
        "conversation.started": payload.get("origin"),
        "leg.started": payload.get("channel"),
    }.get(event.type, event.channel)
    if named != event.channel:
        raise _deny(principal, f"{event.type} on {event.channel} names channel {named}")
    for leg_id in {event.leg_id, payload.get("leg_id") if event.type == "leg.ended" else None}:
        leg = state.legs.get(leg_id) if leg_id is not None else None
        if leg is not None and leg.get("channel") != event.channel:
            raise _deny(principal, f"leg {leg_id} is a {leg.get('channel')} leg")


# -- human agents and supervisors ------------------------------------------------


def _holds(principal: Principal, state: ConversationState) -> bool:
    """Whether the conversation is in the agent's queues, assigned or offered to them."""
    offer = state.offer or {}
    return (
        (state.queue is not None and state.queue in principal.queues)
        or state.assignee == principal.subject
        or offer.get("agent_id") == principal.subject
    )


def _no_proof_of_their_own(principal: Principal, event: Event) -> None:
    """Staff may link an identifier, or confirm one as themselves (method ``agent``), but
    not record a proof the customer never gave."""
    payload = event.payload
    if (
        event.type == "identity.linked"
        and payload.get("verified")
        and (payload.get("method") not in STAFF_PROOFS)
    ):
        raise _deny(principal, f"staff confirm who a customer is as method 'agent', not "
                               f"{payload.get('method')!r}")  # fmt: skip


def _as_themselves(principal: Principal, event: Event, fields: dict[str, str]) -> None:
    if event.actor.kind != "human" or event.actor.id != principal.subject:
        raise _deny(principal, "may only write as themselves")
    field = fields.get(event.type)
    if field is not None and event.payload.get(field) != principal.subject:
        raise _deny(principal, f"{event.type} must name them as {field}")


@_rule(_READ, "agent")
def _agent_reads(principal: Principal, state: ConversationState) -> None:
    if not _holds(principal, state):
        queues = ", ".join(sorted(principal.queues)) or "no queues"
        raise _deny(principal, f"conversation {state.conversation_id} is in queue "
                               f"{state.queue or 'none'}, not in {queues}, and not "
                               f"assigned or offered to them")  # fmt: skip


@_rule(_APPEND, "agent")
def _agent_appends(principal: Principal, state: ConversationState, event: Event) -> None:
    _agent_reads(principal, state)
    if event.type not in AGENT_EVENTS:
        raise _deny(principal, f"agents may not write {event.type}")
    if event.type not in AGENT_BEFORE_HOLDING and state.assignee != principal.subject:
        held = f"assigned to {state.assignee}" if state.assignee else "not assigned to them"
        raise _deny(principal, f"{event.type} is the assignee's: conversation "
                               f"{state.conversation_id} is {held}")  # fmt: skip
    _as_themselves(principal, event, _AGENT_FIELDS)
    _no_proof_of_their_own(principal, event)


@_rule(_READ, "supervisor")
def _supervisor_reads(principal: Principal, state: ConversationState) -> None:
    return


@_rule(_APPEND, "supervisor")
def _supervisor_appends(principal: Principal, state: ConversationState, event: Event) -> None:
    if event.type not in SUPERVISOR_EVENTS:
        raise _deny(principal, f"supervisors may not write {event.type}")
    # Supervisors may accept or return on an agent's behalf; notes are still their own.
    _as_themselves(principal, event, {"note.added": "author_id"})
    _no_proof_of_their_own(principal, event)


# -- store associates --------------------------------------------------------------


def _visits_here(principal: Principal, state: ConversationState, *, live: bool) -> list[str]:
    """The in-person legs of the conversation at the associate's store (live ones only)."""
    return [
        leg_id
        for leg_id, leg in state.legs.items()
        if leg.get("channel") == "in_person"
        and leg.get("location") == principal.store_id
        and (not live or leg.get("ended_at") is None)
    ]


@_rule(_READ, "associate")
def _associate_reads(principal: Principal, state: ConversationState) -> None:
    if not _visits_here(principal, state, live=False):
        raise _deny(principal, f"conversation {state.conversation_id} has no visit "
                               f"at {principal.store_id}")  # fmt: skip


@_rule(_APPEND, "associate")
def _associate_appends(principal: Principal, state: ConversationState, event: Event) -> None:
    if event.type not in ASSOCIATE_EVENTS:
        raise _deny(principal, f"associates may not write {event.type}")
    _as_themselves(principal, event, _AGENT_FIELDS)
    if event.type == "leg.started":
        payload = event.payload
        if payload.get("channel") != "in_person" or payload.get("location") != principal.store_id:
            raise _deny(principal, f"may open only in-person visits at {principal.store_id}")
        return
    live = _visits_here(principal, state, live=True)
    if not live:
        raise _deny(principal, f"no live visit at {principal.store_id} on conversation "
                               f"{state.conversation_id}")  # fmt: skip
    if event.type == "leg.ended" and event.payload.get("leg_id") not in live:
        raise _deny(principal, "may end only a visit at their own store")
    if event.channel not in {"in_person", "chat", "system"}:
        raise _deny(principal, f"associates may not write on {event.channel}")

"""Authorization: what a principal may do, decided by the policy engine on live state.

The rules are Cedar policies (``security/policies/*.cedar``, decided by
:mod:`threadline.security.policy`); this module turns what the service knows
(a :class:`Principal`, a conversation's state, an event, a route) into Cedar's
entities and context, and Cedar's refusals into :class:`Forbidden`. Every check
raises :class:`Denied` (a Forbidden) with the reason, or returns None when the
action is allowed; :func:`allows` turns a check into a bool. Everything is
denied unless a policy allows it:

* **customer** reads their own conversation (the one bound to the token, if
  any) and appends only ``message.received`` and their consent (given or
  withdrawn) as themselves to it.
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
* **bot** (the automated agent, in process) reads and answers only the
  conversations it holds (working them, waiting on the customer, handing over).
* **admin** may do everything, including managing tokens and system streams.

Who may call each endpoint, open each socket and view each page is decided the
same way (:func:`can_call`, :func:`can_open`, :func:`can_view`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

from threadline.core.conversation import ConversationState
from threadline.core.events import Event
from threadline.security.errors import Forbidden
from threadline.security.policy import ENGINE, REFUSALS, Decision, Entity, Request, render
from threadline.security.principal import Principal

SYSTEM_PREFIX: Final = "system:"
#: Anyone without a token: public endpoints and pages.
ANONYMOUS: Final = Entity("Anonymous", "")
#: The kind of principal each Cedar principal type is.
_TYPES: Final = {
    "customer": "Customer", "adapter": "Adapter", "agent": "Agent", "supervisor": "Supervisor",
    "associate": "Associate", "kiosk": "Kiosk", "admin": "Admin", "bot": "Bot",
}  # fmt: skip
#: Payload fields the rules read, when they are strings.
_PAYLOAD_FIELDS: Final = ("origin", "channel", "location", "agent_id", "author_id", "method")
#: The latest states' entities (by the state's identity; the state is kept with it).
_ENTITIES: dict[int, tuple[ConversationState, Entity]] = {}
_KEPT: Final = 64
#: Path parameters a route's rules read, by what Cedar's context calls them.
TARGETS: Final = {"agent_id": "agent", "store_id": "store", "customer_id": "customer",
                  "queue_id": "queue"}  # fmt: skip


class Denied(Forbidden):
    """The policy refused: ``decision`` holds the refusing policies and their version."""

    def __init__(self, reason: str, decision: Decision | None = None) -> None:
        super().__init__(reason)
        self.decision = decision


@lru_cache(maxsize=64)
def automated_agent(name: str) -> Principal:
    """The principal of the in-process automated agent (the bot) called ``name``."""
    return Principal(
        subject=name,
        kind="bot",
        scopes=frozenset(),
        token_id=f"in-process:{name}",
        issued_at=datetime.min.replace(tzinfo=UTC),
        expires_at=datetime.max.replace(tzinfo=UTC),
    )


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
    _check(principal, "read", conversation_entity(state))


def readable_among(principal: Principal, states: Iterable[ConversationState]) -> set[str]:
    """The ids of the conversations among ``states`` that ``principal`` may read, decided
    together (a listing)."""
    who = principal_entity(principal)
    if who is None:
        return set()
    found = list(states)
    requests = [Request(who, "read", conversation_entity(state)) for state in found]
    decisions = ENGINE.decide_all(requests)
    return {s.conversation_id for s, d in zip(found, decisions, strict=True) if d.allowed}


def can_append(principal: Principal, state: ConversationState, event: Event) -> None:
    """Raise Forbidden unless ``principal`` may append ``event`` to the conversation ``state``."""
    can_append_each(principal, [(state, event)])


def can_append_each(principal: Principal, steps: Iterable[tuple[ConversationState, Event]]) -> None:
    """Raise Forbidden for the first event ``principal`` may not append on the state it
    follows; the events of one append are decided together."""
    who = principal_entity(principal)
    requests = [Request(who or ANONYMOUS, event.type, conversation_entity(state),
                        event_context(state, event)) for state, event in steps]  # fmt: skip
    if who is None:
        if requests:
            raise _refused(principal, requests[0], None)
        return
    for request, decision in zip(requests, ENGINE.decide_all(requests), strict=True):
        if not decision.allowed:
            raise _refused(principal, request, decision)


def can_open_visit(principal: Principal, state: ConversationState, looked_up: bool) -> None:
    """Raise Forbidden unless ``principal`` may open an in-person visit on the conversation
    (``looked_up``: they recorded a look-up of its customer lately)."""
    _check(principal, "open_visit", conversation_entity(state), {"looked_up": looked_up})


def can_read_queue(principal: Principal, queue: str) -> None:
    """Raise Forbidden unless ``principal`` may see the conversations waiting in ``queue``."""
    _check(principal, "read_queue", Entity("Queue", queue, {"name": queue}))


def can_see_identifiers(principal: Principal) -> None:
    """Raise Forbidden unless ``principal`` may see customers' identifiers in full, not
    masked (supervisors and admins)."""
    _check(principal, "see_identifiers", Entity("Identifiers", "identifiers"))


def can_manage_tokens(principal: Principal) -> None:
    """Raise Forbidden unless ``principal`` may issue and revoke tokens (admins only)."""
    _check(principal, "manage_tokens", Entity("Tokens", "tokens"))


def can_work(principal: Principal, state: ConversationState) -> None:
    """Raise Forbidden unless ``principal`` may work the conversation at the desk (reply,
    transfer, return, resolve): its assignee, or someone who oversees every queue."""
    _check(principal, "work", conversation_entity(state))


def can_answer_offer(principal: Principal, state: ConversationState, offer_id: str) -> None:
    """Raise Forbidden unless ``principal`` may answer the offer open on the conversation."""
    _check(principal, "answer_offer", conversation_entity(state), {"offer": offer_id})


def can_call(
    principal: Principal | None, endpoint: str, target: Mapping[str, str] | None = None
) -> None:
    """Raise Forbidden unless ``principal`` (None: no token) may call ``endpoint``
    (``"GET /agents/{agent_id}"``) for ``target``: what its path names (:func:`targets`)."""
    _check(principal, "call", Entity("Endpoint", endpoint), target)


def can_open(
    principal: Principal | None, socket: str, target: Mapping[str, str] | None = None
) -> None:
    """Raise Forbidden unless ``principal`` may open the WebSocket ``socket`` (its path)
    for ``target``."""
    _check(principal, "open", Entity("Socket", socket), target)


def can_view(principal: Principal | None, page: str) -> None:
    """Raise Forbidden unless ``principal`` may view the page ``page`` (its path)."""
    _check(principal, "view", Entity("Page", page))


def decide(
    principal: Principal | None,
    action: str,
    resource: Entity,
    context: Mapping[str, Any] | None = None,
) -> Decision:
    """The policy's decision on ``principal`` doing ``action`` to ``resource``."""
    who = principal_entity(principal) if principal is not None else ANONYMOUS
    request = Request(who or ANONYMOUS, action, resource, dict(context or {}))
    if who is None:
        return Decision(False, (), ENGINE.version, render(_refusal(action), request))
    return ENGINE.decide(request)


def _check(
    principal: Principal | None,
    action: str,
    resource: Entity,
    context: Mapping[str, Any] | None = None,
) -> None:
    decision = decide(principal, action, resource, context)
    if not decision.allowed:
        raise Denied(f"{_name(principal)}: {decision.reason}", decision)


def _refused(principal: Principal, request: Request, decision: Decision | None) -> Denied:
    reason = decision.reason if decision is not None else render(_refusal(request.action),
                                                                 request)  # fmt: skip
    return Denied(f"{_name(principal)}: {reason}", decision)


def _refusal(action: str) -> str:
    return REFUSALS.get(action, REFUSALS["append"])


def _name(principal: Principal | None) -> str:
    return "anonymous" if principal is None else f"{principal.kind} {principal.subject}"


# -- what Cedar gets -----------------------------------------------------------------


@lru_cache(maxsize=4096)
def principal_entity(principal: Principal) -> Entity | None:
    """``principal`` as a Cedar entity; None for a kind no policy knows (denied)."""
    kind = principal.kind
    attrs: dict[str, Any] = {"subject": principal.subject}
    if kind == "customer":
        if principal.customer_id is None:
            return None
        attrs["customer_id"] = principal.customer_id
        if principal.conversation_id is not None:
            attrs["conversation"] = principal.conversation_id
    elif kind == "adapter":
        attrs["channels"] = sorted(principal.channels)
    elif kind == "agent":
        attrs["queues"] = sorted(principal.queues)
    elif kind in {"associate", "kiosk"}:
        if principal.store_id is None:
            return None
        attrs["store"] = principal.store_id
    elif kind not in _TYPES:
        return None
    return Entity(_TYPES[kind], principal.subject, attrs)


def conversation_entity(state: ConversationState) -> Entity:
    """The conversation as its live state stands: what the rules read of it."""
    # A state is frozen: the checks of one command or turn on it build its entity once.
    kept = _ENTITIES.get(id(state))
    if kept is not None and kept[0] is state:
        return kept[1]
    entity = _conversation_entity(state)
    _ENTITIES[id(state)] = (state, entity)
    if len(_ENTITIES) > _KEPT:
        del _ENTITIES[next(iter(_ENTITIES))]
    return entity


def _conversation_entity(state: ConversationState) -> Entity:
    cid = state.conversation_id
    channels: set[str] = {state.origin} if state.origin else set()
    stores: set[str] = set()
    live: set[str] = set()
    for leg in state.legs.values():
        channel = leg.get("channel")
        if isinstance(channel, str):
            channels.add(channel)
        location = leg.get("location")
        if channel == "in_person" and isinstance(location, str):
            stores.add(location)
            if leg.get("ended_at") is None:
                live.add(location)
    attrs: dict[str, Any] = {
        "id": cid,
        "system": cid.startswith(SYSTEM_PREFIX),
        "aliases": sorted(state.aliases),
        "channels": sorted(channels),
        "stores": sorted(stores),
        "live_stores": sorted(live),
    }
    offered_to = (state.offer or {}).get("agent_id")
    for name, value in (("status", state.status), ("customer_id", state.customer_id),
                        ("queue", state.queue), ("assignee", state.assignee),
                        ("offered_to", offered_to)):  # fmt: skip
        if isinstance(value, str):
            attrs[name] = value
    return Entity("Conversation", cid, attrs)


def event_context(state: ConversationState, event: Event) -> dict[str, Any]:
    """What the rules read of ``event``, and of the legs of ``state`` it names."""
    payload = event.payload
    facts: dict[str, Any] = {"verified": bool(payload.get("verified"))}
    for name in _PAYLOAD_FIELDS:
        value = payload.get(name)
        if type(value) is str:
            facts[name] = value
    context: dict[str, Any] = {
        "conversation": event.conversation_id,
        "channel": event.channel,
        "actor": {"kind": event.actor.kind, "id": event.actor.id},
        "payload": facts,
    }
    if event.customer_id is not None:
        context["customer_id"] = event.customer_id
    if event.leg_id is not None and event.leg_id in state.legs:
        context["leg"] = _leg(event.leg_id, state.legs[event.leg_id])
    ended = payload.get("leg_id") if event.type == "leg.ended" else None
    if isinstance(ended, str) and ended in state.legs:
        context["ended_leg"] = _leg(ended, state.legs[ended])
    return context


def _leg(leg_id: str, leg: Mapping[str, Any]) -> dict[str, Any]:
    channel, location = leg.get("channel"), leg.get("location")
    out: dict[str, Any] = {"id": leg_id, "channel": channel if isinstance(channel, str) else "",
                           "live": leg.get("ended_at") is None}  # fmt: skip
    if isinstance(location, str):
        out["location"] = location
    return out


def targets(path_params: Mapping[str, Any]) -> dict[str, str]:
    """What a route's path names, as the rules read it: ``{"agent_id": …}`` gives
    ``{"agent": …}``."""
    return {TARGETS[k]: str(v) for k, v in path_params.items() if k in TARGETS}

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
* **agent** reads conversations waiting in their queues, assigned to them or offered
  to them (not a colleague's, nor one resolved since); answers an offer or adds a note
  before holding one, and does the rest of the work (replies, resolving, consent,
  identity) only on those assigned to them, acting only as themselves. Staff never
  record a customer's proof: they confirm who a customer is as method ``agent``.
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
from typing import Any, Final, NamedTuple

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
_PAYLOAD_FIELDS: Final = (
    "origin", "channel", "location", "agent_id", "author_id", "method", "queue"
)  # fmt: skip
_NO_FIELDS: Final = (None,) * len(_PAYLOAD_FIELDS)
#: The latest states' facts and entities (by the state's identity; the state is kept with it).
_STATES: dict[int, tuple[ConversationState, _State]] = {}
#: The latest facts' entities.
_ENTITIES: dict[_State, Entity] = {}
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
    facts = _state_facts(state)
    key = (principal, "read", facts)
    decision = _DECISIONS.get(key)
    if decision is None:
        decision = decide(principal, "read", _entity(facts))
        _DECISIONS.keep(key, decision)
    if not decision.allowed:
        raise Denied(f"{_name(principal)}: {decision.reason}", decision)


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
    keys = []
    decisions: list[Decision | None] = []
    for state, event in steps:
        key = (principal, _event_facts(event), _state_facts(state))
        keys.append(key)
        decisions.append(_DECISIONS.get(key) if who is not None else None)
    if who is None:
        if keys:
            request = _request(ANONYMOUS, keys[0][1], keys[0][2])
            raise _refused(principal, request, None)
        return
    missing = [n for n, d in enumerate(decisions) if d is None]
    if missing:
        requests = [_request(who, keys[n][1], keys[n][2]) for n in missing]
        for n, decision in zip(missing, ENGINE.decide_all(requests), strict=True):
            decisions[n] = decision
            _DECISIONS.keep(keys[n], decision)
    for key, found in zip(keys, decisions, strict=True):
        if found is not None and not found.allowed:
            raise _refused(principal, _request(who, key[1], key[2]), found)


def _request(who: Entity, event: _Event, state: _State) -> Request:
    return Request(who, event.type, _entity(state), _event_context(state, event))


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


class _Leg(NamedTuple):
    """What the rules read of one leg of a conversation."""

    id: str
    channel: str | None
    location: str | None
    live: bool


class _State(NamedTuple):
    """What the rules read of a conversation's live state: its entity is made of these,
    so two states with the same facts get the same decisions."""

    conversation_id: str
    origin: str | None
    status: str | None
    customer_id: str | None
    queue: str | None
    assignee: str | None
    offered_to: str | None
    aliases: tuple[str, ...]
    legs: tuple[_Leg, ...]
    #: The queues of the approvals waiting on it.
    approval_queues: tuple[str, ...] = ()
    #: Who decided one of its approvals.
    approvers: tuple[str, ...] = ()


class _Event(NamedTuple):
    """What the rules read of an event (with the facts of its state: its context)."""

    type: str
    conversation_id: str
    channel: str
    actor_kind: str
    actor_id: str
    customer_id: str | None
    verified: bool
    #: The string values of :data:`_PAYLOAD_FIELDS`, in order (None: not a string).
    payload: tuple[str | None, ...]
    leg_id: str | None
    ended_leg: str | None


def _text(value: Any) -> str | None:
    return value if type(value) is str else None


def _state_facts(state: ConversationState) -> _State:
    """The facts of ``state``, built once per state (a state is frozen: the checks of one
    command or turn on it share them)."""
    kept = _STATES.get(id(state))
    if kept is not None and kept[0] is state:
        return kept[1]
    legs = tuple([_Leg(leg_id, _text(leg.get("channel")), _text(leg.get("location")),
                       leg.get("ended_at") is None)
                  for leg_id, leg in state.legs.items()])  # fmt: skip
    offer = state.offer
    facts = _State(state.conversation_id, _text(state.origin), _text(state.status),
                   _text(state.customer_id), _text(state.queue), _text(state.assignee),
                   _text(offer.get("agent_id")) if offer else None,
                   tuple(sorted(state.aliases)) if state.aliases else (), legs,
                   tuple(sorted({str(a["queue"]) for a in state.approvals.values()
                                if a["status"] == "pending"}))
                   if state.approvals else (),
                   tuple(sorted(state.approvers)) if state.approvers else ())  # fmt: skip
    _STATES[id(state)] = (state, facts)
    if len(_STATES) > _KEPT:
        del _STATES[next(iter(_STATES))]
    return facts


def conversation_entity(state: ConversationState) -> Entity:
    """The conversation as its live state stands: what the rules read of it."""
    return _entity(_state_facts(state))


def _entity(facts: _State) -> Entity:
    """The entity of ``facts``, kept for the latest facts asked about (built on a miss of
    the kept decisions only)."""
    entity = _ENTITIES.get(facts)
    if entity is None:
        entity = _ENTITIES[facts] = _conversation_entity(facts)
        if len(_ENTITIES) > _KEPT:
            del _ENTITIES[next(iter(_ENTITIES))]
    return entity


def _conversation_entity(facts: _State) -> Entity:
    cid = facts.conversation_id
    channels: set[str] = {facts.origin} if facts.origin else set()
    stores: set[str] = set()
    live: set[str] = set()
    for leg in facts.legs:
        if leg.channel is not None:
            channels.add(leg.channel)
        if leg.channel == "in_person" and leg.location is not None:
            stores.add(leg.location)
            if leg.live:
                live.add(leg.location)
    attrs: dict[str, Any] = {
        "id": cid,
        "system": cid.startswith(SYSTEM_PREFIX),
        "aliases": list(facts.aliases),
        "channels": sorted(channels),
        "stores": sorted(stores),
        "live_stores": sorted(live),
        "approval_queues": list(facts.approval_queues),
        "approvers": list(facts.approvers),
    }
    for name, value in (("status", facts.status), ("customer_id", facts.customer_id),
                        ("queue", facts.queue), ("assignee", facts.assignee),
                        ("offered_to", facts.offered_to)):  # fmt: skip
        if value is not None:
            attrs[name] = value
    return Entity("Conversation", cid, attrs)


def _event_facts(event: Event) -> _Event:
    get = event.payload.get
    raw = (get("origin"), get("channel"), get("location"), get("agent_id"), get("author_id"),
           get("method"), get("queue"))  # the order of _PAYLOAD_FIELDS  # fmt: skip
    payload: tuple[str | None, ...] = (
        _NO_FIELDS if raw == _NO_FIELDS else tuple([_text(value) for value in raw])
    )
    ended = get("leg_id") if event.type == "leg.ended" else None
    actor = event.actor
    return _Event(event.type, event.conversation_id, event.channel, actor.kind, actor.id,
                  event.customer_id, bool(get("verified")), payload, event.leg_id,
                  _text(ended))  # fmt: skip


def event_context(state: ConversationState, event: Event) -> dict[str, Any]:
    """What the rules read of ``event``, and of the legs of ``state`` it names."""
    return _event_context(_state_facts(state), _event_facts(event))


def _event_context(state: _State, event: _Event) -> dict[str, Any]:
    facts: dict[str, Any] = {"verified": event.verified}
    for name, value in zip(_PAYLOAD_FIELDS, event.payload, strict=True):
        if value is not None:
            facts[name] = value
    context: dict[str, Any] = {
        "conversation": event.conversation_id,
        "channel": event.channel,
        "actor": {"kind": event.actor_kind, "id": event.actor_id},
        "payload": facts,
    }
    if event.customer_id is not None:
        context["customer_id"] = event.customer_id
    legs = {leg.id: leg for leg in state.legs}
    if event.leg_id is not None and event.leg_id in legs:
        context["leg"] = _leg(legs[event.leg_id])
    if event.ended_leg is not None and event.ended_leg in legs:
        context["ended_leg"] = _leg(legs[event.ended_leg])
    return context


def _leg(leg: _Leg) -> dict[str, Any]:
    out: dict[str, Any] = {"id": leg.id, "channel": leg.channel or "", "live": leg.live}
    if leg.location is not None:
        out["location"] = leg.location
    return out


class _Decisions:
    """Decisions on conversations by the facts they were taken on: the principal, the
    action, the state's facts and the event's. A request is made of exactly these, so a
    kept decision is the engine's, without building the request again (the chat path
    asks the same few questions about each conversation every turn). Emptied when the
    engine forgets its decisions; at most ``size`` kept, the oldest out first."""

    def __init__(self, size: int) -> None:
        self._kept: dict[tuple[Any, ...], Decision] = {}
        self._size = size
        self._epoch = ENGINE.epoch

    def get(self, key: tuple[Any, ...]) -> Decision | None:
        if self._epoch != ENGINE.epoch:
            self._kept.clear()
            self._epoch = ENGINE.epoch
        return self._kept.get(key)

    def keep(self, key: tuple[Any, ...], decision: Decision) -> None:
        self._kept[key] = decision
        if len(self._kept) > self._size:
            del self._kept[next(iter(self._kept))]


_DECISIONS: Final = _Decisions(16_384)


def targets(path_params: Mapping[str, Any]) -> dict[str, str]:
    """What a route's path names, as the rules read it: ``{"agent_id": …}`` gives
    ``{"agent": …}``."""
    return {TARGETS[k]: str(v) for k, v in path_params.items() if k in TARGETS}

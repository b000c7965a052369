"""The conversation state, and the draft a fold builds the next one in.

:class:`ConversationState` is frozen; a fold works on a :class:`Draft`, a
mutable copy that copies a collection only when an apply function touches
it, and freezes back into a state. ``evolve`` is ``dataclasses.replace``
without the checks, for the hot path. Serialising a state
(``to_bytes``/``from_bytes``) is what a snapshot stores, tagged with
:data:`STATE_SCHEMA_VERSION`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Any, Final

import orjson

from threadline.core.verification import rank

#: Bump when the shape of ConversationState changes; older snapshots are then ignored.
STATE_SCHEMA_VERSION: Final = 5

BOT_ACTIVE: Final = "bot_active"
AWAITING_HUMAN: Final = "awaiting_human"
WITH_HUMAN: Final = "with_human"
WAITING_ON_CUSTOMER: Final = "waiting_on_customer"
RESOLVED: Final = "resolved"
ABANDONED: Final = "abandoned"
OPEN_STATES: Final = frozenset({BOT_ACTIVE, AWAITING_HUMAN, WITH_HUMAN, WAITING_ON_CUSTOMER})
CLOSED_STATES: Final = frozenset({RESOLVED, ABANDONED})

SUMMARY_LINES: Final = 40
RECENT_KEYS: Final = 64
RECENT_INTENTS: Final = 20
RECENT_PROOFS: Final = 16


@dataclass(frozen=True, slots=True)
class Policy:
    """Knobs of the state machine."""

    reopen_window: timedelta = timedelta(days=7)


DEFAULT_POLICY: Final = Policy()


def strongest(proofs: Iterable[Mapping[str, Any]], since_seq: int) -> str | None:
    """The strongest level among ``proofs`` given after ``since_seq``."""
    best: str | None = None
    for proof in proofs:
        if proof["seq"] > since_seq and rank(proof["level"]) > rank(best):
            best = proof["level"]
    return best


@dataclass(frozen=True, slots=True)
class ConversationState:
    """Everything known about one conversation, folded from its events."""

    conversation_id: str = ""
    seq: int = 0
    status: str | None = None
    resume_status: str | None = None
    origin: str | None = None
    opened_at: str | None = None
    updated_at: str | None = None
    closed_at: str | None = None
    outcome: str | None = None
    #: The conversation this one goes on in (a chat that joined the customer's open one).
    continued_in: str | None = None
    customer_id: str | None = None
    correlation_id: str | None = None
    legs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    intents: tuple[Mapping[str, Any], ...] = ()
    slots: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    pending_actions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    actions_done: int = 0
    actions_failed: int = 0
    queue: str | None = None
    handoff_reason: str | None = None
    offer: Mapping[str, Any] | None = None
    assignee: str | None = None
    consent: Mapping[str, bool] = field(default_factory=dict)
    identities: Mapping[str, bool] = field(default_factory=dict)
    #: The seq of the latest contact claim (a call's caller id): slots filled before it
    #: are what an earlier contact said, and answer no knowledge check for this one.
    contact_seq: int = 0
    #: The identifier the latest contact claimed (a call's number): what a proof on this
    #: contact links to the customer it identifies.
    contact: Mapping[str, Any] | None = None
    #: Verified proofs, oldest first (method, level, kind, channel, seq, at); the latest
    #: :data:`RECENT_PROOFS` are kept.
    proofs: tuple[Mapping[str, Any], ...] = ()
    #: Customer ids the conversation was known by before a proof identified the customer
    #: (an anonymous visitor), and chat sessions linked to it: they still speak for it.
    aliases: tuple[str, ...] = ()
    #: The one-time code challenge open on this conversation, if any.
    challenge: Mapping[str, Any] | None = None
    #: One-time codes sent on this conversation.
    codes_sent: int = 0
    #: Wrong answers given on this conversation, by proof method.
    failed_proofs: Mapping[str, int] = field(default_factory=dict)
    #: Sensitive tool calls waiting for a person's approval, by approval id (tool, arguments,
    #: queue, seq); a decided one leaves.
    approvals: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: Who decided one of its sensitive calls: they follow the conversation while it is
    #: open, to see the call run and the customer told.
    approvers: tuple[str, ...] = ()
    #: The automated agent (of the pack's several) that holds the conversation now.
    bot_agent: str | None = None
    summary: tuple[str, ...] = ()
    messages_in: int = 0
    messages_out: int = 0
    recent_keys: tuple[str, ...] = ()

    @property
    def live_legs(self) -> dict[str, Mapping[str, Any]]:
        """Legs that have started and not ended: the channels live right now."""
        return {leg_id: leg for leg_id, leg in self.legs.items() if leg.get("ended_at") is None}

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATES

    @property
    def level(self) -> str | None:
        """The strongest proof the current contact has given (None: none)."""
        return strongest(self.proofs, self.contact_seq)

    def to_bytes(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> ConversationState:
        raw: dict[str, Any] = orjson.loads(data)
        raw["intents"] = tuple(raw["intents"])
        raw["summary"] = tuple(raw["summary"])
        raw["recent_keys"] = tuple(raw["recent_keys"])
        raw["proofs"] = tuple(raw["proofs"])
        raw["aliases"] = tuple(raw["aliases"])
        raw["approvers"] = tuple(raw["approvers"])
        return cls(**raw)


_FIELDS: Final = tuple(f.name for f in fields(ConversationState))
#: Fields holding mappings or sequences that folds change in place: a draft copies them
#: only when it touches them. An optional one (``offer``) is only ever replaced whole, so a
#: draft carries it like a scalar.
_COLLECTIONS: Final = frozenset(
    f.name
    for f in fields(ConversationState)
    if ("Mapping" in str(f.type) or "tuple" in str(f.type)) and "None" not in str(f.type)
)
_SCALARS: Final = tuple(name for name in _FIELDS if name not in _COLLECTIONS)
_COLLECTION_ORDER: Final = tuple(name for name in _FIELDS if name in _COLLECTIONS)
_TYPES: Final = {f.name: str(f.type) for f in fields(ConversationState)}
_FIELD_SET: Final = frozenset(_FIELDS)


def _thawed(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: dict(v) if isinstance(v, Mapping) else v for k, v in value.items()}
    if isinstance(value, tuple):
        return list(value)
    return value


def _compiled(name: str, source: str) -> Callable[..., Any]:
    """A function from generated ``source``: folds copy every field, and a loop over
    field names costs several times what one straight line per field does."""
    namespace: dict[str, Any] = {
        "new": object.__new__,
        "State": ConversationState,
        **{f"set_{f}": getattr(ConversationState, f).__set__ for f in _FIELDS},
    }
    exec(source, namespace)
    compiled: Callable[..., Any] = namespace[name]
    return compiled


#: Copies a state's scalars onto a draft.
_copy_scalars: Final = _compiled(
    "copy", "def copy(draft, state):\n" + "".join(f"    draft.{n} = state.{n}\n" for n in _SCALARS)
)
#: A state from a draft: its scalars, and each collection from the draft once touched
#: (lists frozen back into tuples), else shared with the state the draft came from.
_freeze: Final = _compiled(
    "freeze",
    "def freeze(draft, source, touched):\n    state = new(State)\n"
    + "".join(f"    set_{n}(state, draft.{n})\n" for n in _SCALARS)
    + "".join(
        f"    set_{n}(state, draft.{n} if {n!r} in touched else source.{n})\n"
        if "tuple" not in _TYPES[n]
        else f"    set_{n}(state, tuple(draft.{n}) if {n!r} in touched else source.{n})\n"
        for n in _COLLECTION_ORDER
    )
    + "    return state\n",
)
#: One compiled copy-with-changes per set of changed fields (a handful recur).
_EVOLVERS: Final[dict[tuple[str, ...], Callable[..., ConversationState]]] = {}


def _evolver(names: tuple[str, ...]) -> Callable[..., ConversationState]:
    unknown = set(names) - _FIELD_SET
    if unknown:
        raise TypeError(f"ConversationState has no fields {sorted(unknown)}")
    params = "".join(f", new_{n}" for n in names)
    body = "".join(
        f"    set_{n}(state, {'new_' + n if n in names else 'source.' + n})\n" for n in _FIELDS
    )
    compiled = _compiled(
        "evolve", f"def evolve(source{params}):\n    state = new(State)\n{body}    return state\n"
    )
    _EVOLVERS[names] = compiled
    return compiled


def evolve(state: ConversationState, **changes: Any) -> ConversationState:
    """``dataclasses.replace`` for states on a hot path: no checks, no ``__init__``."""
    names = tuple(changes)
    build = _EVOLVERS.get(names) or _evolver(names)
    return build(state, *changes.values())


class Draft:
    """Mutable working copy used inside one fold call only.

    Scalars are copied up front; a collection is copied the first time an
    apply function touches it, and an untouched one is shared with the state
    it came from (states are never mutated, so sharing is safe).
    """

    __slots__ = (*_FIELDS, "_source", "_touched")

    def __init__(self, state: ConversationState) -> None:
        self._source = state
        self._touched: set[str] = set()
        _copy_scalars(self, state)

    def __getattr__(self, name: str) -> Any:
        # Only reached for a collection not touched yet in this fold.
        if name not in _COLLECTIONS:
            raise AttributeError(name)
        value = _thawed(getattr(self._source, name))
        setattr(self, name, value)
        self._touched.add(name)
        return value

    def freeze(self) -> ConversationState:
        state: ConversationState = _freeze(self, self._source, self._touched)
        return state

    @property
    def live_legs(self) -> dict[str, Mapping[str, Any]]:
        legs: dict[str, Mapping[str, Any]] = self.legs
        return {leg_id: leg for leg_id, leg in legs.items() if leg.get("ended_at") is None}

    def note(self, line: str) -> None:
        summary: list[str] = self.summary
        summary.append(line)
        if len(summary) > SUMMARY_LINES:
            del summary[0 : len(summary) - SUMMARY_LINES]

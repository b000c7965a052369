"""The identity projection's fold: pure functions from events to changed rows.

A backend loads the rows a batch of events touches into a :class:`Working`
set, folds the events into it here, and writes back what changed, in one
transaction with its checkpoint. Nothing here does I/O, so both backends fold
identically.

Rules the fold keeps:

* A link to a customer that was merged lands on the survivor.
* A link of an identifier that another customer holds changes nothing and
  opens a conflict (the fold catches races the command side could not see).
* A merge moves exactly the listed identifiers the absorbed customer still
  holds; an un-merge moves back exactly those the survivor still holds.
* An identifier erased with its customer (it reads as
  :data:`~threadline.core.catalogue.ERASED`) links, unlinks and conflicts nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from threadline.core.catalogue import ERASED
from threadline.core.events import Event

CUSTOMER_PREFIX: Final = "customer:"


def customer_stream(customer_id: str) -> str:
    """The stream of a customer's profile: ``customer:<customer_id>``."""
    return CUSTOMER_PREFIX + customer_id


@dataclass(frozen=True, slots=True)
class Link:
    """An identifier linked to a customer, with its verification and lineage."""

    key: str
    kind: str
    value: str
    customer_id: str
    verified: bool
    method: str
    linked_by: str
    position: int


@dataclass(frozen=True, slots=True)
class Merge:
    """``customer_id`` was absorbed into ``into_customer`` by ``merge_id``."""

    customer_id: str
    into_customer: str
    merge_id: str


@dataclass(frozen=True, slots=True)
class Conflict:
    """An identifier claimed for ``claimed_for`` while ``held_by`` holds it."""

    conflict_id: str
    key: str
    claimed_for: str
    held_by: str
    verified: bool
    method: str
    linked_by: str
    reason: str
    status: str  # open, keep or move
    position: int
    resolved_by: str | None = None


@dataclass(slots=True)
class Working:
    """Rows loaded for one batch (``None``: known to be absent) and which changed."""

    links: dict[str, Link | None] = field(default_factory=dict)
    merges: dict[str, Merge | None] = field(default_factory=dict)
    conflicts: dict[str, Conflict | None] = field(default_factory=dict)
    changed_links: set[str] = field(default_factory=set)
    changed_merges: set[str] = field(default_factory=set)
    changed_conflicts: set[str] = field(default_factory=set)

    def set_link(self, key: str, link: Link | None) -> None:
        self.links[key] = link
        self.changed_links.add(key)

    def set_merge(self, customer_id: str, merge: Merge | None) -> None:
        self.merges[customer_id] = merge
        self.changed_merges.add(customer_id)

    def set_conflict(self, conflict: Conflict) -> None:
        self.conflicts[conflict.conflict_id] = conflict
        self.changed_conflicts.add(conflict.conflict_id)

    def survivor(self, customer_id: str) -> str:
        """Where ``customer_id`` lives now, following merges (loaded as a closure)."""
        seen = {customer_id}
        merge = self.merges.get(customer_id)
        while merge is not None and merge.into_customer not in seen:
            customer_id = merge.into_customer
            seen.add(customer_id)
            merge = self.merges.get(customer_id)
        return customer_id


@dataclass(frozen=True, slots=True)
class Needs:
    """What a batch reads: identifier keys, customers (with their merge chains), conflicts."""

    keys: frozenset[str]
    customers: frozenset[str]
    conflicts: frozenset[str]


def key_of(kind: str, value: str) -> str:
    return f"{kind}:{value}"


def stream_customer(event: Event) -> str:
    return event.conversation_id[len(CUSTOMER_PREFIX) :]


def _keys(payload: Mapping[str, Any]) -> list[str]:
    if "identifiers" in payload:
        return [key_of(i["kind"], i["value"]) for i in payload["identifiers"]]
    if "kind" in payload and "value" in payload and payload["value"] != ERASED:
        return [key_of(payload["kind"], payload["value"])]
    return []


def needs(events: Iterable[Event]) -> Needs:
    keys: set[str] = set()
    customers: set[str] = set()
    conflicts: set[str] = set()
    for event in events:
        customers.add(stream_customer(event))
        payload = event.payload
        keys.update(_keys(payload))
        for name in ("from_customer", "into_customer", "claimed_for", "held_by"):
            if name in payload:
                customers.add(payload[name])
        if "conflict_id" in payload:
            conflicts.add(payload["conflict_id"])
    return Needs(frozenset(keys), frozenset(customers), frozenset(conflicts))


Applier = Callable[[Working, Event], None]
_APPLIERS: dict[str, Applier] = {}


def _applies(type_: str) -> Callable[[Applier], Applier]:
    def register(fn: Applier) -> Applier:
        _APPLIERS[type_] = fn
        return fn

    return register


@_applies("identity.claimed")
@_applies("identity.verified")
def _linked(w: Working, e: Event) -> None:
    p = e.payload
    if p["value"] == ERASED:
        return
    key = key_of(p["kind"], p["value"])
    owner = w.survivor(stream_customer(e))
    verified = e.type == "identity.verified"
    link = w.links.get(key)
    if link is None:
        w.set_link(key, Link(key, p["kind"], p["value"], owner, verified, p["method"],
                             p["linked_by"], e.position))  # fmt: skip
    elif w.survivor(link.customer_id) == owner:
        if verified and not link.verified:
            w.set_link(key, replace(link, customer_id=owner, verified=True, method=p["method"],
                                    linked_by=p["linked_by"], position=e.position))  # fmt: skip
    else:
        holder = w.survivor(link.customer_id)
        w.set_conflict(Conflict(e.event_id, key, owner, holder, verified, p["method"],
                                p["linked_by"], p["reason"], "open", e.position))  # fmt: skip


@_applies("identity.unlinked")
def _unlinked(w: Working, e: Event) -> None:
    if e.payload["value"] == ERASED:
        return
    key = key_of(e.payload["kind"], e.payload["value"])
    link = w.links.get(key)
    if link is not None and w.survivor(link.customer_id) == w.survivor(stream_customer(e)):
        w.set_link(key, None)


@_applies("customer.merged")
def _merged(w: Working, e: Event) -> None:
    p = e.payload
    absorbed, into = p["from_customer"], w.survivor(p["into_customer"])
    if absorbed == into or w.merges.get(absorbed) is not None:
        return
    w.set_merge(absorbed, Merge(absorbed, into, p["merge_id"]))
    for key in _keys(p):
        link = w.links.get(key)
        if link is not None and link.customer_id == absorbed:
            w.set_link(key, replace(link, customer_id=into, position=e.position))


@_applies("customer.unmerged")
def _unmerged(w: Working, e: Event) -> None:
    p = e.payload
    absorbed = p["from_customer"]
    merge = w.merges.get(absorbed)
    if merge is None or merge.merge_id != p["merge_id"]:
        return
    holder = w.survivor(merge.into_customer)
    w.set_merge(absorbed, None)
    for key in _keys(p):
        link = w.links.get(key)
        if link is not None and w.survivor(link.customer_id) == holder:
            w.set_link(key, replace(link, customer_id=absorbed, position=e.position))


@_applies("identity.conflict_raised")
def _conflict_raised(w: Working, e: Event) -> None:
    p = e.payload
    if p["value"] == ERASED:
        return
    w.set_conflict(Conflict(p["conflict_id"], key_of(p["kind"], p["value"]), p["claimed_for"],
                            p["held_by"], p["verified"], p["method"], p["linked_by"],
                            p["reason"], "open", e.position))  # fmt: skip


@_applies("identity.conflict_resolved")
def _conflict_resolved(w: Working, e: Event) -> None:
    p = e.payload
    conflict = w.conflicts.get(p["conflict_id"])
    if conflict is None or conflict.status != "open":
        return
    w.set_conflict(replace(conflict, status=p["resolution"], resolved_by=p["resolved_by"]))
    if p["resolution"] == "move":
        kind, _, value = conflict.key.partition(":")
        w.set_link(conflict.key, Link(conflict.key, kind, value, w.survivor(conflict.claimed_for),
                                      conflict.verified, conflict.method, p["resolved_by"],
                                      e.position))  # fmt: skip


#: Event types the projection folds; everything else on a customer stream is history only.
FOLDED: Final = frozenset(_APPLIERS)


def relevant(conversation_id: str, type_: str) -> bool:
    return type_ in FOLDED and conversation_id.startswith(CUSTOMER_PREFIX)


def fold(working: Working, events: Iterable[Event]) -> None:
    """Apply ``events`` (already filtered by :func:`relevant`) to ``working``, in order."""
    for event in events:
        _APPLIERS[event.type](working, event)

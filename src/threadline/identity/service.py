"""Identity commands and look-ups: links, verification, merges and conflicts as events.

Every change is an event on the customer's own stream ``customer:<id>``;
:class:`Identity` decides against the directory, appends, and waits until the
projection has folded what it appended, so a caller reads its own writes.
A claim of an identifier that another customer holds is never applied: it
raises a conflict for a human to resolve.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from threadline.audit import AuditTrail
from threadline.audit.actions import customer_merged
from threadline.core.errors import DomainError, NotFound, ValidationError
from threadline.core.events import Actor, Event, EventCodec, Lineage, new_id
from threadline.core.ports import EventStore
from threadline.engine.redaction import redacted
from threadline.identity.directory import IdentityDirectory, IdentityProjection
from threadline.identity.fold import Conflict, Link, customer_stream
from threadline.identity.identifiers import Identifier, parse

LINEAGE: Final = Lineage("threadline.identity", "0.1.0")
SETTLE_SECONDS: Final = 5.0
#: Methods that verify an identifier: a proof, or the business's own records (``import``,
#: ``system``: what its customer system says of a customer).
VERIFYING: Final = frozenset({"oidc", "otp", "knowledge", "seed", "import", "system"})


@dataclass(frozen=True, slots=True)
class Resolution:
    """Who an identifier belongs to, and how sure we are."""

    customer_id: str
    verified: bool
    method: str
    identifier: Identifier
    linked_by: str


@dataclass(frozen=True, slots=True)
class LinkOutcome:
    """What a link did: ``linked``, ``verified`` (a claim made good), ``unchanged`` or
    ``conflict`` (held by another customer; nothing moved)."""

    status: Literal["linked", "verified", "unchanged", "conflict"]
    customer_id: str
    identifier: Identifier
    conflict_id: str | None = None
    held_by: str | None = None


def _check_id(name: str, value: str) -> str:
    if not value or len(value) > 200 or any(c.isspace() for c in value) or ":" in value:
        raise ValidationError(
            f"bad {name} {value!r}", [{"field": name, "reason": "1-200 characters, no spaces"}]
        )
    return value


class Identity:
    """The identity service over a store and its directory."""

    def __init__(
        self,
        store: EventStore,
        directory: IdentityDirectory,
        codec: EventCodec | None = None,
        *,
        audit: AuditTrail | None = None,
    ) -> None:
        """``audit``: where merges and un-merges are recorded (the service's trail)."""
        self.store = store
        self.directory = directory
        self.codec = codec or EventCodec()
        self.projection = IdentityProjection(store, directory)
        self.audit = audit

    # -- reads ------------------------------------------------------------------------

    async def resolve(self, kind: str, value: str) -> Resolution | None:
        """The customer ``value`` (of ``kind``, parsed) belongs to, following merges."""
        identifier = parse(kind, value)
        await self.projection.catch_up()
        link = await self.directory.lookup(identifier)
        if link is None:
            return None
        return Resolution(link.customer_id, link.verified, link.method, identifier, link.linked_by)

    async def identifiers(self, customer_id: str) -> list[Link]:
        await self.projection.catch_up()
        return await self.directory.identifiers(await self.directory.survivor(customer_id))

    async def conflicts(self, status: str | None = "open") -> list[Conflict]:
        await self.projection.catch_up()
        return await self.directory.conflicts(status)

    async def history(self, customer_id: str) -> list[Event]:
        """Every event of the customer's own stream, in order."""
        records = await self.store.read(customer_stream(customer_id))
        return [self.codec.decode(r) for r in records]

    # -- writes -----------------------------------------------------------------------

    async def record(
        self, customer_id: str, type_: str, payload: Mapping[str, Any], actor: Actor, key: str = ""
    ) -> int:
        stream = customer_stream(customer_id)
        event = Event(
            conversation_id=stream,
            type=type_,
            payload=payload,
            actor=actor,
            customer_id=customer_id,
            idempotency_key=key or new_id(),
            lineage=LINEAGE,
        )
        result = await self.store.append(stream, [self.codec.encode(redacted(event))])
        await self._settle(result.positions[-1])
        return result.positions[-1]

    async def _settle(self, position: int) -> None:
        # PostgreSQL's read_all may hold a fresh event back while an older transaction
        # anywhere in the cluster is open; wait for it, so the caller reads its own write.
        deadline = time.monotonic() + SETTLE_SECONDS
        while await self.projection.catch_up() < position and time.monotonic() < deadline:  # noqa: ASYNC110 (polls the log)
            await asyncio.sleep(0.005)

    async def link(
        self,
        customer_id: str,
        identifier: Identifier,
        *,
        verified: bool,
        method: str,
        linked_by: str,
        reason: str,
        actor: Actor,
        conversation_id: str | None = None,
        key: str = "",
    ) -> LinkOutcome:
        """Link ``identifier`` to the customer (claimed, or verified by ``method``)."""
        _check_id("customer_id", customer_id)
        if verified and method not in VERIFYING:
            raise ValidationError(
                f"{method!r} does not verify an identifier",
                [
                    {
                        "field": "method",
                        "reason": f"verifying methods: {', '.join(sorted(VERIFYING))}",
                    }
                ],
            )
        await self.projection.catch_up()
        owner = await self.directory.survivor(customer_id)
        link = await self.directory.lookup(identifier)
        common = {"kind": identifier.kind, "value": identifier.value, "method": method,
                  "linked_by": linked_by, "reason": reason}  # fmt: skip
        if link is not None and link.customer_id != owner:
            conflict_id = new_id()
            payload = {**common, "conflict_id": conflict_id, "claimed_for": owner,
                       "held_by": link.customer_id, "verified": verified}  # fmt: skip
            await self.record(owner, "identity.conflict_raised", payload, actor, key)
            return LinkOutcome("conflict", owner, identifier, conflict_id, link.customer_id)
        if link is not None and (link.verified or not verified):
            return LinkOutcome("unchanged", owner, identifier)
        type_ = "identity.verified" if verified else "identity.claimed"
        await self.record(owner, type_, {**common, "conversation_id": conversation_id}, actor, key)
        return LinkOutcome("verified" if link is not None else "linked", owner, identifier)

    async def unlink(
        self, customer_id: str, identifier: Identifier, *, by: str, reason: str, actor: Actor
    ) -> None:
        """Remove ``identifier`` from the customer; NotFound if the customer does not hold it."""
        await self.projection.catch_up()
        owner = await self.directory.survivor(customer_id)
        link = await self.directory.lookup(identifier)
        if link is None or link.customer_id != owner:
            raise NotFound(f"{owner} holds no {identifier.kind} {identifier.value}")
        payload = {"kind": identifier.kind, "value": identifier.value, "unlinked_by": by,
                   "reason": reason}  # fmt: skip
        await self.record(owner, "identity.unlinked", payload, actor)

    async def merge(
        self, from_customer: str, into_customer: str, *, reason: str, by: str, actor: Actor
    ) -> str:
        """Move every identifier of ``from_customer`` to ``into_customer``; the merge's id."""
        _check_id("from_customer", from_customer)
        _check_id("into_customer", into_customer)
        await self.projection.catch_up()
        if await self.directory.merge_of(from_customer) is not None:
            raise DomainError(f"{from_customer} is already merged")
        survivor = await self.directory.survivor(into_customer)
        if survivor != into_customer:
            raise DomainError(f"{into_customer} was merged into {survivor}: merge into that")
        if from_customer == into_customer:
            raise DomainError("a customer cannot be merged into itself")
        moved = await self.directory.identifiers(from_customer)
        if not moved:
            raise NotFound(f"{from_customer} holds no identifiers")
        merge_id = new_id()
        payload = {"merge_id": merge_id, "from_customer": from_customer,
                   "into_customer": into_customer, "reason": reason, "merged_by": by,
                   "identifiers": _listed(moved)}  # fmt: skip
        position = await self.record(from_customer, "customer.merged", payload, actor)
        await self._audit_merge(actor, "customer.merged", from_customer, into_customer, merge_id,
                                position)  # fmt: skip
        return merge_id

    async def unmerge(self, from_customer: str, *, reason: str, by: str, actor: Actor) -> str:
        """Undo the merge that absorbed ``from_customer``; its identifiers come back."""
        await self.projection.catch_up()
        merge = await self.directory.merge_of(from_customer)
        if merge is None:
            raise DomainError(f"{from_customer} is not merged")
        moved = {}
        for event in await self.history(from_customer):
            if event.type == "customer.merged" and event.payload["merge_id"] == merge.merge_id:
                moved = {(i["kind"], i["value"]): i for i in event.payload["identifiers"]}
        holder = await self.directory.survivor(merge.into_customer)
        held = [x for x in await self.directory.identifiers(holder) if (x.kind, x.value) in moved]
        payload = {"merge_id": merge.merge_id, "from_customer": from_customer,
                   "into_customer": merge.into_customer, "reason": reason, "unmerged_by": by,
                   "identifiers": _listed(held)}  # fmt: skip
        position = await self.record(from_customer, "customer.unmerged", payload, actor)
        await self._audit_merge(actor, "customer.unmerged", from_customer, merge.into_customer,
                                merge.merge_id, position)  # fmt: skip
        return merge.merge_id

    async def _audit_merge(self, actor: Actor, action: str, from_customer: str,
                           into_customer: str, merge_id: str, position: int) -> None:  # fmt: skip
        if self.audit is not None:
            await self.audit.record(customer_merged(actor, action, from_customer, into_customer,
                                                    merge_id, position))  # fmt: skip

    async def resolve_conflict(
        self, conflict_id: str, resolution: str, *, by: str, note: str, actor: Actor
    ) -> Conflict:
        """Settle an open conflict: ``keep`` it with its holder or ``move`` it to the claimant."""
        await self.projection.catch_up()
        conflict = await self.directory.conflict(conflict_id)
        if conflict is None:
            raise NotFound(f"there is no conflict {conflict_id}")
        if conflict.status != "open":
            raise DomainError(f"conflict {conflict_id} is already resolved ({conflict.status})")
        payload = {"conflict_id": conflict_id, "resolution": resolution, "resolved_by": by,
                   "note": note}  # fmt: skip
        await self.record(conflict.claimed_for, "identity.conflict_resolved", payload, actor)
        settled = await self.directory.conflict(conflict_id)
        assert settled is not None
        return settled

    async def record_look_up(
        self, customer_id: str, kind: str, *, by: str, reason: str, actor: Actor
    ) -> None:
        """Record on the customer's stream that ``by`` looked them up, and why."""
        if not reason.strip():
            raise ValidationError(
                "a look-up needs a reason", [{"field": "reason", "reason": "empty"}]
            )
        payload = {"looked_up_by": by, "reason": reason.strip(), "kind": kind}
        await self.record(customer_id, "customer.looked_up", payload, actor)

    async def learn(
        self, customer_id: str, identifiers: Iterable[Identifier], *, method: str, source: str
    ) -> list[LinkOutcome]:
        """Link identifiers the business's own records give the customer, verified by
        ``method`` (``import``, ``system``); a repeat changes nothing."""
        return [
            await self.link(
                customer_id,
                identifier,
                verified=True,
                method=method,
                linked_by=source,
                reason=f"{method} from {source}",
                actor=Actor("system", "threadline"),
                key=f"{method}:{identifier.key}",
            )
            for identifier in identifiers
        ]


def _listed(links: Iterable[Link]) -> list[dict[str, Any]]:
    return [
        {"kind": x.kind, "value": x.value, "verified": x.verified, "method": x.method}
        for x in links
    ]

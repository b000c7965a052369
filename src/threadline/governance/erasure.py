"""Erasing a customer: crypto-shredding, then purging what was derived from their data.

:meth:`Erasure.erase` finds the customer and every identity that became them
(:func:`~threadline.governance.subjects.find_subject`), and then:

1. deletes their rows from the identity directory (their identifiers in clear);
2. destroys the data keys of those identities and of their conversations, and the
   conversations' snapshots, leaving no copy in the database's files
   (:meth:`~threadline.store.sealing.Encrypting.shred`);
3. drops what processes keep in memory: the conversations' hot states, the index
   entries (folded again from the log), cached keys, and the same in the bot worker;
4. records ``customer.erased`` on the customer's stream (ids and counts only) and an
   entry in the audit trail.

The log is never rewritten: every stream replays as before, with the erased fields
reading as :data:`~threadline.core.catalogue.ERASED` (or ``{}``/``[]``). Erasing again
finds nothing left to destroy and records it again. A running service also follows
``customer.erased`` recorded by another process (:meth:`Erasure.observe`), so an
erasure from the command line drops its cached keys and states too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Final

import structlog

from threadline.audit import AuditEntry, AuditTrail, subject
from threadline.core.errors import ConfigurationError
from threadline.core.events import EventCodec, EventRecord, new_id
from threadline.core.ports import EventStore
from threadline.engine.conversations import Conversations
from threadline.engine.projections import ConversationIndex
from threadline.governance.subjects import PURPOSE, Requester, Subject, find_subject
from threadline.identity.fold import CUSTOMER_PREFIX
from threadline.identity.service import Identity
from threadline.store.sealing import Encrypting, conversation_owner

log = structlog.get_logger("threadline.governance")

ERASED_TYPE: Final = "customer.erased"
#: Told the ids whose keys were destroyed and the conversations purged (another process).
Follower = Callable[[Collection[str], Collection[str]], None]


@dataclass(frozen=True, slots=True)
class Erased:
    """What an erasure destroyed and purged."""

    customer_id: str
    erasure_id: str
    identities: tuple[str, ...]
    conversations: tuple[str, ...]
    keys_destroyed: int
    snapshots_deleted: int
    directory_rows: int
    position: int

    def line(self) -> str:
        others = len(self.identities) - 1
        return (
            f"erased {self.customer_id}: {self.keys_destroyed} data keys destroyed,"
            f" {len(self.conversations)} conversations and {others} other identities purged;"
            " every stream still replays, with their personal data read as erased"
        )


class Erasure:
    """Erases customers from a running service (or from the command line, stopped)."""

    def __init__(
        self,
        store: EventStore,
        identity: Identity,
        index: ConversationIndex,
        conversations: Conversations,
        *,
        audit: AuditTrail | None = None,
        codec: EventCodec | None = None,
    ) -> None:
        self.store = store
        self.identity = identity
        self.index = index
        self.conversations = conversations
        self.audit = audit
        self.codec = codec or EventCodec()
        self._followers: list[Follower] = []
        self._done: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def follow(self, follower: Follower) -> None:
        """Tell ``follower`` what each erasure destroyed (a bot worker drops its caches)."""
        self._followers.append(follower)

    def _encrypting(self) -> Encrypting:
        store = self.store
        if not isinstance(store, Encrypting) or store.sealer is None:
            raise ConfigurationError("this store keeps personal data unencrypted: nothing to erase")
        return store

    async def erase(self, customer_id: str, by: Requester) -> Erased:
        """Erase ``customer_id`` and every identity that became them (module docstring)."""
        store = self._encrypting()
        found = await find_subject(customer_id, self.identity, self.index)
        rows = await self.identity.directory.forget(found.identities)
        shredded = await store.shred(found.key_owners, found.conversation_ids)
        erasure_id = new_id()
        self._done.add(erasure_id)
        await self._purge(found.key_owners, found.conversation_ids)
        payload = {"erasure_id": erasure_id, "erased_by": by.id,
                   "identities": list(found.identities[1:]),
                   "conversations": list(found.conversation_ids),
                   "keys_destroyed": shredded.keys}  # fmt: skip
        position = await self.identity.record(found.customer_id, ERASED_TYPE, payload, by.actor,
                                              key=f"erase:{erasure_id}")  # fmt: skip
        erased = Erased(found.customer_id, erasure_id, found.identities, found.conversation_ids,
                        shredded.keys, shredded.snapshots, rows, position)  # fmt: skip
        await self._audit(found, erased, by)
        return erased

    async def _purge(self, owners: Collection[str], conversation_ids: Collection[str]) -> None:
        self._forget(owners, conversation_ids)
        await self.index.refold(conversation_ids)

    def _forget(self, owners: Collection[str], conversation_ids: Collection[str]) -> None:
        store = self.store
        if isinstance(store, Encrypting) and store.sealer is not None:
            store.sealer.forget(owners)
        for conversation_id in conversation_ids:
            self.conversations.forget(conversation_id)
        for follower in self._followers:
            try:
                follower(owners, conversation_ids)
            except Exception:  # a follower's failure never undoes an erasure that happened
                log.exception("an erasure follower failed")

    async def _audit(self, found: Subject, erased: Erased, by: Requester) -> None:
        if self.audit is None:
            return
        await self.audit.record(AuditEntry(
            action=ERASED_TYPE, subject=subject("customer", found.customer_id),
            actor_kind=by.kind, actor_id=by.id, purpose=PURPOSE,
            details={"erasure_id": erased.erasure_id, "keys_destroyed": erased.keys_destroyed,
                     "conversations": len(erased.conversations),
                     "identities": len(erased.identities), "event_position": erased.position},
        ))  # fmt: skip

    def observe(self, record: EventRecord) -> None:
        """A LiveHub listener: an erasure another process recorded drops this process's
        cached keys, hot states and index entries of the customer."""
        if record.type != ERASED_TYPE:
            return
        payload = self.codec.decode(record).payload
        if payload["erasure_id"] in self._done:
            return
        customer_id = record.conversation_id.removeprefix(CUSTOMER_PREFIX)
        conversation_ids = [str(c) for c in payload["conversations"]]
        owners = [customer_id, *payload["identities"],
                  *(conversation_owner(c) for c in conversation_ids)]  # fmt: skip
        self._forget(owners, conversation_ids)
        task = asyncio.get_running_loop().create_task(self.index.refold(conversation_ids))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

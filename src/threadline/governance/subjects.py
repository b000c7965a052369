"""Who a data subject is in the log: a customer, and every identity that became them.

A customer is known by more than their id. Customers merged into them are the same
person; so are the anonymous chat visitors and unrecognised callers (``visitor-…``,
``caller-…``) that a proof identified as them, whose ids stay in their conversations'
``aliases``, and the chat devices linked to them in the directory. Their conversations are
those whose customer is now any of these ids: a conversation that began anonymously and
was identified as someone else is that someone's, never theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from threadline.core.errors import NotFound, ValidationError
from threadline.core.events import Actor
from threadline.core.verification import anonymous
from threadline.engine.projections import ConversationEntry, ConversationIndex
from threadline.identity.fold import customer_stream
from threadline.identity.service import Identity
from threadline.store.sealing import conversation_owner

MAX_ID: Final = 200
#: Why the audit trail records an erasure or an export (a code, never prose).
PURPOSE: Final = "data-subject-request"


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asks: an admin (``kind`` ``admin``, by token) or an operator at the command line
    (``operator``, ``cli:<login>``)."""

    kind: str
    id: str

    @property
    def actor(self) -> Actor:
        """The actor of the events recorded for the request."""
        return Actor("human" if self.kind == "admin" else "system", self.id)


def check_customer_id(customer_id: str) -> str:
    """``customer_id`` if it can name a customer (1-200 characters, no spaces or colons)."""
    if (
        not customer_id
        or len(customer_id) > MAX_ID
        or ":" in customer_id
        or any(c.isspace() or not c.isprintable() for c in customer_id)
    ):
        raise ValidationError(
            f"{customer_id[:40]!r} is not a customer id",
            [{"field": "customer_id", "reason": "1-200 printable characters, no spaces or ':'"}],
        )
    return customer_id


@dataclass(frozen=True, slots=True)
class Subject:
    """A customer as the log knows them."""

    #: The customer the request is about (the survivor, when the id asked for was merged).
    customer_id: str
    #: The customer and every customer merged into them.
    customers: tuple[str, ...]
    #: Anonymous visitors, callers and chat devices that became them.
    anonymous: tuple[str, ...]
    #: Their conversations, on every channel, newest activity first.
    conversations: tuple[ConversationEntry, ...]

    @property
    def identities(self) -> tuple[str, ...]:
        """Every id the customer was known by."""
        return self.customers + self.anonymous

    @property
    def conversation_ids(self) -> tuple[str, ...]:
        return tuple(entry.conversation_id for entry in self.conversations)

    @property
    def key_owners(self) -> tuple[str, ...]:
        """Whose data keys hold their data: their ids, and their conversations'."""
        return self.identities + tuple(conversation_owner(c) for c in self.conversation_ids)


async def find_subject(customer_id: str, identity: Identity, index: ConversationIndex) -> Subject:
    """The customer ``customer_id`` names, with every identity and conversation of theirs;
    NotFound when the log knows nothing of them."""
    check_customer_id(customer_id)
    await identity.projection.catch_up()
    await index.catch_up()
    directory = identity.directory
    survivor = await directory.survivor(customer_id)
    customers = [survivor, *(c for c in await directory.absorbed(survivor) if c != survivor)]
    known = set(customers)
    unnamed: list[str] = []
    for customer in customers:
        for link in await directory.identifiers(customer):
            if link.kind == "device" and anonymous(link.value) and link.value not in known:
                known.add(link.value)
                unnamed.append(link.value)
    found: dict[str, ConversationEntry] = {}
    pending = list(known)
    while pending:  # a conversation's aliases may lead to conversations still anonymous
        for entry in index.of_customer(pending.pop()):
            state = entry.state
            if state.customer_id not in known or entry.conversation_id in found:
                continue
            found[entry.conversation_id] = entry
            for alias in state.aliases:
                if anonymous(alias) and alias not in known:
                    known.add(alias)
                    unnamed.append(alias)
                    pending.append(alias)
    if not found and len(known) == 1 and not await _has_profile(identity, survivor):
        raise NotFound(f"no customer {customer_id}")
    conversations = sorted(found.values(), key=lambda e: (-e.position, e.conversation_id))
    return Subject(survivor, tuple(customers), tuple(unnamed), tuple(conversations))


async def _has_profile(identity: Identity, customer_id: str) -> bool:
    return bool(await identity.store.read(customer_stream(customer_id), limit=1))

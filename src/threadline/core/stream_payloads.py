"""Payload schemas of the event types on the streams beside conversations.

Human agents' presence and capacity (``agent:<agent_id>``), token revocations
(``system:tokens``), and each customer's identity, verification and in-person
visits (``customer:<customer_id>``). The conversation's own types are in
:mod:`threadline.core.payloads`, which registers first.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field

from threadline.core.catalogue import CATALOGUE, Payload, Pii
from threadline.core.payloads import Name

register = CATALOGUE.register


# -- human agents (on each agent's own stream, ``agent:<agent_id>``) ---------------


@register("agent.presence_changed", 1)
class AgentPresenceChanged(Payload):
    """A human agent becomes available for offers, steps away, or goes offline."""

    agent_id: Name
    presence: Literal["available", "away", "offline"]


@register("agent.capacity_changed", 1)
class AgentCapacityChanged(Payload):
    """How many conversations a human agent may hold at once, overriding the configured number."""

    agent_id: Name
    capacity: int = Field(ge=0, le=100)


# -- security (on the system stream ``system:tokens``) ------------------------------


@register("token.revoked", 1)
class TokenRevoked(Payload):
    """A bearer token is revoked; verification refuses it until ``expires_at``."""

    jti: Name
    reason: Name
    revoked_by: Name
    expires_at: AwareDatetime


# -- customer identity (on each customer's own stream, ``customer:<customer_id>``) ----------

IdentifierKind = Literal["phone", "email", "device", "member", "idp"]
#: How a link was made: caller id and typed values are claims; the rest are proofs.
#: How a link was made: a claim (caller id, typed by staff), a proof (oidc, otp, knowledge),
#: or the business's own records (seed, import, and its customer system).
LinkMethod = Literal["caller_id", "typed", "oidc", "otp", "knowledge", "seed", "import", "system"]


@register("identity.claimed", 1)
class IdentityClaimed(Payload):
    """An identifier is linked to the customer without proof yet (caller id, a typed email).

    ``linked_by`` (an adapter, bot or person) and ``reason`` are the link's lineage.
    """

    kind: IdentifierKind
    value: Annotated[Name, Pii]
    method: LinkMethod
    linked_by: Name
    reason: Name
    conversation_id: str | None = None


@register("identity.verified", 1)
class IdentityVerified(Payload):
    """An identifier is proven to belong to the customer (new, or a claim made good)."""

    kind: IdentifierKind
    value: Annotated[Name, Pii]
    method: LinkMethod
    linked_by: Name
    reason: Name
    conversation_id: str | None = None


@register("identity.unlinked", 1)
class IdentityUnlinked(Payload):
    """An identifier no longer belongs to the customer."""

    kind: IdentifierKind
    value: Annotated[Name, Pii]
    unlinked_by: Name
    reason: Name


class LinkedIdentifier(Payload):
    """One identifier as a merge moved it: with its verification and how it was made."""

    kind: IdentifierKind
    value: Annotated[Name, Pii]
    verified: bool
    method: LinkMethod


@register("customer.merged", 1)
class CustomerMerged(Payload):
    """On the absorbed customer's stream: its identifiers move to ``into_customer``.

    The absorbed stream stays and points to the survivor; ``identifiers`` is
    exactly what moved, so ``customer.unmerged`` can move it back.
    """

    merge_id: Name
    from_customer: Name
    into_customer: Name
    reason: Name
    merged_by: Name
    identifiers: list[LinkedIdentifier] = Field(default_factory=list)


@register("customer.unmerged", 1)
class CustomerUnmerged(Payload):
    """Undoes one merge: ``identifiers`` (those the merge moved) return to ``from_customer``."""

    merge_id: Name
    from_customer: Name
    into_customer: Name
    reason: Name
    unmerged_by: Name
    identifiers: list[LinkedIdentifier] = Field(default_factory=list)


@register("identity.conflict_raised", 1)
class IdentityConflictRaised(Payload):
    """On the claimant's stream: an identifier claimed for it is held by another customer.

    Nothing moves; a human resolves it.
    """

    conflict_id: Name
    kind: IdentifierKind
    value: Annotated[Name, Pii]
    claimed_for: Name
    held_by: Name
    verified: bool
    method: LinkMethod
    linked_by: Name
    reason: Name


@register("identity.conflict_resolved", 1)
class IdentityConflictResolved(Payload):
    """A human settles a conflict: ``keep`` it with its holder, or ``move`` it to the claimant."""

    conflict_id: Name
    resolution: Literal["keep", "move"]
    resolved_by: Name
    note: Annotated[str, Pii] = ""


@register("customer.erased", 1)
class CustomerErased(Payload):
    """The customer's personal data was erased (crypto-shredding): the data keys of the
    customer, of the ``identities`` that became them (customers merged into them, anonymous
    visitors and callers a proof identified) and of their ``conversations`` were destroyed.
    The events stay and replay; what they held of personal data reads as erased."""

    erasure_id: Name
    erased_by: Name
    identities: list[Name] = Field(default_factory=list)
    conversations: list[Name] = Field(default_factory=list)
    keys_destroyed: int = Field(ge=0)


@register("customer.looked_up", 1)
class CustomerLookedUp(Payload):
    """Someone looked the customer up by an identifier, and said why.

    One type for every look-up (the identity API, the associate app at a store),
    on the customer's stream ``customer:<id>``.
    """

    looked_up_by: Name
    reason: Annotated[str, Field(min_length=3, max_length=500), Pii]
    kind: IdentifierKind
    customer_id: Name | None = None
    store_id: str | None = None


@register("verification.code_sent", 2)
class VerificationCodeSent(Payload):
    """A one-time code went to the customer's phone or email, asked for in a conversation.

    The code itself is kept nowhere: the conversation holds a keyed digest of it.
    """

    challenge_id: Name
    conversation_id: str | None = None
    via: Literal["phone", "email"]
    expires_at: AwareDatetime


@CATALOGUE.upcaster("verification.code_sent", 1)
def _code_sent_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    # v1 was sent by the identity API to a verified identifier; it kept a hash of the code.
    via = payload["via_kind"] if payload["via_kind"] in ("phone", "email") else "phone"
    return {"challenge_id": payload["challenge_id"], "conversation_id": None, "via": via,
            "expires_at": payload["expires_at"]}  # fmt: skip


@register("verification.failed", 2)
class VerificationFailed(Payload):
    """A verification step did not pass: a wrong, expired or spent code, or a wrong answer;
    ``kind``/``value`` name the identifier it was to prove, where there was one."""

    method: Literal["otp", "knowledge"]
    reason: Literal["wrong", "expired", "exhausted"] = "wrong"
    challenge_id: str | None = None
    conversation_id: str | None = None
    kind: IdentifierKind | None = None
    value: Annotated[Name, Pii] | None = None


@CATALOGUE.upcaster("verification.failed", 1)
def _failed_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "reason": "wrong", "conversation_id": None}


@register("verification.unlocked", 1)
class VerificationUnlocked(Payload):
    """A person lifted the lockout that wrong proofs put on the customer: the failures before
    this event no longer count against them."""

    unlocked_by: Name
    reason: Annotated[str, Field(min_length=3, max_length=500), Pii]


# -- in person (codes on ``system:checkin``, queues on ``store:<id>``) ---------------------


@register("checkin.code_issued", 1)
class CheckinCodeIssued(Payload):
    """A check-in code was given to a customer; the digits are kept only as a keyed hash."""

    token_id: Name
    code_hash: Name
    conversation_id: Name
    customer_id: Name
    store_id: str | None = None
    expires_at: AwareDatetime


@register("visit.queued", 1)
class VisitQueued(Payload):
    """A customer checked in at a store's kiosk and waits to be served."""

    entry_id: Name
    store_id: Name
    customer_id: Name
    conversation_id: str | None = None
    display_name: Annotated[Name, Pii]
    method: Literal["phone", "code"]


@register("visit.called", 1)
class VisitCalled(Payload):
    """An associate takes a waiting customer from the store's queue."""

    entry_id: Name
    associate_id: Name
    conversation_id: Name

"""The privileged actions Threadline records, each a small pure function to its entry.

Customers reading their own conversations and channel adapters carrying turns
are the service working, not privileged access, and record nothing: the chat
path never touches the trail.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

from threadline.audit.entry import POLICY_VERSION, AuditEntry, Detail, stamp, subject
from threadline.core.events import Actor
from threadline.security.principal import Principal

#: Why staff read a conversation: the purpose their role gives them. Kinds missing here
#: (customers, channel adapters, kiosks) are not recorded when they read.
READ_PURPOSES: Final = {
    "agent": "case-handling",
    "supervisor": "supervision",
    "admin": "administration",
    "associate": "in-store-service",
}
#: The actor kind of someone at the command line (the id is ``cli:<login>``).
OPERATOR: Final = "operator"
TOKEN_ADMINISTRATION: Final = "token-administration"
POLICY_ADMINISTRATION: Final = "policy-administration"
IDENTITY_MERGE: Final = "identity-merge"


def conversation_read(caller: Principal, conversation_id: str, view: str) -> AuditEntry | None:
    """Staff read a conversation's ``view`` (``state``, ``events``); None for anyone else."""
    purpose = READ_PURPOSES.get(caller.kind)
    if purpose is None:
        return None
    return AuditEntry(
        action="conversation.read", subject=subject("conversation", conversation_id),
        actor_kind=caller.kind, actor_id=caller.subject, purpose=purpose,
        details={"view": view, "token_id": caller.token_id},
    )  # fmt: skip


def token_issued(operator: str, issued: Principal) -> AuditEntry:
    """An operator issued a token for ``issued`` (its holder, kind, scopes and bindings)."""
    details: dict[str, Detail] = {
        "holder": issued.subject,
        "kind": issued.kind,
        "scopes": tuple(sorted(issued.scopes)),
        "expires_at": stamp(issued.expires_at),
    }
    bindings = {"customer": issued.customer_id, "conversation": issued.conversation_id,
                "store": issued.store_id}  # fmt: skip
    details.update({name: value for name, value in bindings.items() if value is not None})
    if issued.queues:
        details["queues"] = tuple(sorted(issued.queues))
    return AuditEntry(
        action="token.issued", subject=subject("token", issued.token_id), actor_kind=OPERATOR,
        actor_id=operator, purpose=TOKEN_ADMINISTRATION, details=details,
    )  # fmt: skip


def token_revoked(operator: str, token_id: str, *, position: int, duplicate: bool) -> AuditEntry:
    """An operator revoked a token; ``position`` is the ``token.revoked`` event's, which
    holds the reason."""
    return AuditEntry(
        action="token.revoked", subject=subject("token", token_id), actor_kind=OPERATOR,
        actor_id=operator, purpose=TOKEN_ADMINISTRATION,
        details={"event_position": position, "already_revoked": duplicate},
    )  # fmt: skip


def customer_merged(
    actor: Actor, action: str, from_customer: str, into_customer: str, merge_id: str,
    position: int,
) -> AuditEntry:  # fmt: skip
    """``customer.merged`` or ``customer.unmerged``; the reason stays on the customer's
    stream (``position``), where erasure can reach it."""
    return AuditEntry(
        action=action, subject=subject("customer", from_customer), actor_kind=actor.kind,
        actor_id=actor.id, purpose=IDENTITY_MERGE,
        details={"into_customer": subject("customer", into_customer), "merge_id": merge_id,
                 "event_position": position},
    )  # fmt: skip


def business_reloaded(
    caller: Principal, business_id: str, digest: str, previous: str
) -> AuditEntry:
    """An admin read the business pack again."""
    return AuditEntry(
        action="business.reloaded", subject=subject("business", business_id),
        actor_kind=caller.kind, actor_id=caller.subject, purpose="administration",
        details={"digest": digest, "previous_digest": previous, "token_id": caller.token_id},
    )  # fmt: skip


def policy_changed(previous: str, files: Sequence[tuple[str, str]]) -> AuditEntry:
    """The trail's entries are now taken under other authorization policies than its last
    one was (``previous``): the policy files, each with the start of its SHA-256, and the
    version before. The files ship with the package, so the change came with a deployment."""
    return AuditEntry(
        action="policy.changed", subject=subject("policy", POLICY_VERSION), actor_kind="system",
        actor_id="deployment", purpose=POLICY_ADMINISTRATION,
        details={"previous_policy": previous,
                 "files": tuple(f"{name}:{hashlib.sha256(text.encode()).hexdigest()[:12]}"
                                for name, text in files)},
    )  # fmt: skip

"""The access-request export: everything the log holds of one customer, as one JSON bundle.

The bundle holds the customer's identifiers, their own streams (``customer:<id>``: identity
links, consent, verification, and every look-up of them: who accessed their data and why),
each of their conversations on every channel with its events decrypted, and the audit
trail's entries about them and their conversations. It is built from the
:class:`~threadline.governance.subjects.Subject` alone, so it holds nothing of anyone
else: a conversation is theirs only while its customer is one of their identities.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

from threadline.audit import AuditEntry, AuditTrail
from threadline.audit import subject as audit_subject
from threadline.core.events import Event, EventCodec
from threadline.core.ports import EventStore
from threadline.governance.subjects import PURPOSE, Requester, Subject
from threadline.identity.fold import customer_stream
from threadline.identity.service import Identity

FORMAT: Final = "threadline.subject-access/1"
#: Audit entries read at a time while looking for the customer's.
AUDIT_PAGE: Final = 1000


def event_json(event: Event) -> dict[str, Any]:
    """One event as the bundle shows it."""
    return {
        "event_id": event.event_id,
        "conversation_id": event.conversation_id,
        "seq": event.seq,
        "type": event.type,
        "version": event.version,
        "occurred_at": event.occurred_at.isoformat(),
        "recorded_at": event.recorded_at.isoformat() if event.recorded_at else None,
        "channel": event.channel,
        "leg_id": event.leg_id,
        "actor": {"kind": event.actor.kind, "id": event.actor.id},
        "customer_id": event.customer_id,
        "payload": dict(event.payload),
    }


async def _stream(store: EventStore, codec: EventCodec, stream: str) -> list[dict[str, Any]]:
    return [event_json(codec.decode(r)) for r in await store.read(stream)]


async def _accesses(audit: AuditTrail, subjects: set[str]) -> list[dict[str, Any]]:
    """The audit entries whose subject is one of ``subjects``, oldest first."""
    found: list[dict[str, Any]] = []
    seq = 1
    while rows := await audit.log.read(seq, AUDIT_PAGE):
        for row in rows:
            entry = row.entry
            if entry.subject in subjects:
                found.append(_access(entry))
        seq = rows[-1].seq + 1
    return found


def _access(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": entry.at.isoformat(),
        "action": entry.action,
        "subject": entry.subject,
        "actor": {"kind": entry.actor_kind, "id": entry.actor_id},
        "purpose": entry.purpose,
        "details": dict(entry.details),
    }


def _subjects(found: Subject, conversation_ids: Iterable[str]) -> set[str]:
    return {audit_subject("customer", c) for c in found.identities} | {
        audit_subject("conversation", c) for c in conversation_ids
    }


async def export_subject(
    found: Subject,
    identity: Identity,
    *,
    audit: AuditTrail | None = None,
    codec: EventCodec | None = None,
) -> dict[str, Any]:
    """The access-request bundle of ``found`` (JSON-ready)."""
    codec = codec or EventCodec()
    store = identity.store
    identifiers = [
        {
            "kind": link.kind,
            "value": link.value,
            "verified": link.verified,
            "method": link.method,
            "linked_by": link.linked_by,
        }
        for customer in found.customers
        for link in await identity.directory.identifiers(customer)
    ]
    conversations = []
    for entry in found.conversations:
        state = entry.state
        conversations.append({
            "conversation_id": entry.conversation_id, "customer_id": state.customer_id,
            "status": state.status, "channels": sorted(entry.channels),
            "opened_at": state.opened_at, "closed_at": state.closed_at,
            "events": await _stream(store, codec, entry.conversation_id),
        })  # fmt: skip
    bundle: dict[str, Any] = {
        "format": FORMAT,
        "customer_id": found.customer_id,
        "exported_at": datetime.now(UTC).isoformat(),
        "identities": {"customers": list(found.customers), "anonymous": list(found.anonymous)},
        "identifiers": identifiers,
        "profile": {c: await _stream(store, codec, customer_stream(c)) for c in found.customers},
        "conversations": conversations,
    }
    if audit is not None:
        bundle["accesses"] = await _accesses(audit, _subjects(found, found.conversation_ids))
    return bundle


async def record_export(audit: AuditTrail, found: Subject, by: Requester) -> None:
    """Record in the audit trail that ``by`` exported ``found``'s data."""
    await audit.record(AuditEntry(
        action="customer.exported", subject=audit_subject("customer", found.customer_id),
        actor_kind=by.kind, actor_id=by.id, purpose=PURPOSE,
        details={"conversations": len(found.conversations), "identities": len(found.identities)},
    ))  # fmt: skip

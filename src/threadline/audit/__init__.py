"""A tamper-evident audit trail of privileged actions.

Who read which conversation and why, who issued or revoked which token, who
merged which customers: each is an :class:`AuditEntry` appended to an
:class:`AuditLog` in the store's own database, hash-chained over its stored
bytes (:mod:`.chain`), with checkpoints signed by an Ed25519 key (:mod:`.keys`).
:func:`verify` finds the first entry that was changed, moved or removed, and
a forged or orphaned checkpoint; ``threadline audit verify`` runs it.

Because the chain covers the stored bytes, an entry can never be rewritten,
not even to erase someone's personal data. So entries carry none in clear:
ids, codes and numbers only (:mod:`.entry` enforces the shape); the reasons and
notes people type stay on the event streams, where per-customer erasure
reaches them, and an entry points at them by position.
"""

from threadline.audit.actions import READ_PURPOSES
from threadline.audit.chain import GENESIS, Checkpoint, Head, StoredEntry, chain_hash
from threadline.audit.entry import POLICY_VERSION, AuditEntry, subject
from threadline.audit.keys import AuditKey, audit_key_from_settings
from threadline.audit.log import AuditLog, open_audit_log
from threadline.audit.trail import AuditTrail, BrokenTrail
from threadline.audit.verify import Report, Verification, extends, verify

__all__ = [
    "GENESIS",
    "POLICY_VERSION",
    "READ_PURPOSES",
    "AuditEntry",
    "AuditKey",
    "AuditLog",
    "AuditTrail",
    "BrokenTrail",
    "Checkpoint",
    "Head",
    "Report",
    "StoredEntry",
    "Verification",
    "audit_key_from_settings",
    "chain_hash",
    "extends",
    "open_audit_log",
    "subject",
    "verify",
]

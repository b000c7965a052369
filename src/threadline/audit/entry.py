"""One audit entry and its canonical bytes.

The chain is computed over the bytes an entry is stored as, so an entry must
read the same forever: erasing a customer's personal data (destroying their
key) must never need an audit entry rewritten. Entries therefore carry no
personal data in clear, only ids: who acted (a principal's subject), on what
(``conversation:<id>``, ``customer:<id>``, ``token:<jti>``), under which policy,
for which purpose (a short code, never free text), and details that are ids,
numbers or flags. The checks here refuse anything that looks like prose (a
string with whitespace, a purpose that is not a code), which keeps a note, a
name or an address from slipping in; an id that is itself personal data (a
phone number used as an id) is the caller's to avoid.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeAlias

import orjson

from threadline.core.errors import ValidationError

# The authorization policy every decision is taken under now (``authz-`` and a digest of
# security/policies/); an entry names the one in force when it was recorded, so a later
# reading knows which rules applied.
from threadline.security.policy import POLICY_VERSION as POLICY_VERSION

#: The layout of the canonical bytes; bumped only with a new decoder beside the old.
FORMAT: Final = 1

Scalar: TypeAlias = str | int | bool | None
Detail: TypeAlias = Scalar | tuple[Scalar, ...]

_ACTION: Final = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+")
_SUBJECT: Final = re.compile(r"[a-z][a-z_]{0,31}:[^\s\x00-\x1f\x7f]{1,800}")
_CODE: Final = re.compile(r"[a-z][a-z0-9-]{0,63}")
_KIND: Final = re.compile(r"[a-z][a-z_]{0,31}")
_POLICY: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_ID: Final = re.compile(r"[^\s\x00-\x1f\x7f]{1,200}")
_KEY: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_DETAILS: Final = 32
MAX_LIST: Final = 100
_INT_RANGE: Final = range(-(2**63), 2**63)


def _refuse(name: str, reason: str) -> ValidationError:
    return ValidationError(f"audit entry: {name} {reason}", [{"field": name, "reason": reason}])


def _matches(pattern: re.Pattern[str], value: object, name: str, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise _refuse(name, f"must be {what}, not {value!r}")
    return value


def _scalar(value: object, name: str) -> Scalar:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if value not in _INT_RANGE:
            raise _refuse(name, "is out of the 64-bit range")
        return value
    return _matches(_ID, value, name, "an id (1-200 printable characters, no spaces)")


def _details(details: Mapping[str, Any]) -> dict[str, Detail]:
    if len(details) > MAX_DETAILS:
        raise _refuse("details", f"hold at most {MAX_DETAILS} keys")
    out: dict[str, Detail] = {}
    for key, value in details.items():
        _matches(_KEY, key, "details", "keyed by lower-case names")
        name = f"details.{key}"
        if isinstance(value, list | tuple):
            if len(value) > MAX_LIST:
                raise _refuse(name, f"lists at most {MAX_LIST} values")
            out[key] = tuple(_scalar(item, name) for item in value)
        else:
            out[key] = _scalar(value, name)
    return out


def stamp(moment: datetime) -> str:
    """A time as entries and checkpoints hold it: UTC, ISO 8601, microseconds."""
    if moment.tzinfo is None:
        raise _refuse("at", "must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """A privileged action: who did what to which subject, why, and under which policy.

    ``seq`` is 0 until the log appends the entry and numbers it. Every field is
    checked on construction (:mod:`module docs <threadline.audit.entry>`: ids and
    codes only, never personal data in clear).
    """

    action: str
    subject: str
    actor_kind: str
    actor_id: str
    purpose: str
    details: Mapping[str, Detail] = field(default_factory=dict, hash=False)
    policy: str = POLICY_VERSION
    at: datetime = field(default_factory=_now)
    seq: int = 0

    def __post_init__(self) -> None:
        _matches(_ACTION, self.action, "action", "a dotted name such as token.issued")
        _matches(_SUBJECT, self.subject, "subject", "kind:id, such as conversation:c-1")
        _matches(_KIND, self.actor_kind, "actor_kind", "a lower-case kind")
        _matches(_ID, self.actor_id, "actor_id", "an id (1-200 printable characters, no spaces)")
        _matches(_CODE, self.purpose, "purpose", "a code such as supervision, not prose")
        _matches(_POLICY, self.policy, "policy", "a policy version such as authz-1")
        if not isinstance(self.seq, int) or self.seq < 0:
            raise _refuse("seq", "must be 0 (not yet appended) or positive")
        at = datetime.fromisoformat(stamp(self.at))
        object.__setattr__(self, "at", at)
        object.__setattr__(self, "details", _details(self.details))

    def to_bytes(self) -> bytes:
        """The canonical bytes: compact JSON with sorted keys, the same for equal entries."""
        body = {
            "v": FORMAT,
            "seq": self.seq,
            "at": stamp(self.at),
            "actor": {"kind": self.actor_kind, "id": self.actor_id},
            "action": self.action,
            "subject": self.subject,
            "purpose": self.purpose,
            "policy": self.policy,
            "details": dict(self.details),
        }
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_bytes(cls, data: bytes) -> AuditEntry:
        """The entry ``data`` holds; ValidationError if it is not one."""
        try:
            body = orjson.loads(data)
            if body["v"] != FORMAT:
                raise _refuse("v", f"is format {body['v']!r}; this build reads {FORMAT}")
            return cls(
                seq=body["seq"],
                at=datetime.fromisoformat(body["at"]),
                actor_kind=body["actor"]["kind"],
                actor_id=body["actor"]["id"],
                action=body["action"],
                subject=body["subject"],
                purpose=body["purpose"],
                policy=body["policy"],
                details=body["details"],
            )
        except ValidationError:
            raise
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise _refuse("bytes", f"are not an audit entry ({exc.__class__.__name__})") from None

    def numbered(self, seq: int) -> AuditEntry:
        """This entry as the log's entry ``seq``."""
        return AuditEntry(
            action=self.action, subject=self.subject, actor_kind=self.actor_kind,
            actor_id=self.actor_id, purpose=self.purpose, details=self.details,
            policy=self.policy, at=self.at, seq=seq,
        )  # fmt: skip


def subject(kind: str, ident: str) -> str:
    """``kind:id``, the form an entry's subject takes (``subject("token", jti)``); spaces,
    control characters and ``%`` in ``ident`` are percent-encoded, so any stored id fits."""
    return f"{kind}:{_UNSAFE.sub(_escaped, ident)}"


_UNSAFE: Final = re.compile(r"[\s\x00-\x1f\x7f%]")


def _escaped(match: re.Match[str]) -> str:
    return "".join(f"%{byte:02X}" for byte in match.group().encode())

"""The hash chain over stored entries, and the signed checkpoints that anchor it.

Entry ``n`` is stored as its canonical bytes and the hash

    hash_n = SHA-256(hash_{n-1} || len(bytes_n) as 8 bytes big-endian || bytes_n)

with ``hash_0`` = :data:`GENESIS`. Changing, moving or removing any stored entry
changes every hash after it. Someone able to write the tables can recompute
those hashes too, so every so often a :class:`Checkpoint` ``(seq, hash, at)``
is signed with the audit key (Ed25519): a rewrite then no longer leads to a
signed hash, and a checkpoint kept outside the database also catches a trail
cut short after its last stored checkpoint.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Final, NamedTuple

import orjson

from threadline.audit.entry import AuditEntry, stamp
from threadline.core.errors import ValidationError

#: The hash before the first entry.
GENESIS: Final = hashlib.sha256(b"threadline.audit.genesis.v1").digest()
#: Prefixed to a checkpoint's signed bytes, so no other signed message can pass for one.
CHECKPOINT_CONTEXT: Final = b"threadline.audit.checkpoint.v1\n"
HASH_BYTES: Final = 32


def chain_hash(previous: bytes, data: bytes) -> bytes:
    """The hash of an entry stored as ``data`` after the entry whose hash is ``previous``."""
    digest = hashlib.sha256(previous)
    digest.update(len(data).to_bytes(8, "big"))
    digest.update(data)
    return digest.digest()


class StoredEntry(NamedTuple):
    """A row of the audit log: the entry's number, its stored bytes and its chain hash."""

    seq: int
    data: bytes
    hash: bytes

    @property
    def entry(self) -> AuditEntry:
        """The entry the bytes hold (ValidationError if they hold none)."""
        return AuditEntry.from_bytes(self.data)


class Head(NamedTuple):
    """The last entry's seq and hash as the log records them (0 and GENESIS when empty)."""

    seq: int
    hash: bytes


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement that entry ``seq`` of the trail has hash ``hash``."""

    seq: int
    hash: bytes
    at: datetime
    signature: bytes

    def signed_bytes(self) -> bytes:
        """What the signature covers."""
        return CHECKPOINT_CONTEXT + checkpoint_body(self.seq, self.hash, self.at)

    def to_json(self) -> bytes:
        """One line of JSON, as ``threadline audit checkpoint`` prints it."""
        return orjson.dumps(
            {"seq": self.seq, "hash": self.hash.hex(), "at": stamp(self.at),
             "signature": self.signature.hex()},
            option=orjson.OPT_SORT_KEYS,
        )  # fmt: skip

    @classmethod
    def from_json(cls, data: bytes | str) -> Checkpoint:
        """The checkpoint :meth:`to_json` wrote; ValidationError if ``data`` is not one."""
        try:
            body = orjson.loads(data)
            checkpoint = cls(
                seq=int(body["seq"]),
                hash=bytes.fromhex(body["hash"]),
                at=datetime.fromisoformat(body["at"]),
                signature=bytes.fromhex(body["signature"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValidationError(
                f"not an audit checkpoint ({exc.__class__.__name__})",
                [{"field": "checkpoint", "reason": "needs seq, hash, at and signature"}],
            ) from None
        if checkpoint.seq < 1 or len(checkpoint.hash) != HASH_BYTES or checkpoint.at.tzinfo is None:
            raise ValidationError(
                "not an audit checkpoint",
                [{"field": "checkpoint", "reason": "seq >= 1, a 32-byte hash, an aware time"}],
            )
        return checkpoint


def checkpoint_body(seq: int, hash_: bytes, at: datetime) -> bytes:
    """The canonical bytes of a checkpoint's statement (without the signature)."""
    return orjson.dumps(
        {"seq": seq, "hash": hash_.hex(), "at": stamp(at)}, option=orjson.OPT_SORT_KEYS
    )


def short(hash_: bytes) -> str:
    """The first 16 hex digits of a hash, as the command line shows it."""
    return hash_.hex()[:16]

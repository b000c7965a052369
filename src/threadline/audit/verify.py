"""Verification of an audit trail: pure functions of its rows, checkpoints and public key.

:class:`Verification` walks the stored rows in seq order, a page at a time,
recomputing the chain from :data:`GENESIS`; the first thing wrong stops it and
is reported with the entry it was found at:

* a changed byte (of an entry's bytes or of its hash): that entry;
* entries swapped or renumbered: the first entry that holds another's bytes;
* an entry deleted: the missing seq;
* hashes recomputed after a change: the signed checkpoint the chain no longer
  leads to, naming the range the change lies in;
* a checkpoint whose signature does not verify: its seq;
* entries removed from the end: the first missing seq, seen from the log's
  recorded head, a stored checkpoint, or a checkpoint kept outside the
  database (``trusted``), whichever reaches further.

:func:`extends` proves that a later checkpoint extends an earlier one from the
entries between them alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from threadline.audit.chain import GENESIS, Checkpoint, Head, StoredEntry, chain_hash, short
from threadline.audit.entry import AuditEntry
from threadline.audit.keys import AuditKey
from threadline.core.errors import ValidationError


@dataclass(frozen=True, slots=True)
class Report:
    """What a verification found: the trail's size and head, or where it breaks and why."""

    #: Entries checked, checkpoints found good, and the last entry reached.
    entries: int
    checkpoints: int
    head_seq: int
    head: bytes
    broken_at: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None

    def line(self) -> str:
        """One line for people: ``audit trail verified: …`` or ``audit trail broken at …``."""
        if self.broken_at is None:
            return (f"audit trail verified: {self.head_seq} entries, {self.checkpoints}"
                    f" checkpoints, head {short(self.head)}")  # fmt: skip
        return f"audit trail broken at entry {self.broken_at}: {self.reason}"


class Verification:
    """An incremental check of one trail: :meth:`feed` pages of rows, then :meth:`finish`."""

    def __init__(
        self, key: AuditKey, checkpoints: Iterable[Checkpoint] = (), *,
        trusted: Iterable[Checkpoint] = (), start: Head | None = None,
    ) -> None:  # fmt: skip
        """``start``: walk on from this entry's seq and hash (a checkpoint already checked)
        instead of from the genesis; rows and checkpoints at or before it are not checked."""
        self._key = key
        self._waiting: dict[int, list[tuple[Checkpoint, str]]] = {}
        for checkpoint in checkpoints:
            self._wait(checkpoint, f"the checkpoint signed at entry {checkpoint.seq}")
        for checkpoint in trusted:
            self._wait(checkpoint, f"the trusted checkpoint of entry {checkpoint.seq}")
        self._seq, self._hash = start if start is not None else (0, GENESIS)
        for seq in [seq for seq in self._waiting if seq <= self._seq]:
            del self._waiting[seq]
        self._anchor = self._seq  # the last seq a checkpoint (or the start) vouched for
        self._checked = 0
        self._fed = 0
        self._broken: tuple[int, str] | None = None

    def _wait(self, checkpoint: Checkpoint, label: str) -> None:
        self._waiting.setdefault(checkpoint.seq, []).append((checkpoint, label))

    def _break(self, seq: int, reason: str) -> bool:
        self._broken = (seq, reason)
        return False

    @property
    def broken(self) -> bool:
        return self._broken is not None

    def feed(self, rows: Iterable[StoredEntry]) -> bool:
        """Check the next rows (in seq order); False once the trail is found broken."""
        for row in rows:
            if self._broken is not None or not self._row(row):
                return False
        return self._broken is None

    def _row(self, row: StoredEntry) -> bool:
        expected = self._seq + 1
        if row.seq > expected:
            return self._break(expected, f"entry {expected} is missing (the next stored is"
                                         f" {row.seq})")  # fmt: skip
        if row.seq < expected:
            return self._break(row.seq, f"entry {row.seq} is stored twice or out of order")
        try:
            entry: AuditEntry | None = AuditEntry.from_bytes(bytes(row.data))
        except ValidationError:
            entry = None
        computed = chain_hash(self._hash, bytes(row.data))
        if entry is not None and entry.seq != row.seq:
            return self._break(row.seq, f"it holds the bytes of entry {entry.seq}: entries were"
                                        " reordered or renumbered")  # fmt: skip
        if computed != bytes(row.hash):
            return self._break(row.seq, "its bytes or its hash were altered: the stored hash"
                                        " does not follow from them")  # fmt: skip
        if entry is None:
            return self._break(row.seq, "its bytes are not an audit entry")
        self._seq, self._hash = row.seq, computed
        self._fed += 1
        return self._anchored()

    def _anchored(self) -> bool:
        for checkpoint, label in self._waiting.pop(self._seq, []):
            if not self._key.signed(checkpoint):
                return self._break(self._seq, f"{label} has a bad signature (forged, or signed"
                                              " by another key)")  # fmt: skip
            if checkpoint.hash != self._hash:
                return self._break(
                    self._seq,
                    f"the chain does not lead to the hash {label} states: an entry in"
                    f" {self._anchor + 1}..{self._seq} was rewritten (or the trail forked)",
                )
            self._checked += 1
            self._anchor = self._seq
        return True

    def finish(self, head: Head | None = None) -> Report:
        """The report, once every row was fed; ``head`` is the log's recorded head."""
        if self._broken is None:
            self._beyond_the_end(head)
        broken_at, reason = self._broken if self._broken is not None else (None, "")
        return Report(self._fed, self._checked, self._seq, self._hash, broken_at, reason)

    def _beyond_the_end(self, head: Head | None) -> None:
        end = self._seq
        for seq in sorted(self._waiting):
            for checkpoint, label in self._waiting[seq]:
                if not self._key.signed(checkpoint):
                    self._break(seq, f"{label} has a bad signature (forged, or signed by"
                                     " another key)")  # fmt: skip
                else:
                    self._break(end + 1, f"the trail ends at entry {end}, before {label}:"
                                         " entries were removed from its end")  # fmt: skip
                return
        if head is None:
            return
        if head.seq > end:
            self._break(end + 1, f"the trail ends at entry {end}, its recorded head is entry"
                                 f" {head.seq}: entries were removed from its end")  # fmt: skip
        elif head.seq < end:
            self._break(head.seq + 1, f"entries after the recorded head (entry {head.seq})"
                                      " were added outside the log")  # fmt: skip
        elif bytes(head.hash) != self._hash:
            self._break(end, "the recorded head's hash is not this entry's")


def verify(
    rows: Iterable[StoredEntry],
    checkpoints: Iterable[Checkpoint],
    key: AuditKey,
    *,
    trusted: Iterable[Checkpoint] = (),
    head: Head | None = None,
) -> Report:
    """Check a whole trail at once (see :class:`Verification`)."""
    walk = Verification(key, checkpoints, trusted=trusted)
    walk.feed(rows)
    return walk.finish(head)


def extends(
    earlier: Checkpoint, later: Checkpoint, between: Iterable[StoredEntry], key: AuditKey
) -> Report:
    """Whether ``later`` extends ``earlier``: both are signed, and the entries after
    ``earlier.seq`` up to ``later.seq`` lead from ``earlier.hash`` to ``later.hash``.

    ``between`` needs only those entries (others are skipped), so a holder of the
    earlier checkpoint learns that nothing it vouched for was changed since,
    without trusting the database for the entries before it.
    """

    def broken(seq: int, reason: str) -> Report:
        return Report(0, 0, later.seq, later.hash, seq, reason)

    for checkpoint, name in ((earlier, "earlier"), (later, "later")):
        if not key.signed(checkpoint):
            return broken(checkpoint.seq, f"the {name} checkpoint has a bad signature")
    if later.seq < earlier.seq:
        return broken(later.seq, "the later checkpoint is older than the earlier one")
    seq, walk = earlier.seq, earlier.hash
    for row in between:
        if row.seq <= earlier.seq:
            continue
        if row.seq > later.seq:
            break
        if row.seq != seq + 1:
            return broken(seq + 1, f"entry {seq + 1} is missing")
        walk = chain_hash(walk, bytes(row.data))
        if walk != bytes(row.hash):
            return broken(row.seq, f"entry {row.seq} does not follow from the earlier"
                                   " checkpoint: the later trail forked from it")  # fmt: skip
        seq = row.seq
    if seq != later.seq:
        return broken(seq + 1, f"entries {seq + 1}..{later.seq} are missing")
    if walk != later.hash:
        return broken(later.seq, "the entries do not lead to the later checkpoint's hash:"
                                 " it is of another trail")  # fmt: skip
    return Report(later.seq - earlier.seq, 2, later.seq, later.hash)

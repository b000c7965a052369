"""AES-GCM nonces for sealing: unique per process without a system call each.

Every sealed field needs a 96-bit nonce that never repeats under its key. Drawing
each one from the kernel costs a system call per field, the largest part of sealing
a chat turn. :class:`Nonces` uses the deterministic construction of NIST SP 800-38D
(section 8.2.1): a fixed field, 64 random bits drawn once per process, followed by a
32-bit invocation counter. Processes that seal with the same data key (the service
instances of a scaled-out deployment) differ in their fixed field: two of them share
one with probability 2^-64 per pair. When the counter runs out, a new fixed field is
drawn; a forked child draws its own at once, so parent and child never share one.
"""

from __future__ import annotations

import itertools
import os
import threading
from typing import Final

FIXED_BYTES: Final = 8
COUNTER_BYTES: Final = 4
NONCE_BYTES: Final = FIXED_BYTES + COUNTER_BYTES
_LIMIT: Final = 1 << (8 * COUNTER_BYTES)


class Nonces:
    """A source of 96-bit nonces: a random fixed field and a counter (call it for one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = self._fresh()

    @staticmethod
    def _fresh() -> tuple[bytes, itertools.count[int]]:
        return os.urandom(FIXED_BYTES), itertools.count()

    def renew(self) -> None:
        """Draw a new fixed field and start counting again (after a fork, or when spent)."""
        self._state = self._fresh()

    def __call__(self) -> bytes:
        # The fixed field and its counter are read as one: a counter is never reused,
        # even by a thread that read it just before another renewed the state.
        fixed, counter = self._state
        n = next(counter)
        if n >= _LIMIT:
            with self._lock:
                if self._state[1] is counter:
                    self.renew()
            return self()
        return fixed + n.to_bytes(COUNTER_BYTES, "big")


#: The process's nonces for sealing personal data.
NONCES: Final = Nonces()
os.register_at_fork(after_in_child=NONCES.renew)

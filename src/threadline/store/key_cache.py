"""Unwrapped data keys in memory: a bounded LRU, shared by a store's threads."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Collection
from typing import Final

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: Unwrapped data keys kept in memory, at most (each owner's sealing key counts once more).
DATA_KEY_CACHE: Final = 10_000
#: Seconds an erased owner is remembered, so a read begun before it caches nothing of theirs.
FORGOTTEN_FOR: Final = 600.0


class KeyCache:
    """Unwrapped data keys by id (None: destroyed), and the key each owner seals with now.

    Bounded LRU; thread-safe, as SQLite's writer thread reads it for its commit feed.
    """

    def __init__(self, size: int = DATA_KEY_CACHE) -> None:
        self._size = size
        self._by_id: OrderedDict[str, tuple[str, AESGCM | None]] = OrderedDict()
        self._by_owner: OrderedDict[str, tuple[str, AESGCM]] = OrderedDict()
        # When each owner's keys were last forgotten: a read that began earlier may have
        # fetched a key destroyed since, and must not cache it.
        self._forgotten: dict[str, float] = {}
        self._lock = threading.Lock()

    def cipher(self, key_id: str) -> tuple[bool, AESGCM | None]:
        """(known, cipher): the cipher of ``key_id``, None when it is known destroyed."""
        with self._lock:
            hit = self._by_id.get(key_id)
            if hit is None:
                return False, None
            self._by_id.move_to_end(key_id)
            return True, hit[1]

    def sealing(self, owner: str) -> tuple[str, AESGCM] | None:
        with self._lock:
            hit = self._by_owner.get(owner)
            if hit is not None:
                self._by_owner.move_to_end(owner)
            return hit

    def put(
        self,
        key_id: str,
        owner: str,
        cipher: AESGCM | None,
        *,
        seals: bool = False,
        since: float | None = None,
    ) -> None:
        """Cache a key; one fetched ``since`` a moment before its owner was forgotten is not."""
        with self._lock:
            if since is not None and self._forgotten.get(owner, -1.0) >= since:
                return
            self._by_id[key_id] = (owner, cipher)
            self._by_id.move_to_end(key_id)
            if len(self._by_id) > self._size:
                self._by_id.popitem(last=False)
            if seals and cipher is not None:
                self._by_owner[owner] = (key_id, cipher)
                self._by_owner.move_to_end(owner)
                if len(self._by_owner) > self._size:
                    self._by_owner.popitem(last=False)

    def forget(self, owners: Collection[str]) -> None:
        """Drop the keys of ``owners``: the next use reads the table again."""
        wanted = set(owners)
        now = time.monotonic()
        with self._lock:
            for owner, at in list(self._forgotten.items()):
                if at < now - FORGOTTEN_FOR:
                    del self._forgotten[owner]
            for owner in wanted:
                self._forgotten[owner] = now
                self._by_owner.pop(owner, None)
            for key_id, (owner, _) in list(self._by_id.items()):
                if owner in wanted:
                    del self._by_id[key_id]

    def __len__(self) -> int:
        return len(self._by_id)

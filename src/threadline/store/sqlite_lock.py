"""Writers of one SQLite file in several processes take turns on an OS file lock.

SQLite lets one writer in at a time and makes the others sleep and retry
(1, 2, 5 … 100 ms) while the file is locked: far longer than a commit takes.
The writer thread holds :class:`TurnLock` from ``BEGIN IMMEDIATE`` to
``COMMIT``, so a writer that waits is woken the moment the other is done.
"""

from __future__ import annotations

import os

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows: SQLite's own retries only
    fcntl = None  # type: ignore[assignment]


class TurnLock:
    """An exclusive lock on ``<database>-writer`` that the writers of one file take turns on.

    It only decides who writes next, and wakes a waiting writer the moment the
    holder lets go; SQLite's locking still guards the data, so a writer without
    it (another tool) is merely slower. The OS drops it when a process dies.
    """

    def __init__(self, path: str) -> None:
        self._fd: int | None = None
        if fcntl is not None and path != ":memory:":
            self._fd = os.open(f"{path}-writer", os.O_RDWR | os.O_CREAT, 0o600)

    def __enter__(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

"""WAL checkpoints, copied off the writer's path.

In WAL mode SQLite copies the log's pages back into the database file (a checkpoint) in
the commit that takes the log past 1,000 pages: that commit then waits for the pages not
yet copied to be written and the database file's fsync, several milliseconds, and every
append queued behind it waits too (the appends' slowest hundredth, at 200 chat
conversations). :class:`Checkpointer`, a thread with a connection of its own, runs a
PASSIVE checkpoint every :data:`EVERY_COMMITS` commits, and within :data:`INTERVAL`
seconds of the last commit: it never waits for the writer or a reader, so when the
writer's own checkpoint comes due, at 1,000 pages, what is left to copy is what the last
few commits wrote. The writer's checkpoint stays, as it is the one that starts the log
again from its beginning (a log copied by another connection is started again only by a
transaction that begins after the copy, which a writer that never pauses never does), so
the log stays about 1,000 pages long however long the writes go on.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Final

import structlog

log = structlog.get_logger("threadline.store")

#: Commits between two checkpoints (a commit of a chat turn adds a few pages to the log).
EVERY_COMMITS: Final = 16
#: Seconds after a commit within which it is checkpointed, however few followed it.
INTERVAL: Final = 1.0


class Checkpointer:
    """Checkpoints ``path``'s log on a thread of its own, as the writer's commits go by."""

    def __init__(
        self,
        path: str,
        connect: Callable[[str], sqlite3.Connection],
        every: int = EVERY_COMMITS,
        interval: float = INTERVAL,
    ) -> None:
        self._path = path
        self._connect = connect
        self._every = every
        self._interval = interval
        self._unsaved = 0
        self._due = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="threadline-sqlite-checkpoint")
        self._thread.daemon = True
        #: Checkpoints run (for tests and benchmarks).
        self.runs = 0

    def start(self) -> None:
        self._thread.start()

    def committed(self) -> None:
        """The writer committed (called on its thread)."""
        self._unsaved += 1
        if self._unsaved >= self._every:
            self._due.set()

    def stop(self) -> None:
        """End the thread; what is left in the log is checkpointed when the last connection
        to the file closes."""
        self._stopping = True
        self._due.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        try:
            conn = self._connect(self._path)
        except sqlite3.Error:
            log.exception("the checkpoint thread could not open the database")
            return
        try:
            while True:
                self._due.wait(self._interval)
                self._due.clear()
                if self._stopping:
                    return
                if not self._unsaved:
                    continue
                self._unsaved = 0
                self._checkpoint(conn)
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        self.runs += 1
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()  # all rows: no read left open
        except sqlite3.Error:  # the next one copies what this one did not
            log.exception("WAL checkpoint failed")

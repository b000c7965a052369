"""Moving the write-ahead log into the database file, off the writer's path.

By default SQLite checkpoints inside the commit that takes the WAL past 1,000
pages: that commit copies every page back into the database file and fsyncs
it, and every append queued behind it waits (about 8 ms, several times a
second under load). The writer turns that off for its connection and this
thread checkpoints instead, from its own connection, in PASSIVE mode: it copies
what no reader still needs while the writer goes on appending, and the writer
starts the WAL over once all of it has been copied.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Final

import structlog

log = structlog.get_logger("threadline.store")

#: Seconds between checkpoints while commits keep coming.
INTERVAL: Final = 0.1
#: The size the WAL file is cut back to once it starts over after a burst.
WAL_SIZE_LIMIT: Final = 64 * 1024 * 1024


class Checkpointer:
    """A thread that checkpoints the WAL of ``path`` after commits, at most once an interval."""

    def __init__(
        self, path: str, connect: Callable[[str], sqlite3.Connection], interval: float = INTERVAL
    ) -> None:
        self._path = path
        self._connect = connect
        self._interval = interval
        self._due = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="threadline-sqlite-checkpoint", daemon=True
        )
        self.checkpoints = 0
        #: What the last checkpoint reported: (busy, frames in the WAL, frames copied).
        self.last: tuple[int, int, int] | None = None

    def start(self) -> None:
        self._thread.start()

    def committed(self) -> None:
        """Called by the writer after a commit: the WAL has grown."""
        self._due.set()

    def stop(self) -> None:
        self._stopping.set()
        self._due.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        try:
            conn = self._connect(self._path)
        except sqlite3.Error as exc:  # the writer's own autocheckpoint is off: say so
            log.error("checkpoint thread could not connect", path=self._path, error=str(exc))
            return
        try:
            while not self._stopping.is_set():
                self._due.wait()
                self._due.clear()
                self._checkpoint(conn)
                # Let commits pile up for an interval: one checkpoint covers them all.
                self._stopping.wait(self._interval)
            self._checkpoint(conn)
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            log.warning("checkpoint failed; retrying after the next commit", error=str(exc))
            return
        self.checkpoints += 1
        if row is not None:
            self.last = (int(row[0]), int(row[1]), int(row[2]))

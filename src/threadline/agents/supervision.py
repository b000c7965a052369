"""Supervision of the bot worker process: when to start it again, and what to report.

A worker that dies (a crash, SIGKILL, the OOM killer) is started again after
a delay that doubles with each death or failed start in a row, up to a cap;
once a worker has run for ``healthy_after`` seconds, the count starts over.
:class:`WorkerHealth` is what the service tells an operator about it, each
death and failed start being logged at error level as well.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

#: The worker is answering turns; starting (first start or a restart); down until a restart.
WorkerState = Literal["running", "starting", "restarting", "stopped"]


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """Delays between restarts: ``first``, doubled per failure in a row, at most ``cap``."""

    first: float = 0.5
    cap: float = 30.0
    #: Seconds a worker must run for its next death to count as the first in a row.
    healthy_after: float = 60.0

    def delay(self, failures: int) -> float:
        """Seconds to wait before the next start, after ``failures`` (1, 2, …) in a row."""
        return min(self.cap, self.first * 2.0 ** max(0, failures - 1))


@dataclass(frozen=True, slots=True)
class WorkerHealth:
    """The bot worker as the service sees it."""

    state: WorkerState
    #: The running worker's process id.
    pid: int | None
    #: Times the worker was started again after it died.
    restarts: int
    #: Deaths and failed starts in a row (0 once a worker has run healthily).
    failures: int
    #: How the last worker ended, or why the last start failed.
    last_failure: str | None
    #: When ``state`` began (UTC).
    since: datetime

    @property
    def ok(self) -> bool:
        return self.state == "running"

    def as_dict(self) -> dict[str, Any]:
        """What the health endpoint shows (not the process id: that is for this host)."""
        return {
            "state": self.state,
            "restarts": self.restarts,
            "failures": self.failures,
            "last_failure": self.last_failure,
            "since": self.since.isoformat().replace("+00:00", "Z"),
        }


def describe_exit(returncode: int | None) -> str:
    """How a process ended, in words: ``killed by SIGKILL``, ``exit status 1``."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


#: Seconds to wait for a worker that closed its pipe to exit, before killing it.
EXIT_GRACE: Final = 5.0

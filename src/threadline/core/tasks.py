"""Stopping background tasks for certain.

``task.cancel()`` then ``await task`` hangs when the task swallows the
cancellation, and on Python 3.11 libraries do that without meaning to:
``asyncio.wait_for`` (psycopg_pool waits for a connection with it) drops a
cancellation that arrives as the awaited thing completes, and the task goes
back to waiting for work that never comes. :func:`stop_tasks` cancels again
until every task has finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Final

#: How long a cancelled task has to finish before it is cancelled again.
RECANCEL_AFTER: Final = 0.5


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and return once all have finished; a task's own error is raised."""
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_AFTER)
    failures = [t.exception() for t in tasks if not t.cancelled() and t.exception() is not None]
    if failures:
        raise failures[0]  # type: ignore[misc]

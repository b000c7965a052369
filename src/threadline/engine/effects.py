"""Side effects that happen once, though delivery is at least once.

Wrap a handler's side effect with :func:`idempotent`: an event already marked
handled for the group is skipped, and the effect receives a stable key
(``group:event_id``) to pass downstream (a payment reference, an SMS
idempotency key, a unique column) so that a redelivery after a crash between
the effect and the mark is absorbed by the receiver.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from threadline.core.events import EventRecord
from threadline.core.ports import CheckpointStore, Handler

Effect = Callable[[EventRecord, str], Awaitable[None]]


def idempotent(checkpoints: CheckpointStore, group: str, effect: Effect) -> Handler:
    """A bus handler that runs ``effect`` at most once per event for ``group``."""

    async def handle(record: EventRecord) -> None:
        key = f"{group}:{record.event_id}"
        if await checkpoints.was_handled(group, record.event_id):
            return
        await effect(record, key)
        await checkpoints.mark_handled(group, record.event_id)

    return handle

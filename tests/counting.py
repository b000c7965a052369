"""A store proxy that counts the calls of one read method and forwards everything else."""

from __future__ import annotations

from typing import Any


class CountingReads:
    """Forwards to ``store``; ``reads`` counts the calls of its ``method`` (``read`` or
    ``read_all``)."""

    def __init__(self, store: Any, method: str = "read") -> None:
        self._store = store
        self._method = method
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if name != self._method:
            return attribute

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.reads += 1
            return await attribute(*args, **kwargs)

        return counted


async def read_through(store: Any, after: int, through: int, timeout: float = 5.0) -> list[Any]:
    """The log after ``after`` up to ``through``, once all of it is visible: PostgreSQL's
    ``read_all`` holds a fresh event back while an older transaction anywhere in the
    cluster is still open, so a read right after an append may come back short."""
    import asyncio

    async with asyncio.timeout(timeout):
        while True:
            records = [r for r in await store.read_all(after, 1000) if r.position <= through]
            if records and records[-1].position == through:
                return records
            await asyncio.sleep(0.005)

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

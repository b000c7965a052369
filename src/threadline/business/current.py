"""The business a running service serves now, and the parts told when it changes.

A pack reload builds a new :class:`Business`; :meth:`CurrentBusiness.replace`
puts it in place for whatever is asked next (the next turn, the next call)
and tells each part that keeps something derived from it (the agent, the
routing configuration, the speech-recognition prompt). A part that fails to
take the new business is logged and keeps its old one; the others still move.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from threadline.business.business import Business

log = structlog.get_logger("threadline.business")

Listener = Callable[[Business], None]


class CurrentBusiness:
    """Holds the business being served; :meth:`replace` swaps it."""

    def __init__(self, business: Business) -> None:
        self._business = business
        self._listeners: list[Listener] = []

    @property
    def business(self) -> Business:
        return self._business

    def on_change(self, listener: Listener) -> None:
        """Call ``listener`` with every business that replaces the current one."""
        self._listeners.append(listener)

    def replace(self, business: Business) -> None:
        """Serve ``business`` from now on."""
        self._business = business
        for listener in self._listeners:
            try:
                listener(business)
            except Exception:  # one part's failure must not stop the others from moving
                log.exception("a part did not take the reloaded business pack")
        log.info("business pack in place", business=business.id, digest=business.digest)

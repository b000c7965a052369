"""Reloading the business pack into a running service.

The pack is read and checked off the event loop; a valid one replaces the
business for whatever is asked next (turns, calls, look-ups), an invalid one
is refused with every problem and the business served stays as it was.
"""

from __future__ import annotations

import asyncio

import structlog

from threadline.business import Business, load_configured
from threadline.business.loader import PackError
from threadline.service.parts import Service

log = structlog.get_logger("threadline.business")


async def reload_business(service: Service) -> Business:
    """The pack at ``THREADLINE_BUSINESS``, read again and put in place; PackError (and the
    business unchanged) when it has problems."""
    business = await asyncio.to_thread(load_configured, service.settings.business)
    service.current.replace(business)
    return business


async def reload_on_hangup(service: Service) -> None:
    """What ``SIGHUP`` does: reload, and log how it went (never the pack's contents)."""
    try:
        business = await reload_business(service)
    except PackError as exc:
        log.error("business pack refused; the running one stays", problems=len(exc.problems),
                  first=str(exc.problems[0]) if exc.problems else None)  # fmt: skip
        return
    log.info("business pack reloaded", business=business.id, digest=business.digest)

"""What the server's own log lines may say of a request: its path, never its query values.

Sockets take their token as a subprotocol and refuse one in the URL, but a
client may still send ``?token=`` (and is refused), and a look-up may carry a
phone number or an email in its query. Uvicorn logs every request and every
accepted socket with the full path and query. :class:`ScrubQuery` keeps
the query's names and replaces each value, so a log line tells which request
it was and holds no secret and no personal data.
"""

from __future__ import annotations

import logging
import re
from typing import Final

#: Uvicorn's loggers for requests (``access``) and accepted or refused sockets (``error``).
LOGGERS: Final = ("uvicorn.access", "uvicorn.error")
HIDDEN: Final = "…"
_VALUE: Final = re.compile(r"(?P<name>[?&][^=&#\s]*)=[^&#\s\"]*")


def scrubbed(text: str) -> str:
    """``text`` with each query value replaced: ``/chat/ws?token=…``."""
    if "?" not in text:
        return text
    return _VALUE.sub(lambda m: f"{m['name']}={HIDDEN}", text)


class ScrubQuery(logging.Filter):
    """Replaces query values in a record's arguments (the path uvicorn logs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(scrubbed(a) if isinstance(a, str) else a for a in args)
        elif isinstance(record.msg, str):
            record.msg = scrubbed(record.msg)
        return True


def scrub_server_logs() -> None:
    """Install :class:`ScrubQuery` on uvicorn's loggers (once)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ScrubQuery) for f in logger.filters):
            logger.addFilter(ScrubQuery())

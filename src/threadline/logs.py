"""How the service's processes log: structured lines that never carry a customer's data.

Log calls name ids and reasons, never what a customer said; the one way data could slip
in is an exception, whose message may quote its input (a validation error quotes the
value it refused) and whose frames' local variables hold whatever a turn was working on.
So an exception is logged as its type and the frames it went through (file, line,
function), never its message or locals. Development prints aligned, readable lines;
production one JSON object per line.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any, Literal, TextIO

import orjson
import structlog
from structlog.typing import EventDict, WrappedLogger


def exception_frames(exc_info: Any) -> str:
    """An exception as its type and where it went, without its message or locals."""
    kind, _, tb = exc_info if isinstance(exc_info, tuple) else sys.exc_info()
    if kind is None:
        return ""
    frames = traceback.extract_tb(tb)
    where = [f"  {frame.filename}:{frame.lineno} in {frame.name}" for frame in frames]
    return "\n".join([f"{kind.__module__}.{kind.__qualname__} (message not logged)", *where])


def _console_exception(sio: TextIO, exc_info: Any) -> None:
    sio.write("\n" + exception_frames(exc_info))


def _exception_as_frames(logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
    exc_info = event.pop("exc_info", None)
    if exc_info:
        info = exc_info if isinstance(exc_info, tuple) else sys.exc_info()
        event["exception"] = exception_frames(info)
    return event


def configure_logging(env: Literal["development", "production"], level: int = logging.INFO) -> None:
    """Log as ``env`` says, at ``level`` and above, to standard error."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: list[Any]
    if env == "production":
        renderer = [_exception_as_frames, structlog.processors.JSONRenderer(orjson.dumps)]
        factory: Any = structlog.BytesLoggerFactory(sys.stderr.buffer)
    else:
        console = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=_console_exception
        )
        renderer = [console]
        factory = structlog.PrintLoggerFactory(sys.stderr)
    structlog.configure(
        processors=[*shared, *renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=factory,
    )

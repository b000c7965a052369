"""What a business's in-process tool sees: the contract of ``kind: python`` tools.

A python tool is ``async def tool(arguments: dict, context: ToolContext) -> dict``
(a plain ``def`` runs in a worker thread). It returns its result as a JSON
object, which is checked against the tool's ``result`` schema, and raises
:class:`ToolFailure` when it cannot do what was asked: ``code`` is a stable
word the pack's replies can speak of (``not_found`` means there is no such
thing), ``retryable`` whether the same call may succeed later, and
``details`` anything the reply may use (alternative times, say). Any other
exception is a failure too, logged without its arguments.

The same call may arrive more than once (a redelivered turn): ``context.idempotency_key``
is the same each time, so a tool with side effects can answer a repeat with its first
result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from threadline.business.business import Business

#: The failure code of "there is no such thing" (an unknown order, customer or slot).
NOT_FOUND: Final = "not_found"


class ToolFailure(Exception):
    """A tool could not do what was asked."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.details: Mapping[str, Any] = details or {}


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Who is asking and when, and where an in-process tool may keep its own state."""

    now: datetime
    idempotency_key: str
    business: Business
    data_dir: Path
    conversation_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


__all__ = ["NOT_FOUND", "ToolContext", "ToolFailure"]

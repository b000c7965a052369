"""Customer records, as the business's own systems hold them.

Customers live in the business's systems, not in the pack: the pack names a
look-up tool (``customers.lookup``) that takes ``{by, value}`` and returns a
record. :class:`CustomerRecords` asks it, and keeps answers for a short
while so a conversation's turns do not ask again and again. A record's
``knowledge`` (a postcode, say) is what a customer may be asked to prove who
they are; it is compared in memory and never recorded.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from threadline.core.events import utcnow
from threadline.systems.runner import ToolCall, ToolRunner
from threadline.tools import NOT_FOUND, ToolFailure

By = Literal["id", "phone", "email", "member"]
#: Seconds a record is kept; a change in the business's system shows after this.
TTL: Final = 60.0
CACHED: Final = 10_000


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    """A customer as the business knows them."""

    id: str
    name: str
    phone: str | None = None
    email: str | None = None
    member_id: str | None = None
    knowledge: Mapping[str, str] = field(default_factory=dict)

    @property
    def first_name(self) -> str:
        return self.name.split()[0] if self.name.strip() else self.name

    @classmethod
    def of(cls, result: Mapping[str, Any]) -> CustomerRecord:
        knowledge = result.get("knowledge") or {}
        return cls(
            id=str(result["id"]), name=str(result.get("name") or ""),
            phone=result.get("phone"), email=result.get("email"),
            member_id=result.get("member_id"),
            knowledge={str(k): str(v) for k, v in knowledge.items()},
        )  # fmt: skip

    def to_vars(self) -> dict[str, Any]:
        """What a reply template may see: the name, never contacts or knowledge."""
        return {"id": self.id, "name": self.name, "first_name": self.first_name}


class CustomerRecords:
    """Finds customer records through the pack's look-up tool."""

    def __init__(
        self, runner: ToolRunner, *, clock: Callable[[], datetime] = utcnow, ttl: float = TTL
    ) -> None:
        self.runner = runner
        self.clock = clock
        self.ttl = ttl
        self._cache: OrderedDict[tuple[str, str], tuple[float, CustomerRecord | None]] = (
            OrderedDict()
        )

    @property
    def configured(self) -> bool:
        return self.runner.has(self.runner.business.pack.customers.lookup)

    async def find(self, by: By, value: str) -> CustomerRecord | None:
        """The record whose ``by`` is ``value``, or None (also when no tool is configured)."""
        tool = self.runner.business.pack.customers.lookup
        if tool is None or not value:
            return None
        key = (by, value)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        digest = hashlib.sha256(f"{by}:{value}".encode()).hexdigest()[:16]
        call = ToolCall(tool, {"by": by, "value": value}, f"customer-lookup:{digest}",
                        self.clock())  # fmt: skip
        try:
            record: CustomerRecord | None = CustomerRecord.of(await self.runner.call(call))
        except ToolFailure as failure:
            if failure.code != NOT_FOUND:
                raise
            record = None
        self._remember(key, record)
        if record is not None and by != "id":
            self._remember(("id", record.id), record)
        return record

    async def get(self, customer_id: str | None) -> CustomerRecord | None:
        """The record of ``customer_id``; None for none, an unknown id, or a failing system."""
        if not customer_id:
            return None
        try:
            return await self.find("id", customer_id)
        except ToolFailure:
            return None

    def _remember(self, key: tuple[str, str], record: CustomerRecord | None) -> None:
        self._cache[key] = (time.monotonic() + self.ttl, record)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHED:
            self._cache.popitem(last=False)

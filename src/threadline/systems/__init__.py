"""The business's own systems: its tools (HTTP or in-process) and its customer records."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from threadline.business import Business
from threadline.systems.customers import CustomerRecord, CustomerRecords
from threadline.systems.runner import ToolCall, ToolRunner


@dataclass(frozen=True, slots=True)
class Systems:
    """The business's systems as the service reaches them: its tools and customer records."""

    tools: ToolRunner
    customers: CustomerRecords

    @classmethod
    def open(cls, business: Business, data_dir: Path) -> Systems:
        """The systems of ``business``; in-process tools keep their state in ``data_dir``."""
        tools = ToolRunner(business, data_dir)
        return cls(tools, CustomerRecords(tools))

    @property
    def business(self) -> Business:
        return self.tools.business

    def use(self, business: Business) -> None:
        """Serve ``business`` (a reloaded pack) from the next call on."""
        self.tools.use(business)

    async def close(self) -> None:
        await self.tools.close()


__all__ = ["CustomerRecord", "CustomerRecords", "Systems", "ToolCall", "ToolRunner"]

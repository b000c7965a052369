"""The test shop's in-process tools (tests/test_systems.py): each shows one part of the contract."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from threadline.tools import NOT_FOUND, ToolContext, ToolFailure

#: Every call, as (tool, arguments), for the tests to count.
CALLS: list[tuple[str, dict[str, Any]]] = []
CUSTOMERS = [
    {"id": "cus-1", "name": "Ada Lovelace", "phone": "+447700900123", "email": "ada@example.com",
     "member_id": None, "knowledge": {"postcode": "N1"}},
]  # fmt: skip


async def greet(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    CALLS.append(("greet", arguments))
    return {"greeting": f"Hello {arguments['name']}", "key": context.idempotency_key,
            "now": context.now.isoformat(), "data_dir": str(context.data_dir),
            "business": context.business.id, "conversation": context.conversation_id}  # fmt: skip


def greet_sync(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    CALLS.append(("greet_sync", arguments))
    return {"thread": threading.current_thread().name}


async def sold_out(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    CALLS.append(("sold_out", arguments))
    raise ToolFailure("sold_out", "none left", retryable=True, details={"restock": "Friday"})


async def crash(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    CALLS.append(("crash", arguments))
    raise ValueError(f"cannot handle {arguments}")


async def not_a_dict(arguments: dict[str, Any], context: ToolContext) -> Any:
    return ["a", "list"]


async def dawdle(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    await asyncio.sleep(5)
    return {}


async def find_customer(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    CALLS.append(("find_customer", arguments))
    by, value = arguments["by"], arguments["value"]
    if value == "broken":
        raise ToolFailure("unavailable", "the CRM is down", retryable=True)
    field = {"id": "id", "phone": "phone", "email": "email", "member": "member_id"}[by]
    for customer in CUSTOMERS:
        if customer[field] == value:
            return customer
    raise ToolFailure(NOT_FOUND, "no such customer")

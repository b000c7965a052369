"""How the agent calls a tool: ``action.requested``, then ``action.completed`` or ``failed``.

The call's idempotency key is derived from the turn's anchor (the customer's
event) and the action's number in the turn, so a redelivered turn calls the
business's system with the same key and a system with side effects answers
the repeat with its first result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from threadline.agents.guardrails import scrubbed
from threadline.agents.step import Step
from threadline.core.events import Event
from threadline.systems import ToolCall
from threadline.tools import ToolFailure


@dataclass(frozen=True, slots=True)
class Called:
    """A tool call made on a turn: its number, its request event, and its result or failure."""

    action_id: str
    requested: Event
    outcome: dict[str, Any] | ToolFailure


async def run_tool(step: Step, tool: str, arguments: Mapping[str, Any]) -> Called:
    """Record ``action.requested`` and call the tool; a failure is recorded here, a result
    waits for :func:`completed` (the flow may record less of it than it got)."""
    writer = step.writer
    action_id = writer.next_action_id()
    runner = step.systems.tools
    requested = writer.emit(
        "action.requested",
        {"action_id": action_id, "tool": tool, "tool_version": runner.version(tool),
         "arguments": dict(arguments)},
    )  # fmt: skip
    call = ToolCall(tool, arguments, f"{writer.key(0)}/{action_id}", step.now,
                    step.state.conversation_id)  # fmt: skip
    outcome: dict[str, Any] | ToolFailure
    try:
        result = await runner.call(call)
    except ToolFailure as failure:
        writer.emit(
            "action.failed",
            {"action_id": action_id, "error": f"{failure.code}: {failure}",
             "retryable": failure.retryable},
            caused_by=requested,
        )  # fmt: skip
        step.outcomes.append((tool, False))
        outcome = failure
    else:
        outcome = withheld_instructions(step, result)
    return Called(action_id, requested, outcome)


def withheld_instructions(step: Step, result: dict[str, Any]) -> dict[str, Any]:
    """``result`` without the instructions a tool's data may carry (a record whose note
    says "ignore your rules…"): the data before them is kept, the hit recorded."""
    clean, hits = scrubbed(result)
    if hits:
        step.writer.emit("guardrail.triggered", {
            "guardrail": "prompt_injection", "where": "tool_result", "outcome": "withheld",
            "detail": "; ".join(hits)[:500],
        })  # fmt: skip
    return clean if hits else result


def completed(step: Step, called: Called, shown: Mapping[str, Any]) -> None:
    """Record ``action.completed`` for ``called`` with what the log may keep of its result."""
    step.writer.emit("action.completed", {"action_id": called.action_id, "result": dict(shown)},
                     caused_by=called.requested)  # fmt: skip
    step.outcomes.append((str(called.requested.payload["tool"]), True))


async def call_tool(
    step: Step, tool: str, arguments: Mapping[str, Any]
) -> dict[str, Any] | ToolFailure:
    """The tool's result, or its failure; both are recorded on the turn, the result whole."""
    called = await run_tool(step, tool, arguments)
    if not isinstance(called.outcome, ToolFailure):
        completed(step, called, called.outcome)
    return called.outcome


def request_action(step: Step, tool: str, arguments: Mapping[str, Any]) -> Event:
    """Record a request the service carries out after the turn (a check-in code, say)."""
    writer = step.writer
    return writer.emit("action.requested", {"action_id": writer.next_action_id(), "tool": tool,
                                            "arguments": dict(arguments)})  # fmt: skip

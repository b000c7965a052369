"""A sensitive call a person decided: run it once approved, or tell the customer why not.

A model-backed agent never runs a sensitive tool (a refund, a cancellation) itself: it
records ``approval.requested``, and an agent of the approval's queue or a supervisor
approves or denies it on the desk. The decision is an event; the automated agent answers
it like a customer's turn, anchored on it: an approved call runs with the approval's id
as its action id and an idempotency key derived from the decision, so a decision
delivered twice runs nothing twice, and the customer hears the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from threadline.agents.step import Step
from threadline.core.events import Event
from threadline.systems import ToolCall
from threadline.tools import ToolFailure

#: The decision events the automated agent answers.
DECISIONS: Final = frozenset({"approval.granted", "approval.denied"})


def what(step: Step, approval: Mapping[str, Any]) -> str:
    """How the customer hears what was asked: the tool's label (else its name) and the
    reference it acts on ("the refund for order <number>")."""
    arguments = approval.get("arguments") or {}
    tool = str(approval["tool"])
    spec = step.business.pack.tools.get(tool)
    label = spec.label if spec is not None and spec.label else f"the {tool.replace('_', ' ')}"
    for name, value in arguments.items():
        if name.endswith("_number") and value:  # order_number: "order <number>"
            return f"{label} for {name.removesuffix('_number').replace('_', ' ')} {value}"
    return label


async def settle(step: Step, decision: Event) -> str | None:
    """Record the decided call's outcome on ``step`` and return the customer's reply; None
    when the decision names no approval the conversation still holds."""
    approval_id = str(decision.payload["approval_id"])
    approval = step.state.approvals.get(approval_id)
    if approval is None:
        return None
    said = what(step, approval)
    if decision.type == "approval.denied":
        if approval["status"] != "denied":
            return None
        return step.say("approval_denied", what=said, reason=decision.payload["reason"])
    if approval["status"] != "granted":
        return None
    outcome = await _run(step, approval_id, approval)
    if isinstance(outcome, ToolFailure):
        return step.say("approval_failed", what=said, error=str(outcome))
    return step.say("approval_done", what=said, result=outcome)


async def _run(
    step: Step, approval_id: str, approval: Mapping[str, Any]
) -> dict[str, Any] | ToolFailure:
    """Run the approved call: ``action.requested`` with the approval's id, then its outcome."""
    writer = step.writer
    tool = str(approval["tool"])
    arguments = dict(approval.get("arguments") or {})
    runner = step.systems.tools
    requested = writer.emit(
        "action.requested",
        {"action_id": approval_id, "tool": tool, "tool_version": runner.version(tool),
         "arguments": arguments},
    )  # fmt: skip
    call = ToolCall(tool, arguments, f"{writer.key(0)}/{approval_id}", step.now,
                    step.state.conversation_id)  # fmt: skip
    try:
        result = await runner.call(call)
    except ToolFailure as failure:
        writer.emit("action.failed", {"action_id": approval_id,
                                      "error": f"{failure.code}: {failure}",
                                      "retryable": failure.retryable},
                    caused_by=requested)  # fmt: skip
        step.outcomes.append((tool, False))
        return failure
    writer.emit("action.completed", {"action_id": approval_id, "result": dict(result)},
                caused_by=requested)  # fmt: skip
    step.outcomes.append((tool, True))
    return result

"""How a model's tool call runs: under the same proof rules as the embedded agent's flows.

A model only ever sees what the customer on this contact may hear, so no prompt can make
it tell more:

- A tool that finds a protected record (a lookup intent's tool: ``lookup_order``) runs,
  and its result is shown whole only to the record's proven owner; anyone else's model
  sees the fields the pack calls public and ``verified: false``, as the embedded agent's
  customer would hear. A knowledge answer given on this contact (a postcode) proves
  ownership here as it does in the flow.
- A tool that takes ``customer_id`` acts for the conversation's customer only, once this
  contact has proven who they are (the level the pack asks for their history): the
  argument is theirs, whatever the model wrote. Before that, a tool that needs the
  argument runs nothing; one that may go without it (a booking) runs for no customer.
- A sensitive tool (it moves money or changes an account) does not run: the call waits
  for a person's approval (``approval.requested``).
- A result's text that carries instructions rather than data ("ignore your rules…") is
  cut where the instruction starts: the model reads the data, never the instruction.
- A call with malformed arguments, or to a tool the agent was not offered, runs nothing
  and is recorded as failed.

Every call is recorded (``action.requested``, then ``completed`` or ``failed``) with an
idempotency key derived from the customer's event, the tool and its arguments: a turn
taken again after a crash asks the business's systems nothing twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from threadline.agents.approvals import what
from threadline.agents.guardrails import scrubbed
from threadline.agents.lookup import proof_label, proof_of
from threadline.agents.step import Step
from threadline.business.behaviour import LookupIntent
from threadline.core.events import Event
from threadline.core.model import ToolCall
from threadline.core.verification import anonymous, at_least
from threadline.systems import ToolCall as SystemCall
from threadline.tools import ToolFailure

#: The argument that names whose account a tool acts on.
CUSTOMER_ARGUMENT: Final = "customer_id"


@dataclass(slots=True)
class Ran:
    """What one model call came to: what the model is told, and what the turn learnt."""

    told: dict[str, Any]
    tool: str
    ok: bool
    completed: bool = False
    approval: str | None = None
    withheld: str | None = None


@dataclass(slots=True)
class GuardedTools:
    """Runs a model's calls on a turn (see the module); ``allowed`` is the agent's list."""

    step: Step
    allowed: frozenset[str]
    approver: str
    ran: list[Ran] = field(default_factory=list)

    async def run(self, call: ToolCall) -> Ran:
        ran = await self._run(call)
        self.ran.append(ran)
        return ran

    async def _run(self, call: ToolCall) -> Ran:
        step = self.step
        arguments = dict(call.arguments)
        problem = call.problem
        if problem is None and call.name not in self.allowed:
            problem = f"{call.name} is not a tool this agent may call"
        if problem is not None:
            requested = self._requested(call.name, arguments)
            self._failed(requested, "invalid_call", problem)
            return Ran({"error": problem}, call.name, ok=False)
        spec = step.business.pack.tools[call.name]
        if CUSTOMER_ARGUMENT in spec.parameters.get("properties", {}):
            owner = self._proven_customer()
            if owner is not None:
                arguments[CUSTOMER_ARGUMENT] = owner
            elif CUSTOMER_ARGUMENT not in spec.parameters.get("required", ()):
                arguments.pop(CUSTOMER_ARGUMENT, None)  # for nobody's account: a visitor's booking
            else:
                needed = step.business.pack.verification.history
                requested = self._requested(call.name, arguments)
                self._failed(requested, "unverified", "the customer has not proven who they are")
                return Ran({"error": "the customer has not proven who they are yet",
                            "ask_for": proof_label(step, needed) or "a one-time code"},
                           call.name, ok=False)  # fmt: skip
        if spec.sensitive:
            return self._approval(call.name, arguments)
        requested = self._requested(call.name, arguments)
        key = _key(step, call.name, arguments)
        try:
            result = await step.systems.tools.call(
                SystemCall(call.name, arguments, key, step.now, step.state.conversation_id)
            )
        except ToolFailure as failure:
            self._failed(requested, failure.code, str(failure), retryable=failure.retryable)
            told: dict[str, Any] = {"error": f"{failure.code}: {failure}"}
            if failure.details:  # what the system offers instead (the free times near one taken)
                told["details"] = dict(failure.details)
            return Ran(told, call.name, ok=False)
        # Data before an injected instruction is kept; the instruction never reaches the model.
        clean, hits = scrubbed(result)
        shown, told = await self._shown(call.name, clean)
        step.writer.emit("action.completed", {"action_id": requested.payload["action_id"],
                                              "result": shown}, caused_by=requested)  # fmt: skip
        step.outcomes.append((call.name, True))
        return Ran(told, call.name, ok=True, completed=True,
                   withheld="; ".join(hits) if hits else None)  # fmt: skip

    def _proven_customer(self) -> str | None:
        step = self.step
        owner = step.customer_id
        needed = step.business.pack.verification.history
        if owner is None or anonymous(owner) or not at_least(step.level, needed):
            return None
        return owner

    async def _shown(
        self, tool: str, result: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """What the log keeps of ``result`` and what the model is told: a protected record
        whole for its proven owner, else its public fields."""
        step = self.step
        intent = next((i for i in step.business.pack.intents.values()
                       if isinstance(i, LookupIntent) and i.lookup.tool == tool), None)  # fmt: skip
        if intent is None:
            return dict(result), dict(result)
        record = dict(result)
        proof = await proof_of(step, intent, record)
        if proof.verified:
            return {**record, "verified": True}, {**record, "verified": True}
        public = {k: record[k] for k in intent.lookup.public if k in record}
        told: dict[str, Any] = {**public, "verified": False}
        if proof.locked:
            told["proof"] = "too many wrong answers: offer a person"
        elif proof.mismatch:
            told["proof"] = f"the {proof.label or 'answer'} given does not match this record"
        elif proof.label:
            told["ask_for"] = proof.label
        return {**public, "verified": False}, told

    def _approval(self, tool: str, arguments: dict[str, Any]) -> Ran:
        step = self.step
        writer = step.writer
        spec = step.business.pack.tools[tool]
        approval_id = f"apr-{writer.anchor}-{writer.next_action_id().rsplit('-', 1)[-1]}"
        queue = spec.approved_by or self.approver
        writer.emit("approval.requested", {
            "approval_id": approval_id, "tool": tool, "tool_version": spec.version,
            "arguments": arguments, "queue": queue,
            "reason": str(arguments.get("reason") or ""),
        })  # fmt: skip
        said = what(step, {"tool": tool, "arguments": arguments})
        return Ran({"status": "waiting for a person's approval", "approval_id": approval_id,
                    "tell_the_customer": f"a colleague will approve {said} first"},
                   tool, ok=True, approval=approval_id)  # fmt: skip

    def _requested(self, tool: str, arguments: Mapping[str, Any]) -> Event:
        writer = self.step.writer
        runner = self.step.systems.tools
        version = runner.version(tool) if tool in self.step.business.pack.tools else None
        return writer.emit("action.requested", {
            "action_id": writer.next_action_id(), "tool": tool, "tool_version": version,
            "arguments": dict(arguments),
        })  # fmt: skip

    def _failed(
        self, requested: Event, code: str, message: str, *, retryable: bool = False
    ) -> None:
        self.step.writer.emit("action.failed", {
            "action_id": requested.payload["action_id"], "error": f"{code}: {message}",
            "retryable": retryable,
        }, caused_by=requested)  # fmt: skip
        self.step.outcomes.append((str(requested.payload["tool"]), False))


def _key(step: Step, tool: str, arguments: Mapping[str, Any]) -> str:
    """The call's idempotency key: the customer's event, the tool, the arguments."""
    digest = hashlib.sha256(orjson.dumps(dict(arguments), option=orjson.OPT_SORT_KEYS))
    return f"{step.writer.key(0)}/{tool}/{digest.hexdigest()[:16]}"

"""The lookup flow: a record found by a reference, its details only for its proven owner.

The record comes from the pack's tool; who owns it is a field of the record.
Its details are for a customer who has proven they are that owner at the level
the verification policy asks for the record's data class on this channel: a
proof this contact gave earlier (a sign-in, a code), or a knowledge answer (a
postcode) given on this contact that matches the owner's record. A data class
that needs a one-time code gets one sent to the owner's phone or email on file.
Anyone else hears only the fields the pack calls public, and the log keeps
only what was shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from threadline.agents.actions import completed, run_tool
from threadline.agents.codes import offer_code
from threadline.agents.proofs import by_knowledge, holds, knowledge_locked, prove
from threadline.agents.step import Step
from threadline.business.behaviour import LookupIntent, ReferenceSlot
from threadline.core.verification import at_least
from threadline.tools import NOT_FOUND, ToolFailure


@dataclass(frozen=True, slots=True)
class Proof:
    """Whether the person asking owns the record, and what they still need to prove it."""

    verified: bool
    needed: str | None = None
    owner: str | None = None
    mismatch: bool = False
    locked: bool = False
    label: str = ""


def proof_label(step: Step, needed: str | None) -> str:
    """How the agent names the knowledge proof it asks for (the postcode), if it asks one."""
    if not at_least("knowledge", needed):
        return ""
    slot = next(iter(step.business.pack.verification.knowledge), None)
    if slot is None:
        return ""
    spec = step.business.pack.slots.get(slot)
    return spec.label if spec is not None else slot


async def proof_of(step: Step, intent: LookupIntent, record: dict[str, Any]) -> Proof:
    """How far the person asking has proven they own ``record``; a matching knowledge
    answer is recorded as their proof."""
    spec = intent.lookup
    needed = step.business.pack.verification.needed(spec.protects, step.channel)
    if needed is None:
        return Proof(True)
    label = proof_label(step, needed)
    owner = record.get(spec.owner)
    if owner is None:
        return Proof(False, needed, label=label)
    owner = str(owner)
    if holds(step, owner, needed):
        return Proof(True, needed, owner)
    if at_least("knowledge", needed):
        slot = await by_knowledge(step, owner)
        if slot is not None:
            await prove(step, owner, slot)
            return Proof(True, needed, owner)
        return Proof(False, needed, owner, mismatch=bool(step.rejected),
                     locked=knowledge_locked(step) or step.locked_out, label=label)  # fmt: skip
    return Proof(False, needed, owner, label=label)


async def find(step: Step, intent: LookupIntent) -> tuple[dict[str, Any], Proof] | None:
    """The record the conversation's reference names, and the proof of who asks; None when
    there is no reference yet, no such record, or the system failed (each said in the log)."""
    spec = intent.lookup
    value = step.slots.get(spec.slot)
    if value is None:
        return None
    called = await run_tool(step, spec.tool, {spec.argument or spec.slot: value})
    if isinstance(called.outcome, ToolFailure):
        return None
    record = called.outcome
    proof = await proof_of(step, intent, record)
    shown = record if proof.verified else {k: record[k] for k in spec.public if k in record}
    completed(step, called, {**shown, "verified": proof.verified})
    return record, proof


async def lookup(step: Step, intent: LookupIntent) -> str:
    """Ask for the reference, or say what the record is (as much as the asker may hear)."""
    spec = intent.lookup
    slot = step.business.pack.slots[spec.slot]
    label = slot.label if isinstance(slot, ReferenceSlot) else spec.slot
    value = step.slots.get(spec.slot)
    if value is None:
        return step.say("ask", label=label)
    found = await find(step, intent)
    if found is None:
        failure = next((c for c in reversed(step.writer.events) if c.type == "action.failed"), None)
        code = str(failure.payload["error"]).split(":", 1)[0] if failure else NOT_FOUND
        return step.say("not_found", label=label, value=value, code=code)
    record, proof = found
    if proof.verified:
        return step.say("found", label=label, value=value, record=record)
    public = {k: record[k] for k in spec.public if k in record}
    words: dict[str, Any] = {"label": label, "value": value, "record": public,
                             "proof_label": proof.label}  # fmt: skip
    if proof.locked:
        return step.say("locked_out" if step.locked_out else "locked", **words)
    if proof.mismatch:
        return step.say("mismatch", **words)
    if proof.owner is not None and not at_least("knowledge", proof.needed):
        offered = await offer_code(step, proof.owner)
        if offered is not None:
            return offered
        return step.say("proof_unavailable", **words)
    return step.say("found_public", **words)

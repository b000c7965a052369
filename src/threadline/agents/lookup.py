"""The lookup flow: a record found by a reference, its details only for its proven owner.

The record comes from the pack's tool; who owns it is a field of the record.
Its details are for a customer who has proven they are that owner in a way the
verification policy accepts for the record's data class: a verified identity
of the owner on this conversation, or a knowledge answer (a postcode) given on
this contact that matches the owner's record. Anyone else hears only the
fields the pack calls public, and the log keeps only what was shown.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any, Final

from threadline.agents.actions import completed, run_tool
from threadline.agents.step import Step
from threadline.business.behaviour import LookupIntent, ReferenceSlot
from threadline.tools import NOT_FOUND, ToolFailure

#: Proof methods that are a verified identity on the conversation (not a knowledge answer).
IDENTITY_PROOFS: Final = frozenset({"login", "oidc", "otp", "agent"})


@dataclass(frozen=True, slots=True)
class Proof:
    """Whether the person asking owns the record, and whether an answer they gave was wrong."""

    verified: bool
    mismatch: bool = False
    label: str = ""


async def proof_of(step: Step, intent: LookupIntent, record: dict[str, Any]) -> Proof:
    """How far the person asking has proven they own ``record``."""
    spec = intent.lookup
    verification = step.business.pack.verification
    if spec.protects is None:
        return Proof(True)
    accepted = verification.data.get(spec.protects, ())
    owner = record.get(spec.owner)
    asked = [slot for slot in verification.knowledge if slot in accepted]
    label = _label(step, asked[0]) if asked else ""
    if owner is None:
        return Proof(False, label=label)
    if (step.identity_verified and step.context.customer_id == owner
            and IDENTITY_PROOFS & set(accepted)):  # fmt: skip
        return Proof(True, label=label)
    given = [slot for slot in asked if slot in step.answers]
    if not given:
        return Proof(False, label=label)
    customer = await step.systems.customers.get(str(owner))
    for slot in given:
        expected = customer.knowledge.get(verification.knowledge[slot]) if customer else None
        if expected and hmac.compare_digest(step.answers[slot].encode(), expected.encode()):
            return Proof(True, label=label)
    return Proof(False, mismatch=True, label=label)


def _label(step: Step, slot: str) -> str:
    spec = step.business.pack.slots.get(slot)
    return spec.label if spec is not None else slot


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
    if proof.mismatch:
        return step.say("mismatch", label=label, value=value, record=public,
                        proof_label=proof.label)  # fmt: skip
    return step.say("found_public", label=label, value=value, record=public,
                    proof_label=proof.label)  # fmt: skip

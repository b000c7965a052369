"""What the person on this contact has proven, and how a new proof is recorded.

A proof has a level (:mod:`threadline.core.verification`); the pack says which
level each kind of data needs on each channel. Proofs given on earlier
contacts of the conversation do not count for a new one: a call that claims
to be the customer by caller id proves itself again.

A proof that shows an anonymous visitor or an unrecognised caller to be a
known customer identifies the conversation: ``identity.linked`` names the
customer, and the conversation is theirs from then on (their other channels
find it). A proof for the conversation's own customer verifies the
identifiers this contact claimed.
"""

from __future__ import annotations

import hmac
import re
from typing import Final

from threadline.agents.step import Step
from threadline.core.verification import anonymous, at_least, rank
from threadline.systems import CustomerRecord

#: What a customer record says for each kind of identity a contact may claim.
_CONTACTS: Final = {"phone": "phone", "email": "email", "member": "member_id"}
#: A one-time code read out or typed: its digits, maybe in groups ("123 456", "123-456").
_CODE: Final = re.compile(r"(?<!\d)\d(?:[ -]?\d){5,7}(?!\d)")


def contact_identifier(step: Step) -> tuple[str, str] | None:
    """The identifier this contact stands for: the number a call came from, else the
    anonymous session itself (a chat visitor's id)."""
    state = step.state
    if state.contact is not None:
        return str(state.contact["kind"]), str(state.contact["value"])
    if anonymous(state.customer_id) and state.customer_id:
        return "device", state.customer_id
    return None


def holds(step: Step, owner: str, needed: str | None) -> bool:
    """Whether this contact has proven it is ``owner`` at ``needed`` or more."""
    return step.customer_id == owner and at_least(step.level, needed)


def knowledge_locked(step: Step) -> bool:
    """Whether this conversation gave too many wrong knowledge answers to try another."""
    verification = step.business.pack.verification
    wrong = sum(step.state.failed_proofs.get(slot, 0) for slot in verification.knowledge)
    return wrong + len(step.rejected) >= verification.knowledge_attempts


async def by_knowledge(step: Step, owner: str, record: CustomerRecord | None = None) -> str | None:
    """The knowledge slot whose answer, given on this contact, matches ``owner``'s record;
    None when none does (a wrong answer said this turn is noted for the turn's end)."""
    fields = step.business.pack.verification.knowledge
    given = [slot for slot in fields if slot in step.answers]
    if not given or knowledge_locked(step):
        return None
    if await locked_out(step, owner):
        step.locked_out = True
        return None
    customer = record or await step.systems.customers.get(owner)
    for slot in given:
        expected = customer.knowledge.get(fields[slot]) if customer is not None else None
        if expected and hmac.compare_digest(step.answers[slot].encode(), expected.encode()):
            return slot
    for slot in given:
        if slot in step.extraction.values:  # said this turn: one wrong answer, counted once
            step.rejected.setdefault(slot, owner)
    return None


def client_of(step: Step) -> str | None:
    """Who gives this contact's answers, for the per-client limit: the calling number or
    the chat session."""
    contact = contact_identifier(step)
    return None if contact is None else f"{contact[0]}:{contact[1]}"


async def locked_out(step: Step, owner: str) -> bool:
    """Whether too many wrong proofs, about ``owner`` on any channel or from this client about
    anyone, stop this contact from trying another."""
    if step.lockouts is None:
        return False
    policy = step.business.pack.verification.lockout
    client = client_of(step)
    if client is not None and step.lockouts.client_locked(client, policy):
        return True
    return await step.lockouts.customer_locked(owner, policy)


async def prove(step: Step, owner: str, method: str) -> None:
    """Record that this contact proved it is ``owner`` by ``method``."""
    verification = step.business.pack.verification
    level = verification.level_of(method)
    step.rejected.clear()
    if rank(level) > rank(step.level) or step.customer_id != owner:
        step.level = level
    if anonymous(step.customer_id):
        contact = contact_identifier(step)
        if contact is None:
            return
        kind, value = contact
        step.writer.emit("identity.linked", {"kind": kind, "value": value, "verified": True,
                                             "method": method, "level": level,
                                             "customer_id": owner})  # fmt: skip
        step.writer.customer_id = owner
        step.customer_id = owner
        return
    if step.customer_id != owner:
        return  # the proof is for this record only: the conversation is someone else's
    customer = await step.systems.customers.get(owner)
    targets: list[tuple[str, str]] = []
    for claimed, ok in sorted(step.state.identities.items()):
        known = getattr(customer, _CONTACTS.get(claimed, ""), None) if customer else None
        if not ok and known:
            targets.append((claimed, str(known)))
    if not targets and step.state.contact is not None:  # a stronger proof of a verified contact
        targets = [(str(step.state.contact["kind"]), str(step.state.contact["value"]))]
    if not targets:  # a contact that claimed nothing (a visit, a signed-in chat): the leg
        targets = [("device", step.writer.leg_id or step.state.conversation_id)]
    for target_kind, target in targets:
        step.writer.emit("identity.linked", {"kind": target_kind, "value": target,
                                             "verified": True, "method": method,
                                             "level": level})  # fmt: skip


def rejections(step: Step) -> None:
    """Record the wrong knowledge answers of this turn, once each."""
    client = client_of(step)
    for slot, owner in step.rejected.items():
        step.writer.emit("verification.rejected", {"method": slot, "reason": "wrong",
                                                   "customer_id": owner})  # fmt: skip
        if step.lockouts is not None and client is not None:
            step.lockouts.client_failed(client, step.business.pack.verification.lockout)


def code_in(text: str, length: int) -> str | None:
    """The one-time code of ``length`` digits in ``text``, if it holds exactly one."""
    found = [re.sub(r"\D", "", m) for m in _CODE.findall(text)]
    codes = [c for c in found if len(c) == length]
    return codes[0] if len(codes) == 1 else None

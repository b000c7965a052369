"""What the model-backed agent checks around a model, each hit recorded as an event.

- **Prompt injection**, in a customer's message and in a tool's result: text that tries
  to give the agent new instructions ("ignore your previous instructions", "you are now
  …", "reveal your system prompt"), rather than ask for something or report data.
- **Personal data in a reply**: a card, a security code or a national identifier never;
  a phone number or an e-mail address only to a customer proven at the level the pack
  asks for their history.
- **Promises**: a reply saying a refund, a cancellation or a charge is done when no such
  call completed on the turn.
- **Loops**: the same message from the customer again and again.

Each check is pure and cheap (compiled patterns and the privacy detector): it runs on
every turn.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from threadline.privacy import Redactor

#: Instructions aimed at the agent rather than a request of it.
_INJECTION: Final = re.compile(
    r"""
    \b(ignore|disregard|forget|override|bypass)\b[^.!?\n]{0,40}\b
        (instructions?|rules?|prompts?|guidelines|polic(y|ies)|guardrails?|restrictions?)\b
    | \b(system|developer)\s+(prompt|message|instructions?)\b
    | \byou\s+are\s+now\b
    | \b(act|behave|pretend)\s+(as|like)\s+(an?\s+)?(admin|administrator|developer|root|dan|
        unrestricted|jailbroken|different|new)\b
    | \b(reveal|print|show|repeat|output)\b[^.!?\n]{0,30}\b(prompt|instructions)\b
    | \bjailbreak\b | \bdeveloper\s+mode\b | \bdo\s+anything\s+now\b
    | \bnew\s+instructions?\s*:
    | \bsystem\s+(note|override|notice)\b
    | \b(note|message|instructions?)\s+(to|for)\s+the\s+(assistant|ai|agent|model|bot)\b
    | </?\s*(system|assistant|tool)\s*>
    | \bassistant\s*:\s*\S | \bsystem\s*:\s*\S
    """,
    re.IGNORECASE | re.VERBOSE,
)
#: Words that say a money or account action is done.
_DONE: Final = re.compile(
    r"\b(refund(ed)?|cancel(l?ed)?|reimburs(ed|ement)|credit(ed)?|compensat(ed|ion))\b"
    r"[^.!?\n]{0,60}\b(issued|processed|done|complete[d]?|approved|sent|on its way)\b"
    r"|\b(i|we)('ve| have)\s+(refunded|cancell?ed|credited|reimbursed)\b",
    re.IGNORECASE,
)
_NEVER: Final = Redactor()  # cards, security codes, national identifiers
_CONTACT: Final = Redactor(kinds=("email", "phone"))


def injection(text: str) -> str | None:
    """The phrase that reads as an instruction to the agent, if ``text`` holds one."""
    match = _INJECTION.search(text)
    return " ".join(match.group(0).split())[:80] if match else None


def injection_in(value: Any) -> str | None:
    """An injected instruction anywhere in a tool result's strings."""
    if isinstance(value, str):
        return injection(value)
    if isinstance(value, Mapping):
        return next((hit for v in value.values() if (hit := injection_in(v))), None)
    if isinstance(value, list | tuple):
        return next((hit for v in value if (hit := injection_in(v))), None)
    return None


def scrubbed(value: Any) -> tuple[Any, list[str]]:
    """``value`` (a tool's result) with every string cut where an injected instruction
    starts (what comes before it is data), and the instructions cut out."""
    if isinstance(value, str):
        match = _INJECTION.search(value)
        if match is None:
            return value, []
        return value[: match.start()].rstrip(" :;,-"), [" ".join(match.group(0).split())[:80]]
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        hits: list[str] = []
        for key, item in value.items():
            out[key], found = scrubbed(item)
            hits += found
        return out, hits
    if isinstance(value, list | tuple):
        items = [scrubbed(item) for item in value]
        return [item for item, _ in items], [hit for _, found in items for hit in found]
    return value, []


@dataclass(frozen=True, slots=True)
class ReplyCheck:
    """A reply as it may be sent, and what was taken out of it (kinds)."""

    text: str
    removed: tuple[str, ...]


def personal_data(reply: str, *, contact_allowed: bool) -> ReplyCheck:
    """``reply`` without the personal data the customer may not hear."""
    removed: list[str] = []
    redacted = _NEVER.redact(reply)
    text = redacted.text
    removed += [f.kind for f in redacted.findings if f.kind in _NEVER.kinds]
    if not contact_allowed:
        contact = _CONTACT.redact(text)
        removed += [f.kind for f in contact.findings if f.kind in _CONTACT.kinds]
        text = contact.text
    return ReplyCheck(text, tuple(removed))


def false_promise(reply: str, completed: Collection[str], sensitive: Collection[str]) -> bool:
    """Whether ``reply`` says a sensitive action is done although none of the ``sensitive``
    tools completed this turn (``completed``: the tools that did)."""
    if _DONE.search(reply) is None:
        return False
    return not (set(completed) & set(sensitive))


#: What a reply may offer only when the business says so: a discount, a voucher, money.
_OFFER: Final = re.compile(
    r"\b\d{1,3}\s?%|\b(discount|voucher|coupon|gift card|store credit|compensation|"
    r"free (of charge|shipping|delivery|replacement|repair)|price match|waive[ds]?)\b",
    re.IGNORECASE,
)


def unbacked_offer(reply: str, backing: str) -> str | None:
    """An offer ``reply`` makes that nothing the business said backs (``backing``: the
    pack's policies and what its tools answered this turn), if it makes one."""
    known = backing.casefold()
    for match in _OFFER.finditer(reply):
        if match.group(0).casefold() not in known:
            return match.group(0)
    return None


def repeated(said: Sequence[str], text: str, times: int) -> bool:
    """Whether ``text`` makes the customer's latest ``times`` messages one and the same."""

    def norm(value: str) -> str:
        return " ".join(re.findall(r"\w+", value.casefold()))

    latest = [norm(t) for t in said[-(times - 1) :]] if times > 1 else []
    return len(latest) == times - 1 and all(t == norm(text) for t in latest)

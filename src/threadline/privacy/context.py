"""Numbers that are personal data only in context: "cvv 123", "my social is one two three ...".

A rule pairs keywords with the digit counts its number has and a check on the
digits. The number is the first run after a keyword, past a few linking words
("is", "on the back", ":"), or a run just before one ("737 is the cvv"). A bare
three-digit number is never a security code.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from threadline.privacy.ids import ssn_valid
from threadline.privacy.spoken import Run, run_at

# Linking words between a keyword and its number; number words are never among them.
_LINK: Final = re.compile(
    r"(?:[\s:=,.\-–—]*(?:is|it's|its|it is|are|was|of|on|at|the|back|front|my|card|number|no"
    r"|code|reads|says|would be|will be|that's|thats|that is|should be|um|uh|er|please)\b)*"
    r"[\s:=,\-–—#]*",
    re.IGNORECASE,
)
# What may stand between a number and a keyword after it: "737 is the cvv".
_BEFORE: Final = re.compile(
    r"[\s,]*(?:(?:is|was|as|for|that's|thats)\s+)?(?:(?:the|my|your)\s+)?\Z", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class ContextRule:
    """A number that counts only next to its keywords."""

    kind: str
    label: str
    keywords: re.Pattern[str]
    lengths: frozenset[int]
    check: Callable[[str], bool]
    look_back: bool


def _any(_: str) -> bool:
    return True


def _ssn_digits(digits: str) -> bool:
    return ssn_valid(digits[:3], digits[3:5], digits[5:])


CVV: Final = ContextRule(
    "cvv",
    "security_code",
    re.compile(
        r"\b(?:c\.?\s?v\.?\s?[vc]\.?(?:2(?![0-9]))?|cv2|csc|cid"
        r"|(?:card\s+)?security\s+code|card\s+verification\s+(?:code|number|value)"
        r"|(?:three|four|3|4)[\s-]digits?(?:\s+(?:code|number))?\s+(?:on|at|from)\s+the\s+"
        r"(?:back|front)(?:\s+of\s+(?:the|my)\s+card)?"
        r"|(?:digits|code|number)\s+on\s+the\s+(?:back|front)(?:\s+of\s+(?:the|my)\s+card)?)"
        r"(?![A-Za-z])",
        re.IGNORECASE,
    ),
    frozenset({3, 4}),
    _any,
    look_back=True,
)

SSN_IN_CONTEXT: Final = ContextRule(
    "national_id",
    "us_ssn",
    re.compile(
        r"\b(?:ssn|social\s+security(?:\s+(?:number|no\.?|#))?|social)(?![A-Za-z])",
        re.IGNORECASE,
    ),
    frozenset({9}),
    _ssn_digits,
    look_back=False,
)

RULES: Final = (CVV, SSN_IN_CONTEXT)


@dataclass(frozen=True, slots=True)
class ContextHit:
    rule: ContextRule
    start: int
    end: int


def context_hits(
    text: str, runs: list[Run], rules: tuple[ContextRule, ...] = RULES
) -> list[ContextHit]:
    """Every number that a rule's keyword vouches for, in text order per rule."""
    hits: list[ContextHit] = []
    for rule in rules:
        for keyword in rule.keywords.finditer(text):
            after = run_at(text, _link_end(text, keyword.end()))
            if after is not None and _fits(rule, after):
                hits.append(ContextHit(rule, after.start, after.end))
                continue
            if rule.look_back:
                before = _run_before(text, runs, keyword.start())
                if before is not None and _fits(rule, before):
                    hits.append(ContextHit(rule, before.start, before.end))
    return hits


def _link_end(text: str, pos: int) -> int:
    link = _LINK.match(text, pos)
    return pos if link is None else link.end()


def _fits(rule: ContextRule, run: Run) -> bool:
    digits = run.digits
    return len(digits) in rule.lengths and rule.check(digits)


def _run_before(text: str, runs: list[Run], pos: int) -> Run | None:
    candidates = [r for r in runs if r.end <= pos]
    if not candidates:
        return None
    last = candidates[-1]
    return last if _BEFORE.match(text, last.end, pos) else None

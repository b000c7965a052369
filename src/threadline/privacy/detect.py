"""Personal data in one message: cards, security codes, national ids, phones and e-mails.

``find`` is pure and fast: compiled patterns, and a cheap test first that skips
the number work for text with too few digits or number words. Where findings
overlap, the kind that must never be stored wins: card, national id, security
code, e-mail, phone, in that order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import phonenumbers
from phonenumbers import Leniency

from threadline.privacy.cards import MIN_DIGITS, cards_in
from threadline.privacy.context import context_hits
from threadline.privacy.ids import NationalIdRegistry, default_national_ids
from threadline.privacy.spoken import NUMBERISH, Run, runs

CARD: Final = "card"
CVV: Final = "cvv"
NATIONAL_ID: Final = "national_id"
PHONE: Final = "phone"
EMAIL: Final = "email"
#: The kinds ``find`` reports, strongest first: an overlap keeps the earlier kind.
KINDS: Final = (CARD, NATIONAL_ID, CVV, EMAIL, PHONE)


@dataclass(frozen=True, slots=True)
class Finding:
    """A piece of personal data: its kind, where it is, its text and, for some, a label.

    ``label`` names the card brand or the national id format ("visa", "us_ssn").
    A finding holds the data itself: keep it in memory, never store it.
    """

    kind: str
    start: int
    end: int
    text: str
    label: str = ""


_EMAIL: Final = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![\w-])"
)
# Phone candidates: digits with the separators numbers are written with; the matcher decides.
_PHONE_CANDIDATE: Final = re.compile(
    r"(?<![A-Za-z0-9+])(?:\+[ ]?|\(\+?)?[0-9][0-9 ().\-]{5,22}[0-9]"
)
_DIGIT: Final = re.compile(r"[0-9]")
# A date is no phone number, and the matcher is the slowest step: skip it for these.
_DATE: Final = re.compile(
    r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}|[0-9]{1,2}[./-][0-9]{1,2}[./-][0-9]{2,4}"
)
_PHONE_MIN_DIGITS: Final = 7
_PHONE_MAX_DIGITS: Final = 15
_PHONE_LOOKAHEAD: Final = 3
_PRIORITY: Final = {kind: rank for rank, kind in enumerate(KINDS)}


class Detector:
    """Finds personal data in text; ``region`` is the default country for phone numbers."""

    def __init__(
        self, *, region: str = "US", national_ids: NationalIdRegistry | None = None
    ) -> None:
        self.region = region
        self.national_ids = default_national_ids() if national_ids is None else national_ids

    def find(self, text: str) -> list[Finding]:
        """Every finding in ``text``, in text order, none overlapping another."""
        digits = len(_DIGIT.findall(text))
        found: list[Finding] = []
        number_runs: list[Run] = []
        if digits >= 3 or NUMBERISH.search(text):
            number_runs = runs(text)
            found += self._cards(text, number_runs)
            found += self._context(text, number_runs)
        if digits >= 6:
            found += self._national_ids(text)
        if "@" in text:
            found += _emails(text)
        if digits >= _PHONE_MIN_DIGITS:
            taken = resolve(found)
            found = taken + self._phones(text, taken)
        return resolve(found)

    def _cards(self, text: str, number_runs: list[Run]) -> list[Finding]:
        found: list[Finding] = []
        for run in number_runs:
            if len(run.pieces) == 1 and len(run.pieces[0].digits) < MIN_DIGITS:
                continue
            for card in cards_in(text, run):
                found.append(
                    Finding(CARD, card.start, card.end, text[card.start : card.end], card.brand)
                )
        return found

    def _context(self, text: str, number_runs: list[Run]) -> list[Finding]:
        return [
            Finding(hit.rule.kind, hit.start, hit.end, text[hit.start : hit.end], hit.rule.label)
            for hit in context_hits(text, number_runs)
        ]

    def _national_ids(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        for pattern in self.national_ids:
            for match in pattern.regex.finditer(text):
                if pattern.validator(match):
                    start, end = pattern.span(match)
                    found.append(Finding(NATIONAL_ID, start, end, text[start:end], pattern.name))
        return found

    def _phones(self, text: str, taken: list[Finding]) -> list[Finding]:
        found: list[Finding] = []
        for candidate in _PHONE_CANDIDATE.finditer(text):
            start, end = candidate.span()
            count = len(_DIGIT.findall(text, start, end))
            if not _PHONE_MIN_DIGITS <= count <= _PHONE_MAX_DIGITS:
                continue
            if _DATE.fullmatch(text, start, end) or any(
                f.start <= start and end <= f.end for f in taken
            ):
                continue
            # An explicit country code makes a number a phone number even in a range
            # kept for fiction; without one the number must be a valid one for the region.
            lenient = text[start] == "+" or text[start : start + 2] == "(+"
            leniency = Leniency.POSSIBLE if lenient else Leniency.VALID
            # The matcher reads a few characters past the digits: "2024-05-12 18:46" is a time.
            window = text[start : end + _PHONE_LOOKAHEAD]
            for match in phonenumbers.PhoneNumberMatcher(window, self.region, leniency=leniency):
                m_start, m_end = start + match.start, start + match.end
                found.append(Finding(PHONE, m_start, m_end, text[m_start:m_end]))
        return found


def _emails(text: str) -> list[Finding]:
    return [Finding(EMAIL, m.start(), m.end(), m.group()) for m in _EMAIL.finditer(text)]


def resolve(found: list[Finding]) -> list[Finding]:
    """``found`` without overlaps, in text order: the stronger kind, then the longer span, wins."""
    ranked = sorted(found, key=lambda f: (_PRIORITY.get(f.kind, len(KINDS)), f.start - f.end))
    kept: list[Finding] = []
    for finding in ranked:
        if all(finding.end <= k.start or k.end <= finding.start for k in kept):
            kept.append(finding)
    return sorted(kept, key=lambda f: f.start)


_DEFAULT: Final = Detector()


def find(text: str) -> list[Finding]:
    """Personal data in ``text`` with the default detector (US phone region, SSN and NINO)."""
    return _DEFAULT.find(text)

"""Redaction of the personal data that must never be stored, also across consecutive messages.

A card becomes ``[card ending 1111]`` (its last four digits stay), a security
code ``[security code]``, a national id ``[national id]``. Phones and e-mails
are found but kept unless ``kinds`` names them. The rest of the text, spaces
and punctuation included, stays as it was.

Card numbers split across messages. People send a card in pieces: "my card is
4111 1111", then "1111 1111". A run of digits is taken for the start of a
card, and redacted as ``[card digits]``, when its first digit is 2–6 and either

* it ends the message (only punctuation after it), is two or three groups of
  exactly four typed digits joined by single spaces or dashes, and does not
  follow "+", "#", a code such as "AB-" or a phone word ("call me on"); or
* a card word comes just before it ("my card number is", "visa:", "long
  number is") and it has 4 digits or more, typed in any grouping or said (more
  than a card holds is a card that speech to text ran together or repeated).

When the start ends the message, ``Redacted.carry`` remembers it as its first
four digits, its length and its Luhn sums (never the digits in between). In
the next message, the first run of digits (after six words at most) is
redacted too when, with the carried start, it makes a Luhn-valid number of a
known brand (its last four stay: ``[card ending 1111]``), or when it extends
the start and again ends the message. A carry lasts one message.

The cost: a message that ends in two or three four-digit groups starting 2–6
("receipt 3345 9980") loses them from storage, and so does an order number
typed right after "card number is"; the next message loses its first digits
only when they complete a Luhn-valid card of a known brand, which about one
random continuation in ten of a fitting length does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from threadline.privacy.cards import (
    FIRST_DIGITS,
    MAX_DIGITS,
    MIN_DIGITS,
    brand_of,
    extend_sums,
    luhn_sums,
)
from threadline.privacy.detect import (
    CARD,
    CVV,
    EMAIL,
    KINDS,
    NATIONAL_ID,
    PHONE,
    Detector,
    Finding,
    resolve,
)
from threadline.privacy.spoken import NUMBERISH, Run, runs

if TYPE_CHECKING:
    from threadline.privacy.ner import NerEngine

DEFAULT_KINDS: Final = frozenset({CARD, CVV, NATIONAL_ID})
#: The label of a finding that is the start of a card, not a whole one.
PARTIAL: Final = "partial"
_NER_KINDS: Final = ("name", "address")
_PLACEHOLDERS: Final = {
    CVV: "[security code]",
    NATIONAL_ID: "[national id]",
    PHONE: "[phone]",
    EMAIL: "[email]",
    "name": "[name]",
    "address": "[address]",
}
_MIN_START: Final = 4
_MAX_START: Final = MAX_DIGITS - 1

_CARD_WORD: Final = (
    r"\b(?:card|visa|master\s?card|amex|american\s+express|discover|maestro|union\s?pay|jcb"
    r"|long\s+number|pan)"
)
# A card word, then only linking words up to where the digits begin.
_ANNOUNCED: Final = re.compile(
    _CARD_WORD + r"(?:\s+(?:number|no\.?|num|#|details|digits))?"
    r"(?:[\s:=,.\-–—]*(?:is|it's|its|it is|are|my|the|here|goes|so|ok|okay|sorry|um|uh|er"
    r"|please|starts|starts with|begins with)\b)*[\s:=,\-–—#]*\Z",
    re.IGNORECASE,
)
# Words that say card details are being given, digits or not.
_CARD_TALK: Final = re.compile(
    _CARD_WORD + r"(?:\s+(?:number|no\.?|num|details|digits))\b"
    r"|\b(?:cvv|cvc|cv2|security\s+code|expiry\s+date|expiration\s+date|sort\s+code)\b",
    re.IGNORECASE,
)
# At most this many words may come before the rest of a card: "and the rest is 1111".
_LEAD_WORDS: Final = 6
_TRAILING: Final = " \t\r\n.,;:!?…-"
_NOT_AFTER: Final = re.compile(r"(?:[+#]|[A-Za-z][-/])\Z")
_SENTENCE_END: Final = re.compile(r"[.!?](?:\s|\Z)")
_ONLY_COMMAS: Final = re.compile(r"\s*,\s*")
# Words that make two four-digit groups a phone number, not the start of a card.
_PHONE_WORDS: Final = re.compile(
    r"\b(?:call|phone|mobile|cell|landline|text|whatsapp|ring|tel|fax|extension|ext)\b",
    re.IGNORECASE,
)
_ANNOUNCE_WINDOW: Final = 60


@dataclass(frozen=True, slots=True)
class Carry:
    """What a message that ended with the start of a card leaves for the next one.

    Opaque to callers: keep it in memory with the conversation and pass it to
    the next ``redact``. It holds the start's first four digits, its length and
    its Luhn sums, never the rest of its digits.
    """

    head: str
    length: int
    sums: tuple[int, int]

    def completes(self, digits: str) -> str | None:
        """The brand of the card these digits finish, if they finish one."""
        length = self.length + len(digits)
        if not MIN_DIGITS <= length <= MAX_DIGITS:
            return None
        if extend_sums(self.sums, digits)[0] % 10:
            return None
        return brand_of(self.head + digits[:4], length)

    def extended(self, digits: str) -> Carry:
        return Carry(self.head, self.length + len(digits), extend_sums(self.sums, digits))


@dataclass(frozen=True, slots=True)
class Redacted:
    """A message as it may be stored, what was found in it, and what it leaves for the next."""

    text: str
    findings: tuple[Finding, ...]
    carry: Carry | None
    card_seen: bool


class Redactor:
    """Redacts the kinds of personal data named in ``kinds`` (by default those never stored)."""

    def __init__(
        self,
        *,
        kinds: Iterable[str] = DEFAULT_KINDS,
        detector: Detector | None = None,
        ner: NerEngine | None = None,
    ) -> None:
        self.kinds = frozenset(kinds)
        unknown = self.kinds - {*KINDS, *_NER_KINDS}
        if unknown:
            raise ValueError(f"unknown kinds of personal data: {sorted(unknown)}")
        self.detector = Detector() if detector is None else detector
        self.ner = ner

    def redact(self, text: str, *, carry: Carry | None = None) -> Redacted:
        """``text`` with its data of ``kinds`` replaced; ``carry`` is the last message's."""
        found = self.detector.find(text)
        if self.ner is not None:
            found = resolve(found + self.ner.find(text))
        number_runs = runs(text) if carry is not None or NUMBERISH.search(text) else []
        extra, next_carry = _split_cards(text, number_runs, found, carry)
        findings = resolve(found + extra) if extra else found
        return Redacted(
            text=self._replace(text, findings),
            findings=tuple(findings),
            carry=next_carry,
            card_seen=any(f.kind in {CARD, CVV} for f in findings),
        )

    def _replace(self, text: str, findings: list[Finding]) -> str:
        out: list[str] = []
        cursor = 0
        for finding in findings:
            if finding.kind not in self.kinds:
                continue
            out.append(text[cursor : finding.start])
            out.append(_placeholder(finding))
            cursor = finding.end
        out.append(text[cursor:])
        return "".join(out)


def card_talk(text: str) -> bool:
    """Whether ``text`` speaks of card details ("my card number", "the cvv"): a cheap test for
    text already redacted, where the digits are gone."""
    return _CARD_TALK.search(text) is not None


def payment_started(text: str, *, detector: Detector | None = None) -> bool:
    """Whether ``text`` gives or announces card details: a card, its start, "card number"."""
    found = (detector or _DETECTOR).find(text)
    if any(f.kind in {CARD, CVV} for f in found) or _CARD_TALK.search(text):
        return True
    extra, _ = _split_cards(text, runs(text), found, None)
    return bool(extra)


_DETECTOR: Final = Detector()


def _placeholder(finding: Finding) -> str:
    if finding.kind != CARD:
        return _PLACEHOLDERS.get(finding.kind, f"[{finding.kind}]")
    digits = "".join(r.digits for r in runs(finding.text))
    if finding.label == PARTIAL or len(digits) < 4:
        return "[card digits]"
    return f"[card ending {digits[-4:]}]"


def _split_cards(
    text: str, number_runs: list[Run], found: list[Finding], carry: Carry | None
) -> tuple[list[Finding], Carry | None]:
    """Findings for card pieces split across messages, and the carry for the next message."""
    extra: list[Finding] = []
    next_carry: Carry | None = None
    rest = number_runs
    if carry is not None and number_runs and _leads(text, number_runs[0]):
        lead = number_runs[0]
        finding, next_carry = _continue(text, lead, carry)
        if finding is not None:
            extra.append(finding)
            rest = number_runs[1:]
    blocked = [f for f in found if f.kind != PHONE]
    covered = 0
    for index, run in enumerate(rest):
        if run.start < covered or any(f.start < run.end and run.start < f.end for f in blocked):
            continue
        # Groups that follow with only commas between ("4111, 1111, 1111": speech to text
        # writes a card read out in groups so) are the same card.
        end, more = run.end, ""
        for after in rest[index + 1 :]:
            if not _ONLY_COMMAS.fullmatch(text, end, after.start):
                break
            end = after.end
            more += "".join(p.digits for p in after.pieces)
        start = _card_start(text, run, found)
        if start is None and more and _announced(text, run.start):
            start = (run.start, "".join(p.digits for p in run.pieces))
            if start[1][0] not in FIRST_DIGITS or len(start[1] + more) < _MIN_START:
                start = None
        if start is None:
            continue
        first, digits = start
        if not more:
            end = run.end
        digits += more
        covered = end
        extra.append(Finding(CARD, first, end, text[first:end], PARTIAL))
        if _ends_message(text, end) and len(digits) <= _MAX_START:
            next_carry = Carry(digits[:4], len(digits), luhn_sums(digits))
    return extra, next_carry


def _continue(text: str, lead: Run, carry: Carry) -> tuple[Finding | None, Carry | None]:
    """The rest of a carried card at the start of a message, or a longer start to carry on."""
    digits = ""
    best: tuple[int, str] | None = None
    for index, piece in enumerate(lead.pieces):
        digits += piece.digits
        if carry.length + len(digits) > MAX_DIGITS:
            break
        brand = carry.completes(digits)
        if brand is not None:
            best = (index, brand)
    if best is not None:
        end = lead.pieces[best[0]].end
        return Finding(CARD, lead.start, end, text[lead.start : end], best[1]), None
    all_digits = lead.digits
    if _ends_message(text, lead.end) and carry.length + len(all_digits) <= _MAX_START:
        finding = Finding(CARD, lead.start, lead.end, text[lead.start : lead.end], PARTIAL)
        return finding, carry.extended(all_digits)
    return None, None


def _card_start(text: str, run: Run, found: list[Finding]) -> tuple[int, str] | None:
    """Where a run that could begin a card starts, with its digits; None when it could not."""
    pieces = run.pieces
    for index in range(len(pieces)):
        first = pieces[index].start
        digits = "".join(p.digits for p in pieces[index:])
        if digits[0] not in FIRST_DIGITS:
            continue
        announced = _announced(text, first)
        # After a card word, more digits than any card has are a card misheard (speech to
        # text runs "4111 1111 …" together and repeats digits): redacted all the same.
        if announced and len(digits) >= _MIN_START:
            return first, digits
        grouped = (
            2 <= len(pieces) - index <= 3
            and all(p.typed and len(p.digits) == 4 for p in pieces[index:])
            and _ends_message(text, run.end)
            and not _NOT_AFTER.search(text, max(0, first - 2), first)
            and not any(f.kind == PHONE and f.start < run.end and first < f.end for f in found)
            and not _phone_words_before(text, first)
        )
        if grouped:
            return first, digits
    return None


def _announced(text: str, at: int) -> bool:
    """Whether a card word ("my card number is") comes just before ``at``."""
    return _ANNOUNCED.search(text, max(0, at - _ANNOUNCE_WINDOW), at) is not None


def _leads(text: str, run: Run) -> bool:
    """Whether ``run`` comes first in the message, after a few words at most."""
    before = text[: run.start]
    return len(before.split()) <= _LEAD_WORDS and not any(c.isdigit() for c in before)


def _phone_words_before(text: str, pos: int) -> bool:
    """Whether "call", "mobile" or the like comes before ``pos`` in the same sentence."""
    words = list(_PHONE_WORDS.finditer(text, max(0, pos - _ANNOUNCE_WINDOW), pos))
    return bool(words) and not _SENTENCE_END.search(text, words[-1].end(), pos)


def _ends_message(text: str, end: int) -> bool:
    return not text[end:].strip(_TRAILING)

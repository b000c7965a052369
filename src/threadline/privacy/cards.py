"""Payment card numbers: brands by prefix and length, the Luhn check, and cards inside runs.

A number is a card when it has 13 to 19 digits, passes the Luhn check and
starts as one of the brands below does for its length. The Luhn sums of a
number's first digits are kept apart from the digits themselves, so that a
card split across two messages can be checked without holding its middle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from threadline.privacy.spoken import Run

MIN_DIGITS: Final = 13
MAX_DIGITS: Final = 19
#: Every brand below starts with one of these digits.
FIRST_DIGITS: Final = frozenset("23456")


@dataclass(frozen=True, slots=True)
class Brand:
    """A card scheme: the prefix ranges it issues and the lengths its numbers have."""

    name: str
    ranges: tuple[tuple[str, str], ...]
    lengths: frozenset[int]

    def issues(self, digits: str, length: int) -> bool:
        """Whether a number of ``length`` digits that starts with ``digits`` is this brand's."""
        if length not in self.lengths:
            return False
        for low, high in self.ranges:
            head = digits[: len(low)]
            if len(head) == len(low) and low <= head <= high:
                return True
        return False


def _lengths(low: int, high: int) -> frozenset[int]:
    return frozenset(range(low, high + 1))


#: Checked in order; the first that issues a number names it.
BRANDS: Final = (
    Brand("amex", (("34", "34"), ("37", "37")), frozenset({15})),
    Brand("diners", (("300", "305"), ("36", "36"), ("38", "39")), _lengths(14, 19)),
    Brand("jcb", (("3528", "3589"),), _lengths(16, 19)),
    Brand("visa", (("4", "4"),), frozenset({13, 16, 19})),
    Brand("mastercard", (("51", "55"), ("2221", "2720")), frozenset({16})),
    Brand("discover", (("6011", "6011"), ("644", "649"), ("65", "65")), _lengths(16, 19)),
    Brand("unionpay", (("62", "62"),), _lengths(16, 19)),
    Brand("maestro", (("50", "50"), ("56", "69")), _lengths(13, 19)),
)


def brand_of(digits: str, length: int | None = None) -> str | None:
    """The brand that issues a ``length``-digit number starting with ``digits``, if any."""
    size = len(digits) if length is None else length
    for brand in BRANDS:
        if brand.issues(digits, size):
            return brand.name
    return None


_DOUBLED: Final = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_sums(digits: str) -> tuple[int, int]:
    """The Luhn sums of ``digits`` as the start of a longer number.

    The first is the sum when an even count of digits follows, the second when
    an odd count does; a whole number passes when the first is a multiple of 10.
    """
    even = odd = 0
    for place, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if place % 2:
            even += _DOUBLED[value]
            odd += value
        else:
            even += value
            odd += _DOUBLED[value]
    return even, odd


def extend_sums(sums: tuple[int, int], digits: str) -> tuple[int, int]:
    """The Luhn sums of a start whose sums are ``sums``, followed by ``digits``."""
    tail = luhn_sums(digits)
    shift = len(digits) % 2
    return sums[shift] + tail[0], sums[1 - shift] + tail[1]


def luhn_valid(digits: str) -> bool:
    return luhn_sums(digits)[0] % 10 == 0


def card_brand(digits: str) -> str | None:
    """The brand of ``digits`` when they are a whole card number, else None."""
    if not MIN_DIGITS <= len(digits) <= MAX_DIGITS:
        return None
    brand = brand_of(digits)
    return brand if brand is not None and luhn_valid(digits) else None


@dataclass(frozen=True, slots=True)
class CardSpan:
    """A card found in a run: where it is, its digits and its brand."""

    start: int
    end: int
    digits: str
    brand: str


def cards_in(text: str, run: Run) -> list[CardSpan]:
    """The cards inside ``run``, each a window of whole pieces.

    Of windows that overlap, the one with more typed digits wins, then the one
    that ends last, then the longest: in "six 4111 1111 1111 1111" and in
    "5153 4000 0010 4048 o" the card is the typed groups, and a code typed right
    after a card joins it only when the two make a valid 19-digit number.
    """
    pieces = run.pieces
    windows: list[tuple[tuple[int, int, int], CardSpan]] = []
    for i, first in enumerate(pieces):
        if first.digits[0] not in FIRST_DIGITS or (first.typed and _after_plus(text, first.start)):
            continue
        digits = ""
        typed = 0
        for j in range(i, len(pieces)):
            digits += pieces[j].digits
            typed += len(pieces[j].digits) if pieces[j].typed else 0
            if len(digits) > MAX_DIGITS:
                break
            brand = card_brand(digits) if len(digits) >= MIN_DIGITS else None
            if brand is not None:
                span = CardSpan(first.start, pieces[j].end, digits, brand)
                windows.append(((typed, span.end, len(digits)), span))
    found: list[CardSpan] = []
    for _, span in sorted(windows, key=lambda w: w[0], reverse=True):
        if all(span.end <= f.start or f.end <= span.start for f in found):
            found.append(span)
    return sorted(found, key=lambda f: f.start)


def _after_plus(text: str, start: int) -> bool:
    """Whether a typed group follows a "+", as an international phone number does."""
    before = text[max(0, start - 2) : start]
    return before.endswith("+") or before == "+ "

"""Personal data in conversation text: find it, and redact what must never be stored.

``find`` reports payment cards (typed or said), security codes in context,
national ids, phone numbers and e-mail addresses; ``Redactor`` replaces
cards, security codes and national ids, also when a card number is split
across consecutive messages. Names and addresses need the ``ner`` extra
(``NerEngine``). Pure Python, no I/O.
"""

from threadline.privacy.cards import BRANDS, Brand, brand_of, card_brand, luhn_valid
from threadline.privacy.detect import KINDS, Detector, Finding, find
from threadline.privacy.ids import (
    UK_NINO,
    US_SSN,
    NationalIdPattern,
    NationalIdRegistry,
    default_national_ids,
)
from threadline.privacy.ner import NerEngine, NerUnavailable
from threadline.privacy.redact import (
    DEFAULT_KINDS,
    Carry,
    Redacted,
    Redactor,
    card_talk,
    payment_started,
)

__all__ = [
    "BRANDS",
    "DEFAULT_KINDS",
    "KINDS",
    "UK_NINO",
    "US_SSN",
    "Brand",
    "Carry",
    "Detector",
    "Finding",
    "NationalIdPattern",
    "NationalIdRegistry",
    "NerEngine",
    "NerUnavailable",
    "Redacted",
    "Redactor",
    "brand_of",
    "card_brand",
    "card_talk",
    "default_national_ids",
    "find",
    "luhn_valid",
    "payment_started",
]

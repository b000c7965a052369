"""National identity numbers: a registry of formats, each a regex and a check on its match.

Two formats come with it: the US Social Security number and the UK National
Insurance number. Callers add their own country's with ``register``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class NationalIdPattern:
    """One national identity number format.

    ``regex`` finds candidates; ``validator`` says whether a match is a number
    that can be issued. The finding spans the match's ``id`` group when the
    regex has one (so a pattern may require a keyword before the number), and
    the whole match otherwise.
    """

    name: str
    regex: re.Pattern[str]
    validator: Callable[[re.Match[str]], bool]

    def span(self, match: re.Match[str]) -> tuple[int, int]:
        if "id" in self.regex.groupindex:
            return match.span("id")
        return match.span()


class NationalIdRegistry:
    """The national identity formats a detector looks for."""

    def __init__(self, patterns: Iterable[NationalIdPattern] = ()) -> None:
        self._patterns: dict[str, NationalIdPattern] = {}
        for pattern in patterns:
            self.register(pattern)

    def register(self, pattern: NationalIdPattern) -> None:
        """Add a format; a name already registered is an error."""
        if pattern.name in self._patterns:
            raise ValueError(f"a national id pattern named {pattern.name!r} is registered")
        self._patterns[pattern.name] = pattern

    def __iter__(self) -> Iterator[NationalIdPattern]:
        return iter(tuple(self._patterns.values()))

    def __len__(self) -> int:
        return len(self._patterns)

    def names(self) -> tuple[str, ...]:
        return tuple(self._patterns)


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """The SSA's rules: no area 000, 666 or 900–999, no group 00, no serial 0000."""
    return (
        area != "000"
        and area != "666"
        and not area.startswith("9")
        and group != "00"
        and serial != "0000"
    )


def _ssn_match(match: re.Match[str]) -> bool:
    return ssn_valid(match["area"], match["group"], match["serial"])


#: First letters never issued (D F I Q U V), second letters never issued (D F I O Q U V),
#: and prefixes kept back.
_NINO_FIRST_BAD: Final = frozenset("DFIQUV")
_NINO_SECOND_BAD: Final = frozenset("DFIOQUV")
_NINO_PREFIX_BAD: Final = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def nino_valid(prefix: str) -> bool:
    """Whether HMRC issues National Insurance numbers with this two-letter prefix."""
    upper = prefix.upper()
    return (
        upper[0] not in _NINO_FIRST_BAD
        and upper[1] not in _NINO_SECOND_BAD
        and upper not in _NINO_PREFIX_BAD
    )


def _nino_match(match: re.Match[str]) -> bool:
    return nino_valid(match["prefix"])


#: 123-45-6789 or 123 45 6789, with the same separator twice and no digit group beside it.
US_SSN: Final = NationalIdPattern(
    "us_ssn",
    re.compile(
        r"(?<![0-9])(?<![0-9][ -])(?P<area>[0-9]{3})(?P<sep>[ -])(?P<group>[0-9]{2})(?P=sep)"
        r"(?P<serial>[0-9]{4})(?![0-9])(?![ -][0-9])"
    ),
    _ssn_match,
)

#: QQ 12 34 56 C, QQ123456C: two letters, six digits, a suffix A–D.
UK_NINO: Final = NationalIdPattern(
    "uk_nino",
    re.compile(
        r"(?<![A-Za-z0-9])(?P<prefix>[A-Z]{2})[ -]?[0-9]{2}[ -]?[0-9]{2}[ -]?[0-9]{2}[ -]?[A-D]"
        r"(?![A-Za-z0-9])",
        re.IGNORECASE,
    ),
    _nino_match,
)


def default_national_ids() -> NationalIdRegistry:
    """A new registry holding the US SSN and UK NINO formats."""
    return NationalIdRegistry((US_SSN, UK_NINO))

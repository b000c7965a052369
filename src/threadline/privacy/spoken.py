"""Digit runs as people type and say them: "4111 1111", "four one one one", "double oh seven".

A run is a sequence of pieces, each a group of typed digits or a number said as
words ("seven", "oh", "forty one", "double four"), with offsets into the text.
Two typed groups belong to one run only when a single space or dash separates
them, as card numbers are written, so "1,299.00" and "4412, 4413" stay apart;
around words, and between single digits ("4, 1, 1, 1"), a comma or full stop
may stand too, as speech-to-text punctuates. Fillers ("um") inside a run are
skipped, and "for" beside single digits reads as four, as speech-to-text
mishears it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

_UNITS: Final = {
    "zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
}  # fmt: skip
_TEENS: Final = {
    "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14",
    "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19",
}  # fmt: skip
_TENS: Final = {
    "twenty": "2", "thirty": "3", "forty": "4", "fourty": "4", "fifty": "5",
    "sixty": "6", "seventy": "7", "eighty": "8", "ninety": "9",
}  # fmt: skip
_REPEATS: Final = {"double": 2, "triple": 3}
# Speech-to-text writes "four" as "for" inside a string of digits: "for 1, 1, 1".
_HOMOPHONES: Final = {"for": "4"}
_FILLERS: Final = frozenset({"um", "uh", "er", "erm", "ah", "hmm"})
_ZERO_LETTERS: Final = frozenset({"oh", "o"})

_WORDS: Final = sorted(
    [*_UNITS, *_TEENS, *_TENS, *_REPEATS, *_HOMOPHONES, *_FILLERS], key=len, reverse=True
)
_FIRSTS: Final = "".join(sorted({w[0] for w in _WORDS}))
# The lookahead on a first character rejects most positions before the alternation is tried.
_ATOM: Final = (
    rf"(?<![A-Za-z0-9])(?=[0-9{_FIRSTS}])(?:[0-9]+|(?:{'|'.join(_WORDS)}))(?![A-Za-z0-9])"
)
# A single space or dash joins typed groups; copied text may have a no-break space or an
# en dash in their place.
_SINGLE: Final = frozenset({" ", "-", "\u00a0", "\u202f", "\u2009", "\u2013"})
_SEPARATOR: Final = (
    r"(?:[ \t\u00a0\u202f\u2009]*[,.\-\u2013][ \t\u00a0\u202f\u2009]*|[ \t\u00a0\u202f\u2009]+)"
)
RUN: Final = re.compile(rf"{_ATOM}(?:{_SEPARATOR}{_ATOM})*", re.IGNORECASE)
_ATOMS: Final = re.compile(_ATOM, re.IGNORECASE)
# Speech-to-text parts single digits with commas or full stops: "4, 1, 1, 1".
_SPOKEN_COMMA: Final = re.compile(r"[ \t]*[,.][ \t]*")
#: Any digit or number word: the cheap test for "could this text hold a number at all".
NUMBERISH: Final = re.compile(
    r"[0-9]|\b(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)\b", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class Piece:
    """One group of a run: typed digits, or the digits some words say."""

    start: int
    end: int
    digits: str
    typed: bool


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive pieces that read as one number."""

    pieces: tuple[Piece, ...]

    @property
    def start(self) -> int:
        return self.pieces[0].start

    @property
    def end(self) -> int:
        return self.pieces[-1].end

    @property
    def digits(self) -> str:
        return "".join(p.digits for p in self.pieces)


def runs(text: str) -> list[Run]:
    """Every run in ``text``, in order."""
    found: list[Run] = []
    for match in RUN.finditer(text):
        found.extend(_split(text, match.start(), match.end()))
    return found


def run_at(text: str, pos: int) -> Run | None:
    """The first run of the number that starts exactly at ``pos``, if one does."""
    match = RUN.match(text, pos)
    if match is None:
        return None
    parts = _split(text, match.start(), match.end())
    return parts[0] if parts and parts[0].start == pos else None


def _split(text: str, start: int, end: int) -> list[Run]:
    """The pieces of one regex match, cut where typed groups are not joined as a card's are."""
    atoms = [(m.start(), m.end(), m.group().lower()) for m in _ATOMS.finditer(text, start, end)]
    out: list[Run] = []
    current: list[Piece] = []
    i = 0
    while i < len(atoms):
        a_start, a_end, word = atoms[i]
        nxt = atoms[i + 1] if i + 1 < len(atoms) else None
        piece: Piece | None = None
        if word[0].isdigit():
            piece = Piece(a_start, a_end, word, typed=True)
        elif word in _UNITS:
            piece = Piece(a_start, a_end, _UNITS[word], typed=False)
        elif word in _TEENS:
            piece = Piece(a_start, a_end, _TEENS[word], typed=False)
        elif word in _TENS:
            unit = _UNITS.get(nxt[2], "0") if nxt is not None else "0"
            joined = nxt is not None and unit != "0" and text[a_end : nxt[0]] in _SINGLE
            piece = Piece(a_start, nxt[1] if joined and nxt else a_end, _TENS[word] + unit, False)
            i += 1 if joined else 0
        elif word in _HOMOPHONES and _among_digits(current, nxt):
            piece = Piece(a_start, a_end, _HOMOPHONES[word], typed=False)
        elif word in _REPEATS and nxt is not None and _repeatable(nxt[2]):
            digit = _UNITS.get(nxt[2], nxt[2])
            piece = Piece(a_start, nxt[1], digit * _REPEATS[word], typed=False)
            i += 1
        if piece is None:
            # A filler keeps the run going; a lone "double" ends it.
            if word not in _FILLERS and current:
                out.append(Run(tuple(current)))
                current = []
        else:
            if (
                current
                and current[-1].typed
                and piece.typed
                and not _joined(text, current[-1], piece)
            ):
                out.append(Run(tuple(current)))
                current = []
            current.append(piece)
        i += 1
    if current:
        out.append(Run(tuple(current)))
    # "Oh" and "o" read as zero only beside other number words: "oh, right" is no number.
    return [r for r in out if len(r.pieces) > 1 or not _zero_letter(text, r.pieces[0])]


def _joined(text: str, before: Piece, after: Piece) -> bool:
    """Whether two typed groups read as one number: a card's single space or dash, or
    the comma speech-to-text puts between single digits."""
    sep = text[before.end : after.start]
    if sep in _SINGLE:
        return True
    return len(before.digits) == 1 == len(after.digits) and bool(_SPOKEN_COMMA.fullmatch(sep))


def _among_digits(current: list[Piece], nxt: tuple[int, int, str] | None) -> bool:
    """Whether a homophone stands beside single digits, as it does in a string of them."""
    after = nxt is not None and (nxt[2] in _UNITS or (len(nxt[2]) == 1 and nxt[2].isdigit()))
    return after or (bool(current) and len(current[-1].digits) == 1)


def _repeatable(word: str) -> bool:
    return word in _UNITS or (len(word) == 1 and word.isdigit())


def _zero_letter(text: str, piece: Piece) -> bool:
    return text[piece.start : piece.end].lower() in _ZERO_LETTERS

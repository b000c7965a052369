"""Spoken numbers as digits: "fifty one twenty" and "five one two zero" become ``5120``.

Speech-to-text writes numbers as words as often as digits; every slot pattern
sees digits only. In a time context ("at eleven thirty") a run becomes ``11:30``.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

_UNITS: Final = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4,
    "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
}  # fmt: skip
_TEENS: Final = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS: Final = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
_ZERO_LETTERS: Final = frozenset({"oh", "o"})
_SCALES: Final = {"hundred": 100, "thousand": 1000}
_TIME_BEFORE: Final = frozenset({"at", "around", "about", "by", "until", "till", "from"})
_TIME_AFTER: Final = frozenset({"am", "pm", "a.m.", "p.m.", "a.m", "p.m", "o'clock", "oclock"})

_PUNCTUATION: Final = ".,!?;:()\"'"


def clean(word: str) -> str:
    return word.strip(_PUNCTUATION)


def _spoken_value(words: list[str]) -> tuple[list[int], list[bool]] | int:
    """Digit groups of a spoken run (and whether each is a two-digit group), or a cardinal."""
    if any(w in _SCALES for w in words):
        total = current = 0
        for w in words:
            if w in _SCALES:
                current = max(current, 1) * _SCALES[w]
                if _SCALES[w] == 1000:
                    total, current = total + current, 0
            else:
                current += _UNITS.get(w, 0) + _TEENS.get(w, 0) + _TENS.get(w, 0)
        return total + current
    groups: list[int] = []
    wide: list[bool] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w in _TENS:
            value = _TENS[w]
            if i + 1 < len(words) and _UNITS.get(words[i + 1], 0) > 0:
                value += _UNITS[words[i + 1]]
                i += 1
            groups.append(value)
            wide.append(True)
        elif w in _TEENS:
            groups.append(_TEENS[w])
            wide.append(True)
        else:
            groups.append(_UNITS.get(w, 0))
            wide.append(False)
        i += 1
    return groups, wide


def _spoken_time(groups: list[int], wide: list[bool]) -> str | None:
    """``H:MM`` for "eleven", "eleven thirty" or "eleven oh five"; None otherwise."""
    if not groups or groups[0] > 23:
        return None
    if len(groups) == 1:
        return f"{groups[0]}:00"
    if len(groups) == 2 and wide[1] and 10 <= groups[1] <= 59:
        return f"{groups[0]}:{groups[1]:02d}"
    if len(groups) == 3 and groups[1] == 0 and not wide[2]:
        return f"{groups[0]}:0{groups[2]}"
    return None


def _is_number_word(word: str, run: list[str]) -> bool:
    if word in _UNITS or word in _TEENS or word in _TENS or word in _SCALES:
        return True
    if word in _ZERO_LETTERS:  # "ten oh five", but not "oh no"
        return bool(run)
    return word == "and" and any(w in _SCALES for w in run)


def _number_run(words: list[str], start: int) -> tuple[list[str], int]:
    """The number words from ``start`` (punctuation ends a run), and where the run ends."""
    run: list[str] = []
    end = start
    while end < len(words):
        word = words[end]
        core = clean(word)
        if not _is_number_word(core, run):
            break
        run.append(core)
        end += 1
        if word.rstrip(_PUNCTUATION) != word:
            break
    while run and run[-1] == "and":
        run.pop()
        end -= 1
    return run, end


def spoken_numbers_to_digits(text: str) -> str:
    """``text`` with runs of number words replaced by digits, or by ``H:MM`` in a time context."""
    words = text.split()
    out: list[str] = []
    i = 0
    while i < len(words):
        run, end = _number_run(words, i)
        if not run:
            out.append(words[i])
            i += 1
            continue
        last = words[end - 1]
        trail = last[len(last.rstrip(_PUNCTUATION)) :]
        value = _spoken_value(run)
        if isinstance(value, int):
            out.append(f"{value}{trail}")
        else:
            before = clean(words[i - 1]) if i > 0 else ""
            after = clean(words[end]) if end < len(words) else ""
            clock = None
            if before in _TIME_BEFORE or after in _TIME_AFTER or after == "in":
                clock = _spoken_time(*value)
            out.append((clock or "".join(str(g) for g in value[0])) + trail)
        i = end
    joined = " ".join(out)
    # Speech-to-text sometimes writes digits one by one: "9 4 1 0 3".
    return re.sub(r"\b\d(?: \d\b){2,}", lambda m: m.group(0).replace(" ", ""), joined)


def normalise(text: str) -> str:
    """Case-folded, NFKC, straight apostrophes, single spaces, spoken numbers as digits."""
    folded = unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'")
    return spoken_numbers_to_digits(" ".join(folded.split()))

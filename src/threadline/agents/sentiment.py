"""A small lexicon-based sentiment score in [-1, 1]; negative is unhappy.

Words and phrases carry weights; an intensifier ("really", "absolutely")
strengthens the next word, a negator ("not", "never") flips and softens the
next two, shouting (an all-caps word) strengthens it, and exclamation marks
strengthen the whole. The sum is squashed into (-1, 1) so one strong word
scores about -0.7 and a mild one stays near zero.
"""

from __future__ import annotations

import math
import re
from typing import Final

LEXICON: Final = {
    # unhappy
    "unacceptable": -3.0, "terrible": -3.0, "awful": -3.0, "horrible": -3.0, "worst": -3.0,
    "disgusting": -3.0, "disgrace": -3.0, "pathetic": -3.0, "appalling": -3.0, "outrageous": -3.0,
    "furious": -3.0, "hate": -3.0, "incompetent": -3.0, "scam": -3.0, "liars": -3.0,
    "ridiculous": -2.5, "angry": -2.5, "useless": -2.5, "garbage": -2.5, "rude": -2.5,
    "shocking": -2.5, "stupid": -2.5, "rubbish": -2.0, "disappointed": -2.0, "unhappy": -2.0,
    "frustrated": -2.0, "frustrating": -2.0, "annoyed": -2.0, "upset": -2.0, "damn": -2.0,
    "waste": -2.0, "bad": -1.5, "poor": -1.5, "wrong": -1.0, "late": -0.5, "lost": -0.5,
    "broken": -0.5,
    # happy
    "thanks": 1.5, "thank": 1.5, "good": 1.5, "nice": 1.5, "great": 2.0, "perfect": 2.0,
    "helpful": 2.0, "appreciate": 2.0, "happy": 2.0, "awesome": 2.5, "excellent": 2.5,
    "brilliant": 2.5, "wonderful": 2.5, "amazing": 2.5, "love": 2.5,
}  # fmt: skip
PHRASES: Final = {
    "fed up": -2.5, "sick of": -2.5, "never again": -2.5, "waste of time": -1.0,
    "a joke": -2.0, "had enough": -2.5, "no use": -2.0,
}  # fmt: skip
INTENSIFIERS: Final = {
    "very": 1.5, "really": 1.4, "so": 1.3, "extremely": 1.8, "absolutely": 1.6,
    "totally": 1.5, "completely": 1.5, "utterly": 1.8, "truly": 1.4,
}  # fmt: skip
NEGATORS: Final = frozenset({
    "not", "no", "never", "dont", "isnt", "wasnt", "cant", "cannot", "wont", "didnt", "nothing",
    "arent", "werent", "hardly",
})  # fmt: skip
#: How far a negator reaches, and how much of the flipped weight survives.
NEGATION_REACH: Final = 2
NEGATION_FACTOR: Final = -0.5
#: Larger means a given sum squashes to a milder score.
SQUASH: Final = 8.0

_WORD: Final = re.compile(r"[A-Za-z']+")


def sentiment(text: str) -> float:
    """The sentiment of ``text`` in [-1, 1]; 0 when it carries none."""
    raw = _WORD.findall(text.replace("\u2019", "'"))
    words = [w.lower().replace("'", "") for w in raw]
    joined = " " + " ".join(words) + " "
    total = sum(weight * joined.count(f" {phrase} ") for phrase, weight in PHRASES.items())
    boost = 1.0
    negated = 0
    for word, original in zip(words, raw, strict=True):
        weight = LEXICON.get(word, 0.0)
        if weight:
            if original.isupper() and len(original) > 2:
                weight *= 1.5
            weight *= boost
            if negated:
                weight *= NEGATION_FACTOR
            total += weight
        boost = INTENSIFIERS.get(word, 1.0)
        negated = NEGATION_REACH if word in NEGATORS else max(0, negated - 1)
    total *= 1.0 + 0.1 * min(text.count("!"), 4)
    return max(-1.0, min(1.0, total / math.sqrt(total * total + SQUASH)))

"""An embedded intent classifier: TF-IDF features and cosine similarity to known phrases.

Two feature spaces are built from the example phrases: words (unigrams and
bigrams) and character n-grams of each word (3–5 characters, padded), which
keep misspelt or mis-transcribed words close to their intended form. A text is
scored against each intent by its nearest example and the intent's centroid.

The confidence is the intent's share of a softmax over intent scores, scaled
by how close the text comes to anything the classifier knows, so a text far
from every example (another domain, or noise) gets a low confidence whatever
its nearest intent is. Features the examples never use still count in a
text's norm, which is what keeps unknown words from looking familiar.

Everything is deterministic: the same examples and text give the same answer.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from typing import Final

import numpy as np
import numpy.typing as npt

from threadline.business import Business

MODEL_ID: Final = "tfidf-intents-v1"
#: The intent of a text unlike any example (noise, another domain, or no words at all).
UNKNOWN: Final = "unknown"

Vector = dict[str, float]
Analyzer = Callable[[list[str]], Counter[str]]

_WORD: Final = re.compile(r"[a-z0-9']+")


def tokenize(text: str) -> list[str]:
    """Lower-case words without apostrophes; every number becomes ``#``."""
    folded = unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'")
    out: list[str] = []
    for word in _WORD.findall(folded):
        word = word.replace("'", "")
        if word:
            out.append("#" if word.isdigit() else word)
    return out


def word_ngrams(tokens: list[str]) -> Counter[str]:
    """Unigrams and bigrams."""
    grams = Counter(tokens)
    grams.update(f"{a} {b}" for a, b in pairwise(tokens))
    return grams


def char_ngrams(tokens: list[str], sizes: tuple[int, ...] = (3, 4, 5)) -> Counter[str]:
    """Character n-grams within each space-padded word."""
    grams: Counter[str] = Counter()
    for token in tokens:
        grams.update(_word_grams(token, sizes))
    return grams


@lru_cache(maxsize=8192)
def _word_grams(token: str, sizes: tuple[int, ...]) -> tuple[str, ...]:
    # Words recur across turns; their n-grams are worth remembering.
    padded = f" {token} "
    return tuple(padded[i : i + n] for n in sizes for i in range(len(padded) - n + 1))


def _normalised(weights: Vector) -> Vector:
    norm = math.sqrt(sum(w * w for w in weights.values()))
    return {f: w / norm for f, w in weights.items()} if norm else {}


class _Postings:
    """An inverted index of every row's features, compact enough to stay in cache.

    Each feature of each space is a line; a line's postings are the rows that have
    the feature and its weight there (compressed sparse rows: ``starts`` into
    ``rows`` and ``values``). A query gathers its features' postings and sums
    them per row in one ``bincount``.
    """

    def __init__(self, rows: list[tuple[Vector, ...]], spaces: int) -> None:
        #: Per space: each feature's line.
        self.lines: tuple[dict[str, int], ...]
        postings: list[list[tuple[int, float]]] = []
        lines: list[dict[str, int]] = []
        for block in range(spaces):
            index: dict[str, int] = {}
            for row, vectors in enumerate(rows):
                for feature, value in vectors[block].items():
                    line = index.get(feature)
                    if line is None:
                        line = index[feature] = len(postings)
                        postings.append([])
                    postings[line].append((row, value))
            lines.append(index)
        self.lines = tuple(lines)
        self.width = len(rows)
        sizes = [len(p) for p in postings]
        self.starts = np.concatenate(([0], np.cumsum(sizes))).astype(np.intp)
        self.rows = np.array([row for p in postings for row, _ in p], dtype=np.intp)
        self.values = np.array([value for p in postings for _, value in p], dtype=np.float64)

    def similarities(self, lines: list[int], weights: list[float]) -> npt.NDArray[np.float64]:
        """Per row, the sum over ``lines`` of the line's weight there times the query's."""
        if not lines:
            return np.zeros(self.width)
        picked = np.array(lines, dtype=np.intp)
        first = self.starts[picked]
        counts = self.starts[picked + 1] - first
        # The positions of every picked line's postings, in one array.
        shift = np.repeat(first - (np.cumsum(counts) - counts), counts)
        at = shift + np.arange(shift.size)
        values = self.values[at] * np.repeat(np.array(weights), counts)
        sims = np.bincount(self.rows[at], weights=values, minlength=self.width)
        return sims.astype(np.float64, copy=False)


class TfidfSpace:
    """One feature space: an analyzer and the inverse document frequencies of its features."""

    def __init__(self, analyzer: Analyzer, documents: Iterable[list[str]]) -> None:
        self.analyzer = analyzer
        counts = [analyzer(doc) for doc in documents]
        df: Counter[str] = Counter()
        for doc in counts:
            df.update(doc.keys())
        n = len(counts)
        self.idf: dict[str, float] = {f: math.log((1 + n) / (1 + c)) + 1 for f, c in df.items()}
        # A feature no example has is as rare as a feature can be.
        self.unseen_idf = math.log(1 + n) + 1

    def vector(self, tokens: list[str]) -> Vector:
        """The unit TF-IDF vector (sublinear term frequency) of ``tokens``."""
        idf, unseen = self.idf, self.unseen_idf
        return _normalised(
            {f: (1 + math.log(c)) * idf.get(f, unseen) for f, c in self.analyzer(tokens).items()}
        )

    def query(
        self, tokens: list[str], known: Mapping[str, tuple[int, float]], scale: float,
        lines: list[int], weights: list[float],
    ) -> None:  # fmt: skip
        """Append the lines and weights of ``tokens``' known features to ``lines`` and
        ``weights``: :meth:`vector`'s weights times ``scale``, without building it.

        ``known`` maps a feature to its postings line and idf; features it lacks
        still count in the norm, as in :meth:`vector`.
        """
        unseen = self.unseen_idf
        start = len(weights)
        norm = 0.0
        for feature, count in self.analyzer(tokens).items():
            hit = known.get(feature)
            if hit is None:
                weight = (1 + math.log(count)) * unseen
            else:
                weight = (1 + math.log(count)) * hit[1]
                lines.append(hit[0])
                weights.append(weight)
            norm += weight * weight
        if norm:
            factor = scale / math.sqrt(norm)
            for i in range(start, len(weights)):
                weights[i] *= factor


@dataclass(frozen=True, slots=True)
class Prediction:
    """The best intent, its confidence in [0, 1], and the other candidates, best first."""

    intent: str
    confidence: float
    alternatives: Mapping[str, float]
    similarity: float


@dataclass(frozen=True, slots=True)
class Calibration:
    """Knobs that turn similarities into scores and scores into confidences."""

    #: Weight of the word space; the character space gets the rest.
    word_weight: float = 0.4
    #: Weight of the nearest example in an intent's score; the centroid gets the rest.
    nearest_weight: float = 0.4
    #: Softmax temperature over intent scores.
    temperature: float = 0.04
    #: A top score at or below this is unfamiliar text (confidence 0) …
    floor: float = 0.14
    #: … and at or above this fully familiar (confidence is the softmax share).
    ceiling: float = 0.3
    #: Alternatives below this confidence are left out.
    min_alternative: float = 0.01
    #: How many alternatives to report.
    max_alternatives: int = 3


class IntentClassifier:
    """Classifies text into the intents of its examples; see the module docstring."""

    def __init__(
        self,
        examples: Mapping[str, Iterable[str]],
        calibration: Calibration = Calibration(),
        model_id: str = MODEL_ID,
    ) -> None:
        self.model_id = model_id
        self.calibration = calibration
        labelled = [(i, tokenize(text)) for i in sorted(examples) for text in examples[i]]
        if not labelled:
            raise ValueError("an intent classifier needs at least one example")
        documents = [tokens for _, tokens in labelled]
        self.spaces = (TfidfSpace(word_ngrams, documents), TfidfSpace(char_ngrams, documents))
        self.weights = (calibration.word_weight, 1.0 - calibration.word_weight)
        self.intents: tuple[str, ...] = tuple(sorted(examples))
        examples_of: dict[str, list[tuple[Vector, ...]]] = {i: [] for i in self.intents}
        for intent, tokens in labelled:
            examples_of[intent].append(self._vectors(tokens))
        # Rows: every example, then every intent's centroid; one inverted index per space.
        rows = [v for i in self.intents for v in examples_of[i]]
        self._spans: list[tuple[str, int, int]] = []
        start = 0
        for intent in self.intents:
            self._spans.append((intent, start, start + len(examples_of[intent])))
            start += len(examples_of[intent])
        rows += [self._centroid(examples_of[i]) for i in self.intents]
        self._rows = len(rows)
        self._postings = _Postings(rows, len(self.spaces))
        # Per space: each feature's postings line and idf, one look-up per query feature.
        self._known = tuple(
            {f: (line, space.idf[f]) for f, line in lines.items()}
            for space, lines in zip(self.spaces, self._postings.lines, strict=True)
        )
        self._starts = np.array([start for _, start, _ in self._spans], dtype=np.intp)

    def _vectors(self, tokens: list[str]) -> tuple[Vector, ...]:
        return tuple(space.vector(tokens) for space in self.spaces)

    def _centroid(self, vectors: list[tuple[Vector, ...]]) -> tuple[Vector, ...]:
        out: list[Vector] = []
        for block in range(len(self.spaces)):
            total: Counter[str] = Counter()
            for vector in vectors:
                total.update(vector[block])
            out.append(_normalised(dict(total)))
        return tuple(out)

    def _similarities(self, tokens: list[str]) -> npt.NDArray[np.float64]:
        """Cosine similarity of ``tokens`` to every row, weighted across the spaces."""
        lines: list[int] = []
        weights: list[float] = []
        for space, known, weight in zip(self.spaces, self._known, self.weights, strict=True):
            space.query(tokens, known, weight, lines, weights)
        return self._postings.similarities(lines, weights)

    def scores(self, text: str) -> dict[str, float]:
        """Each intent's score for ``text``: similarity to its nearest example and centroid."""
        sims = self._similarities(tokenize(text))
        nearest = self.calibration.nearest_weight
        centroid = self._rows - len(self.intents)
        best = np.maximum.reduceat(sims[:centroid], self._starts)
        scores = nearest * best + (1 - nearest) * sims[centroid:]
        return dict(zip(self.intents, scores.tolist(), strict=True))

    def classify(self, text: str) -> Prediction:
        """The best intent for ``text`` with a confidence and alternatives."""
        scores = self.scores(text)
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
        top_intent, top = ranked[0]
        cal = self.calibration
        familiar = min(1.0, max(0.0, (top - cal.floor) / (cal.ceiling - cal.floor)))
        if familiar == 0.0:
            return Prediction(UNKNOWN, 0.0, {}, round(top, 4))
        temperature = cal.temperature
        exps = [math.exp((s - top) / temperature) for _, s in ranked]
        total = sum(exps)
        # Only the best and the alternatives reported need their confidence worked out.
        shown = [
            (i, round(e / total * familiar, 4))
            for (i, _), e in zip(ranked[: 1 + cal.max_alternatives], exps, strict=False)
        ]
        alternatives = {i: c for i, c in shown[1:] if c >= cal.min_alternative}
        return Prediction(top_intent, shown[0][1], alternatives, round(top, 4))


#: The intent of a question a knowledge entry answers: the prefix and the entry's id.
KNOWLEDGE_PREFIX: Final = "kb:"


def examples_of(business: Business) -> dict[str, tuple[str, ...]]:
    """The pack's intents' example phrases, and its knowledge entries' questions."""
    out = {name: spec.examples for name, spec in business.pack.intents.items()}
    out.update({KNOWLEDGE_PREFIX + k.id: k.questions for k in business.pack.knowledge})
    return out


@lru_cache(maxsize=8)
def _trained(examples: tuple[tuple[str, tuple[str, ...]], ...]) -> IntentClassifier:
    return IntentClassifier(dict(examples))


def classifier_for(business: Business) -> IntentClassifier:
    """The classifier of ``business``'s pack (one per set of examples, built once)."""
    return _trained(tuple(sorted(examples_of(business).items())))

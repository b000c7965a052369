"""Personal-data detection: latency on 500-character messages and accuracy on the corpus.

``python -m bench.pii [--runs 5]`` times ``threadline.privacy.find`` on every
message of the labelled corpus (``tests/data/pii_corpus.jsonl``), each padded
with customer text to 500 characters, and reports p50, p95 and p99 per message
(the median over runs, and the min–max). In the same run it times Presidio's
pattern recognisers on the same messages (CreditCardRecognizer,
EmailRecognizer, PhoneRecognizer, UsSsnRecognizer and UkNinoRecognizer, each
called directly with no NLP artefacts, so no spaCy model is needed), and scores
both on the corpus: recall and precision per kind. A labelled span is found
when a finding of its kind covers it; a finding is right when it overlaps a
label of its kind. Ours is scored twice: ``find`` message by message, as
Presidio is, and the ``Redactor`` across each item's messages, which also
catches a card split between messages. Presidio's findings count at any score
(the AnalyzerEngine's default threshold is 0).

Needs the ``bench`` extra (``presidio-analyzer``). Presidio's e-mail check
reads the public-suffix list; it is pointed at the copy tldextract ships, so
the run makes no network request.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import os
import platform
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.pii_corpus import CHAT_PADDING, OUT, fill
from threadline.privacy import KINDS, Carry, Finding, Redactor, find

SIZE = 500
PRESIDIO_KINDS = {
    "CREDIT_CARD": "card",
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "US_SSN": "national_id",
    "UK_NINO": "national_id",
}
Span = tuple[str, int, int]
Detect = Callable[[str], list[Span]]


def load(path: Path = OUT) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def padded(messages: Sequence[str], size: int = SIZE) -> list[str]:
    """Each message followed by customer text up to exactly ``size`` characters."""
    r = random.Random(500)
    out = []
    for message in messages:
        text = message
        while len(text) < size:
            text += " " + fill(r, r.choice(CHAT_PADDING))
        out.append(text[:size])
    return out


def ours(text: str) -> list[Span]:
    return [(f.kind, f.start, f.end) for f in find(text)]


def presidio() -> tuple[Detect, str]:
    """Presidio's pattern recognisers as one detector, and its version."""
    import tldextract
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        PhoneRecognizer,
        UkNinoRecognizer,
        UsSsnRecognizer,
    )
    from presidio_analyzer.predefined_recognizers.generic import email_recognizer

    offline = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    email_recognizer.tldextract = type("Offline", (), {"extract": staticmethod(offline)})
    recognizers = [
        CreditCardRecognizer(),
        EmailRecognizer(),
        PhoneRecognizer(),
        UsSsnRecognizer(),
        UkNinoRecognizer(),
    ]

    def detect(text: str) -> list[Span]:
        spans: set[Span] = set()
        for recognizer in recognizers:
            entities = recognizer.supported_entities
            for result in recognizer.analyze(text, entities=entities, nlp_artifacts=None):
                kind = PRESIDIO_KINDS.get(result.entity_type)
                if kind is not None:
                    spans.add((kind, result.start, result.end))
        return sorted(spans, key=lambda s: s[1])

    return detect, importlib.metadata.version("presidio-analyzer")


@dataclass
class Timing:
    p50: list[float]
    p95: list[float]
    p99: list[float]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(detect: Detect, texts: list[str], runs: int) -> Timing:
    """Per-message latency in microseconds, one list of percentiles per run."""
    for text in texts[:200]:  # warm up caches and lazy imports
        detect(text)
    timing = Timing([], [], [])
    for _ in range(runs):
        gc.collect()
        took: list[float] = []
        for text in texts:
            start = time.perf_counter_ns()
            detect(text)
            took.append((time.perf_counter_ns() - start) / 1000)
        timing.p50.append(percentile(took, 0.50))
        timing.p95.append(percentile(took, 0.95))
        timing.p99.append(percentile(took, 0.99))
    return timing


@dataclass
class Score:
    found: Counter[str]
    labelled: Counter[str]
    right: Counter[str]
    reported: Counter[str]

    def recall(self, kind: str) -> float:
        return self.found[kind] / self.labelled[kind] if self.labelled[kind] else float("nan")

    def precision(self, kind: str) -> float:
        return self.right[kind] / self.reported[kind] if self.reported[kind] else float("nan")


def score(corpus: list[dict[str, Any]], findings: list[list[list[Span]]]) -> Score:
    """Recall and precision per kind of ``findings[item][message]`` against the labels."""
    s = Score(Counter(), Counter(), Counter(), Counter())
    for item, per_message in zip(corpus, findings, strict=True):
        for index, spans in enumerate(per_message):
            labels = [e for e in item["entities"] if e["message"] == index]
            for e in labels:
                found = any(
                    k == e["kind"] and a <= e["start"] and e["end"] <= b for k, a, b in spans
                )
                for row in {e["kind"], _row(item, e)}:
                    s.labelled[row] += 1
                    s.found[row] += found
            for k, a, b in spans:
                s.reported[k] += 1
                s.right[k] += any(
                    k == e["kind"] and a < e["end"] and e["start"] < b for e in labels
                )
    return s


def _row(item: dict[str, Any], entity: dict[str, Any]) -> str:
    """The table row of a label beside its kind's: cards typed, said, or split."""
    if entity["kind"] != "card":
        return entity["kind"]
    if len(item["messages"]) > 1:
        return "card, split"
    return "card, said" if item["channel"] == "voice" else "card, typed"


def with_carry(messages: list[str], redactor: Redactor) -> list[list[Span]]:
    carry: Carry | None = None
    out: list[list[Span]] = []
    for message in messages:
        redacted = redactor.redact(message, carry=carry)
        carry = redacted.carry
        out.append([_span(f) for f in redacted.findings])
    return out


def _span(f: Finding) -> Span:
    return (f.kind, f.start, f.end)


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({min(values):.0f}–{max(values):.0f})"


def _ratio(value: float) -> str:
    return "—" if value != value else f"{value:.3f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Personal-data detection beside Presidio.")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)

    corpus = load()
    messages = [m for item in corpus for m in item["messages"]]
    texts = padded(messages)
    theirs, version = presidio()

    timings = {"threadline find": timed(ours, texts, args.runs)}
    timings[f"Presidio {version} patterns"] = timed(theirs, texts, args.runs)

    redactor = Redactor(kinds=KINDS)
    scores = {
        "ours, find": score(corpus, [[ours(m) for m in item["messages"]] for item in corpus]),
        "ours, with carry": score(
            corpus, [with_carry(item["messages"], redactor) for item in corpus]
        ),
        "Presidio": score(corpus, [[theirs(m) for m in item["messages"]] for item in corpus]),
    }

    cores = os.cpu_count()
    load_average = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"# Personal-data detection ({platform.python_version()}, {cores} cores)\n")
    print(f"Load average after the run (1 / 5 / 15 min): {load_average}.\n")
    print(f"{len(corpus)} items, {len(texts)} messages padded to {SIZE} characters, "
          f"{args.runs} runs; µs per message, median over runs (min–max).\n")  # fmt: skip
    print("| detector | p50 µs | p95 µs | p99 µs |")
    print("| --- | --- | --- | --- |")
    for name, t in timings.items():
        print(f"| {name} | {_cell(t.p50)} | {_cell(t.p95)} | {_cell(t.p99)} |")
    print(
        "\nRecall / precision per kind on the corpus (unpadded messages). The card rows split"
        " the cards by how they came: typed in one message, said on a call, or split across"
        " messages (recall only; their findings count under ``card``).\n"
    )
    print("| kind | labelled | " + " | ".join(scores) + " |")
    print("| --- | --- |" + " --- |" * len(scores))
    first = next(iter(scores.values()))
    for kind in ["card, typed", "card, said", "card, split", *KINDS]:
        cells = [f"{_ratio(s.recall(kind))} / {_ratio(s.precision(kind))}" for s in scores.values()]
        if kind.startswith("card, "):  # precision is per finding, and a finding has one kind
            cells = [f"{_ratio(s.recall(kind))}" for s in scores.values()]
        print(f"| {kind} | {first.labelled[kind]} | " + " | ".join(cells) + " |")
    overall = []
    for s in scores.values():
        right, reported = sum(s.right.values()), sum(s.reported.values())
        overall.append(f"precision {_ratio(right / reported if reported else float('nan'))}")
    labelled = sum(first.labelled[kind] for kind in KINDS)
    print(f"| all | {labelled} | " + " | ".join(overall) + " |")


if __name__ == "__main__":
    main()

"""The suite's figures, from its scenario runs: pure arithmetic.

* ``task_success``: runs in which every expectation of every turn, and the
  outcome, were met, over all runs.
* ``pass_k``: scenarios that passed in every one of the k runs, over scenarios
  (τ-bench's pass^k; :func:`pass_hat` gives pass^j for every j up to k, from
  c successes of n runs as C(c, j) / C(n, j), averaged over scenarios).
* ``containment``: runs expected to stay with the agent that ended without a
  handoff, over runs expected to stay. ``false_escalations`` counts the others.
* ``correct_escalation``: runs expected to go to a person that were handed
  off, to the queue expected, over runs expected to go.
* ``tool_accuracy``: expected tool calls made with the expected arguments, over
  expected calls; ``unexpected_tool_calls`` counts the calls of turns that must
  make none, and the calls of a listed tool beyond those listed.
* ``guardrail_hits``, ``fallbacks``, ``approvals``: events of those kinds the
  turns recorded; ``must_not_say_violations``: replies that said what they
  must not, one per pattern.
* ``turn_latency_p50_ms`` / ``_p95_ms`` / ``_max_ms``: from the customer's turn
  being appended to the agent's reply being delivered, over answered turns.

A rate with nothing to measure (no scenario expects an escalation) is None.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Final

from threadline.evaluation.runner import ScenarioRun

#: Figures where more is better (a gate's ``min``) and where less is (its ``max``).
RATES: Final = ("task_success", "pass_k", "containment", "correct_escalation", "tool_accuracy")
COUNTS: Final = (
    "false_escalations", "unexpected_tool_calls", "must_not_say_violations", "guardrail_hits",
    "fallbacks", "approvals", "unanswered_turns",
    "turn_latency_p50_ms", "turn_latency_p95_ms", "turn_latency_max_ms",
)  # fmt: skip
METRICS: Final = RATES + COUNTS

Figures = dict[str, float | int | None]


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def percentile(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile of ``values`` (None when there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def by_scenario(results: Iterable[ScenarioRun]) -> dict[str, list[ScenarioRun]]:
    """The runs of each scenario, in the suite's order."""
    grouped: defaultdict[str, list[ScenarioRun]] = defaultdict(list)
    for result in results:
        grouped[result.scenario.id].append(result)
    return dict(grouped)


def pass_hat(results: Iterable[ScenarioRun], k: int) -> dict[int, float | None]:
    """pass^j for j = 1..k: the chance that j runs of a scenario drawn at random all
    pass, estimated from each scenario's n runs and c successes as C(c, j) / C(n, j)."""
    grouped = by_scenario(results)
    out: dict[int, float | None] = {}
    for j in range(1, k + 1):
        shares = [math.comb(sum(r.passed for r in runs), j) / math.comb(len(runs), j)
                  for runs in grouped.values() if len(runs) >= j]  # fmt: skip
        out[j] = sum(shares) / len(shares) if shares else None
    return out


def fractions(results: Sequence[ScenarioRun]) -> dict[str, tuple[int, int]]:
    """The (part, whole) behind each rate of :data:`RATES`."""
    stay = [r for r in results if r.scenario.outcome == "contained"]
    go = [r for r in results if r.scenario.outcome == "escalated"]
    right = [r for r in go if r.escalated and r.scenario.expected_queue in (None, r.queue)]
    turns = [t for r in results for t in r.turns]
    grouped = by_scenario(results)
    return {
        "task_success": (sum(r.passed for r in results), len(results)),
        "pass_k": (sum(all(r.passed for r in runs) for runs in grouped.values()), len(grouped)),
        "containment": (sum(not r.escalated for r in stay), len(stay)),
        "correct_escalation": (len(right), len(go)),
        "tool_accuracy": (
            sum(t.tools_matched for t in turns),
            sum(t.tools_expected for t in turns),
        ),
    }


def figures(results: Sequence[ScenarioRun]) -> Figures:
    """Every metric of :data:`METRICS` over ``results``."""
    stay = [r for r in results if r.scenario.outcome == "contained"]
    turns = [t for r in results for t in r.turns]
    latencies = [t.latency_ms for t in turns if t.latency_ms is not None]
    p50, p95, top = (percentile(latencies, p) for p in (50, 95, 100))
    rates: Figures = {name: ratio(*parts) for name, parts in fractions(results).items()}
    return {
        **rates,
        "false_escalations": sum(r.escalated for r in stay),
        "unexpected_tool_calls": sum(t.tools_unexpected for t in turns),
        "must_not_say_violations": sum(t.leaks for t in turns),
        "guardrail_hits": sum(len(t.guardrails) for t in turns),
        "fallbacks": sum(t.fallbacks for t in turns),
        "approvals": sum(len(t.approvals) for t in turns),
        "unanswered_turns": sum(t.reply is None for t in turns),
        "turn_latency_p50_ms": _ms(p50),
        "turn_latency_p95_ms": _ms(p95),
        "turn_latency_max_ms": _ms(top),
    }


def _ms(value: float | None) -> float | None:
    return round(value, 2) if value is not None else None


def by_tag(results: Sequence[ScenarioRun]) -> dict[str, dict[str, float | int | None]]:
    """For each tag: its scenarios, runs, the runs that passed, task success and pass^k."""
    tagged: defaultdict[str, list[ScenarioRun]] = defaultdict(list)
    for result in results:
        for tag in result.scenario.tags:
            tagged[tag].append(result)
    out = {}
    for tag in sorted(tagged):
        runs = tagged[tag]
        grouped = by_scenario(runs)
        passed = sum(r.passed for r in runs)
        out[tag] = {
            "scenarios": len(grouped),
            "runs": len(runs),
            "passed": passed,
            "task_success": ratio(passed, len(runs)),
            "pass_k": ratio(sum(all(r.passed for r in g) for g in grouped.values()), len(grouped)),
        }
    return out

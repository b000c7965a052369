"""What an evaluation reports: its figures as a table, and as JSON for CI.

The table is drawn with ``rich`` when it is installed, as plain text otherwise.
Neither says what the customer or the agent said unless asked
(``transcripts``): a reply may hold a record of the business's systems.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

import orjson

from threadline.evaluation.checks import TurnResult
from threadline.evaluation.metrics import (
    RATES,
    Figures,
    by_scenario,
    by_tag,
    figures,
    fractions,
    pass_hat,
)
from threadline.evaluation.runner import Evaluation, ScenarioRun

#: Failing scenarios the table lists; the JSON has them all.
LISTED: Final = 25

_LABELS: Final = {
    "task_success": "task success",
    "pass_k": "pass^k (all k runs)",
    "containment": "containment",
    "correct_escalation": "correct escalation",
    "tool_accuracy": "tool-call accuracy",
    "false_escalations": "false escalations",
    "unexpected_tool_calls": "unexpected tool calls",
    "must_not_say_violations": "must-not-say violations",
    "guardrail_hits": "guardrail hits",
    "fallbacks": "fallbacks",
    "approvals": "approvals requested",
    "unanswered_turns": "unanswered turns",
    "turn_latency_p50_ms": "turn latency p50 (ms)",
    "turn_latency_p95_ms": "turn latency p95 (ms)",
    "turn_latency_max_ms": "turn latency max (ms)",
}


@dataclass(frozen=True, slots=True)
class Summary:
    """An evaluation's figures, by tag and pass^j, and what the gate made of them."""

    evaluation: Evaluation
    figures: Figures
    pass_hat: dict[int, float | None]
    tags: dict[str, dict[str, float | int | None]]
    breaches: tuple[str, ...] | None = None  # None: no gate

    @classmethod
    def of(cls, evaluation: Evaluation) -> Summary:
        results = evaluation.results
        return cls(evaluation, figures(results), pass_hat(results, evaluation.runs),
                   by_tag(results))  # fmt: skip


def shown(metric: str, value: float | int | None) -> str:
    if value is None:
        return "n/a"
    if metric in RATES:
        return f"{value:.1%}"
    return f"{value:g}" if isinstance(value, float) else str(value)


_UNITS: Final = {
    "task_success": "runs",
    "pass_k": "scenarios",
    "containment": "runs",
    "correct_escalation": "runs",
    "tool_accuracy": "calls",
}


def _counts(summary: Summary) -> dict[str, str]:
    """The fraction behind each rate, as ``part/whole unit``."""
    return {metric: f"{part}/{whole} {_UNITS[metric]}"
            for metric, (part, whole) in fractions(summary.evaluation.results).items()}  # fmt: skip


def failing(results: Sequence[ScenarioRun]) -> list[tuple[str, str, str]]:
    """(scenario, its failed runs, the first failure) of every scenario that failed a run."""
    out = []
    for scenario_id, runs in by_scenario(results).items():
        failed = [r for r in runs if not r.passed]
        if failed:
            out.append((scenario_id, f"{len(failed)}/{len(runs)}", failed[0].failures[0]))
    return out


def render(summary: Summary, out: TextIO) -> None:
    """Draw the summary on ``out``: with rich when installed, else as plain text."""
    if has_rich():
        _rich(summary, out)
    else:
        _plain(summary, out)


def has_rich() -> bool:
    """Whether ``rich`` (a dependency of ours only by way of others) is installed."""
    return importlib.util.find_spec("rich") is not None


def _title(summary: Summary) -> str:
    e = summary.evaluation
    scenarios = len(by_scenario(e.results))
    runs = f"{e.runs} run{'s' * (e.runs != 1)}"
    return f"{e.suite}: {scenarios} scenarios x {runs} against {e.agent} in {e.seconds:.1f} s"


def _rich(summary: Summary, out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, highlight=False)
    counts = _counts(summary)
    table = Table(title=_title(summary), title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("of", style="dim")
    for metric, value in summary.figures.items():
        table.add_row(_LABELS[metric], shown(metric, value), counts.get(metric, ""))
    for j, value in summary.pass_hat.items():
        table.add_row(f"pass^{j}", shown("pass_k", value), "")
    console.print(table)
    tags = Table(title="by tag", title_justify="left")
    for column in ("tag", "scenarios", "runs passed", "task success", "pass^k"):
        tags.add_column(column, justify="left" if column == "tag" else "right")
    for tag, row in summary.tags.items():
        tags.add_row(tag, str(row["scenarios"]), f"{row['passed']}/{row['runs']}",
                     shown("task_success", row["task_success"]),
                     shown("pass_k", row["pass_k"]))  # fmt: skip
    console.print(tags)
    failed = failing(summary.evaluation.results)
    if failed:
        listing = Table(title=f"failing scenarios ({len(failed)})", title_justify="left")
        for column in ("scenario", "runs failed", "first failure"):
            listing.add_column(column, overflow="fold")
        for scenario, runs, failure in failed[:LISTED]:
            listing.add_row(scenario, runs, failure)
        console.print(listing)
        if len(failed) > LISTED:
            console.print(f"... and {len(failed) - LISTED} more (the JSON report has them all)")
    _gate_lines(summary, lambda line: console.print(line, markup=False))


def _plain(summary: Summary, out: TextIO) -> None:
    counts = _counts(summary)
    print(_title(summary), file=out)
    for metric, value in summary.figures.items():
        print(f"  {_LABELS[metric]:<26} {shown(metric, value):>9}  {counts.get(metric, '')}",
              file=out)  # fmt: skip
    for j, value in summary.pass_hat.items():
        print(f"  {f'pass^{j}':<26} {shown('pass_k', value):>9}", file=out)
    print("by tag:", file=out)
    for tag, row in summary.tags.items():
        print(f"  {tag:<20} {row['passed']}/{row['runs']} runs passed, pass^k "
              f"{shown('pass_k', row['pass_k'])}", file=out)  # fmt: skip
    failed = failing(summary.evaluation.results)
    for scenario, runs, failure in failed[:LISTED]:
        print(f"  FAIL {scenario} ({runs} runs): {failure}", file=out)
    if len(failed) > LISTED:
        print(f"  ... and {len(failed) - LISTED} more (the JSON report has them all)", file=out)
    _gate_lines(summary, lambda line: print(line, file=out))


def _gate_lines(summary: Summary, say: Callable[[str], None]) -> None:
    if summary.breaches is None:
        return
    if summary.breaches:
        say(f"gate: {len(summary.breaches)} threshold{'s' * (len(summary.breaches) != 1)}"
            " breached")  # fmt: skip
    else:
        say("gate: every threshold met")


@contextmanager
def progress(total: int, enabled: bool = True) -> Iterator[Callable[[ScenarioRun], None]]:
    """A callback that advances a progress bar on stderr (rich's, when installed and
    stderr is a terminal); nothing is drawn otherwise."""
    if not (enabled and has_rich()):
        yield lambda result: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda result: None
        return
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[failed]} failed"), console=console,
                   transient=True)  # fmt: skip
    task = bar.add_task("evaluating", total=total, failed=0)
    failed = 0

    def done(result: ScenarioRun) -> None:
        nonlocal failed
        failed += not result.passed
        bar.update(task, advance=1, failed=failed, description=result.scenario.id[:32].ljust(32))

    with bar:
        yield done


# -- JSON -------------------------------------------------------------------------------------


def _turn(turn: TurnResult, transcripts: bool) -> dict[str, Any]:
    handoff = {"queue": turn.handoff[0], "reason": turn.handoff[1]} if turn.handoff else None
    out: dict[str, Any] = {
        "intent": turn.intent,
        "tools": [c.tool for c in turn.calls],
        "handoff": handoff,
        "approvals": list(turn.approvals),
        "guardrails": list(turn.guardrails),
        "latency_ms": round(turn.latency_ms, 2) if turn.latency_ms is not None else None,
        "failures": list(turn.failures),
    }
    if transcripts:
        out["said"] = turn.said
        out["reply"] = turn.reply
        out["tools"] = [{"name": c.tool, "arguments": dict(c.arguments)} for c in turn.calls]
    return out


def document(summary: Summary, transcripts: bool = False) -> dict[str, Any]:
    """The JSON report: figures, pass^j, tags, the gate, and every scenario's runs."""
    evaluation = summary.evaluation
    scenarios = []
    for scenario_id, runs in by_scenario(evaluation.results).items():
        scenario = runs[0].scenario
        scenarios.append({
            "id": scenario_id, "tags": list(scenario.tags), "channel": scenario.channel,
            "outcome": scenario.outcome, "queue": scenario.expected_queue,
            "passed_runs": sum(r.passed for r in runs),
            "runs": [{"run": r.run, "passed": r.passed, "queue": r.queue,
                      "failures": list(r.failures),
                      "turns": [_turn(t, transcripts) for t in r.turns]} for r in runs],
        })  # fmt: skip
    gate = None
    if summary.breaches is not None:
        gate = {"passed": not summary.breaches, "breaches": list(summary.breaches)}
    return {
        "suite": evaluation.suite,
        "agent": evaluation.agent,
        "options": sorted(evaluation.options),  # their names: a value may be a secret
        "runs": evaluation.runs,
        "seconds": round(evaluation.seconds, 3),
        "metrics": summary.figures,
        "pass_hat": {str(j): v for j, v in summary.pass_hat.items()},
        "tags": summary.tags,
        "gate": gate,
        "scenarios": scenarios,
    }


def write_json(path: Path, report: dict[str, Any]) -> None:
    """Write ``report`` to ``path`` whole or not at all (a temporary file renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n"
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

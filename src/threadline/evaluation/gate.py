"""Thresholds a suite's figures must meet (``threadline eval --gate FILE``).

The file is YAML with ``min`` (figures that must be at least this) and ``max``
(figures that must be at most this), each naming metrics of
:data:`~threadline.evaluation.metrics.METRICS`::

    min: {task_success: 0.9, pass_k: 0.85}
    max: {must_not_say_violations: 0, turn_latency_p95_ms: 250}

A metric the run has no figure for (no scenario expects an escalation) breaches
its threshold: a gate never passes by measuring nothing.
"""

from __future__ import annotations

from pathlib import Path

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from threadline.business.loader import Problem
from threadline.evaluation.metrics import METRICS, Figures
from threadline.evaluation.suite import SuiteError, dotted


class Thresholds(BaseModel):
    """The least and the most each gated figure may be."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: dict[str, float] = Field(default_factory=dict)
    max: dict[str, float] = Field(default_factory=dict)

    @field_validator("min", "max")
    @classmethod
    def _known(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(METRICS))
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not a metric (known: {', '.join(METRICS)})")
        return value


def load_thresholds(path: Path) -> Thresholds:
    """The thresholds in ``path``; SuiteError (one problem) when it cannot be read."""
    name = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SuiteError([Problem(name, 0, "", f"cannot read: {exc.strerror or exc}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        reason = getattr(exc, "problem", None) or "not valid YAML"
        raise SuiteError([Problem(name, line, "", f"not valid YAML: {reason}")]) from None
    if not isinstance(data, dict):
        raise SuiteError([Problem(name, 1, "", "must be a mapping with `min` and/or `max`")])
    try:
        return Thresholds.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            message = "is not a known key" if error["type"] == "extra_forbidden" else str(
                error["msg"]).removeprefix("Value error, ")  # fmt: skip
            problems.append(Problem(name, 0, dotted(tuple(error["loc"])), message))
        raise SuiteError(problems) from None


def breaches(figures: Figures, thresholds: Thresholds) -> list[str]:
    """One line for each figure beyond its threshold, in the order the file gives them."""
    out = []
    for metric, least in thresholds.min.items():
        value = figures.get(metric)
        if value is None:
            out.append(f"{metric}: nothing measured it (gate: at least {least:g})")
        elif value < least:
            out.append(f"{metric} is {_shown(value)}, under its threshold {least:g}")
    for metric, most in thresholds.max.items():
        value = figures.get(metric)
        if value is None:
            out.append(f"{metric}: nothing measured it (gate: at most {most:g})")
        elif value > most:
            out.append(f"{metric} is {_shown(value)}, over its threshold {most:g}")
    return out


def _shown(value: float | int) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)

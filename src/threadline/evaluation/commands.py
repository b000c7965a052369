"""``threadline eval SUITE``: run scripted conversations against an agent, offline.

It prints a table of the figures (:mod:`threadline.evaluation.metrics`), with a
progress bar on a terminal, and with ``--json FILE`` writes the report for CI.
``--gate FILE`` checks the figures against thresholds
(:mod:`threadline.evaluation.gate`): each breach is one line on stderr and the
exit status is 1. Bad input (a suite, pack or thresholds file that cannot be
read, an unknown agent) is one line on stderr and exit status 2, before any
conversation is played; nothing is written then.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

import structlog

from threadline.core.errors import ConfigurationError

if TYPE_CHECKING:  # the agents load numpy: not before the command line has set it up
    from threadline.business import Business
    from threadline.evaluation.gate import Thresholds
    from threadline.evaluation.suite import Suite
    from threadline.settings import Settings

BAD_INPUT: Final = 2
BREACHED: Final = 1


def add_eval_parser(commands: Any) -> None:
    """Add ``eval`` to the ``threadline`` command's subparsers."""
    run = commands.add_parser(
        "eval", help="run scripted conversations against an agent, offline, and score it"
    )
    run.add_argument("suite", type=Path, help="a suite file, or a folder of *.yaml suite files")
    run.add_argument("--business", type=Path, help="the business pack (THREADLINE_BUSINESS)")
    run.add_argument("--agent", default="embedded",
                     help="the agent to evaluate, by name (default: embedded)")  # fmt: skip
    run.add_argument("--agent-option", action="append", default=[], metavar="KEY=VALUE",
                     help="an option for the agent (repeat for more)")  # fmt: skip
    run.add_argument("--runs", type=int, default=1, metavar="K",
                     help="play every scenario K times; pass^k needs all K to pass")  # fmt: skip
    run.add_argument("--tags", action="append", default=[], metavar="TAG[,TAG]",
                     help="only scenarios with any of these tags")  # fmt: skip
    run.add_argument("--gate", type=Path, metavar="FILE",
                     help="thresholds the figures must meet (exit status 1 if not)")  # fmt: skip
    run.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON")
    run.add_argument("--transcripts", action="store_true",
                     help="put what was said and replied in the JSON report")  # fmt: skip
    run.add_argument("--timeout", type=float, metavar="SECONDS",
                     help="how long a turn waits for the agent's reply (default: 10)")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything an evaluation needs, read and checked before it plays anything."""

    suite: Suite
    business: Business
    settings: Settings
    agent: str
    options: dict[str, str]
    thresholds: Thresholds | None


def plan(args: argparse.Namespace) -> Plan:
    """The evaluation ``args`` ask for; ConfigurationError (one line) on bad input."""
    from threadline.business import load_configured
    from threadline.evaluation.agents import registered
    from threadline.evaluation.gate import load_thresholds
    from threadline.evaluation.suite import load_suite
    from threadline.settings import load_settings

    if args.runs < 1:
        raise ConfigurationError("--runs must be at least 1")
    if args.timeout is not None and args.timeout <= 0:
        raise ConfigurationError("--timeout must be more than 0 seconds")
    registered(args.agent)  # an unknown agent stops us here
    options = {}
    for option in args.agent_option:
        key, sep, value = option.partition("=")
        if not sep or not key:
            raise ConfigurationError(f"--agent-option {option!r}: write KEY=VALUE")
        options[key] = value
    settings = load_settings()
    if args.business is not None:
        settings = settings.model_copy(update={"business": args.business})
    thresholds = load_thresholds(args.gate) if args.gate is not None else None
    suite = load_suite(args.suite)
    tags = [t.strip() for given in args.tags for t in given.split(",") if t.strip()]
    chosen = suite.tagged(tags)
    if not chosen.scenarios:
        raise ConfigurationError(f"no scenario of {args.suite} has the tags {', '.join(tags)}")
    business = load_configured(settings.business)
    for scenario in chosen.scenarios:
        unknown = sorted(scenario.scripted_tools - set(business.pack.tools))
        if unknown:
            raise ConfigurationError(f"scenario {scenario.id} scripts {', '.join(unknown)}, "
                                     f"not a tool of {business.name}")  # fmt: skip
    return Plan(chosen, business, settings, args.agent, options, thresholds)


def run_eval_command(args: argparse.Namespace) -> int:
    """Run ``threadline eval``; the exit status (0, 1 for a breached gate, 2 bad input)."""
    from threadline.evaluation.gate import breaches
    from threadline.evaluation.report import Summary, document, progress, render, write_json
    from threadline.evaluation.runner import evaluate

    try:
        chosen = plan(args)
    except ConfigurationError as exc:
        print(f"threadline: error: {exc}", file=sys.stderr)
        return BAD_INPUT
    total = len(chosen.suite.scenarios) * args.runs
    try:
        with quiet_service_logs(), progress(total) as done:
            evaluation = asyncio.run(evaluate(
                chosen.suite, chosen.business, chosen.settings, chosen.agent, runs=args.runs,
                options=chosen.options, timeout=args.timeout, done=done,
            ))  # fmt: skip
    except ConfigurationError as exc:  # the agent refused its options, say
        print(f"threadline: error: {exc}", file=sys.stderr)
        return BAD_INPUT
    summary = Summary.of(evaluation)
    if chosen.thresholds is not None:
        summary = replace(summary, breaches=tuple(breaches(summary.figures, chosen.thresholds)))
    render(summary, sys.stdout)
    if args.json is not None:
        write_json(args.json, document(summary, transcripts=args.transcripts))
    for breach in summary.breaches or ():
        print(f"threadline: eval: {breach}", file=sys.stderr)
    return BREACHED if summary.breaches else 0


def _exception_named(out: TextIO, exc_info: Any) -> None:
    """An exception as its type alone: a traceback's locals or message may hold what a
    customer said (the run's report says what the agent did about it)."""
    out.write(f"\n  ({exc_info[0].__name__})")


@contextmanager
def quiet_service_logs() -> Iterator[None]:
    """While conversations play, the product's own log says warnings only, on stderr."""
    before = structlog.get_config()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            structlog.dev.ConsoleRenderer(colors=False, exception_formatter=_exception_named),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )
    try:
        yield
    finally:
        structlog.configure(**before)

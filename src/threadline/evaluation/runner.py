"""Running a suite: every scenario, ``runs`` times, each on a fresh product in process.

Runs go one after the other (run 1 of every scenario, then run 2, ...), so a
turn's latency is the product's alone. A turn the agent does not answer within
the timeout ends its scenario: the turns after it are not played and fail.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

from threadline.business import Business
from threadline.core.errors import ThreadlineError
from threadline.evaluation.agents import AgentFactory, EvaluationSetup, open_agent
from threadline.evaluation.checks import TurnResult, check_turn
from threadline.evaluation.sandbox import TURN_TIMEOUT, Sandbox
from threadline.evaluation.suite import Scenario, Suite
from threadline.settings import Settings

NOT_PLAYED: Final = "not played: an earlier turn went unanswered"


@dataclass(frozen=True, slots=True)
class ScenarioRun:
    """One run of a scenario: its turns, where it ended, and every failure."""

    scenario: Scenario
    run: int
    turns: tuple[TurnResult, ...]
    #: The queue of the first handoff, or of an approval a turn could ask instead (None:
    #: the agent kept the conversation).
    queue: str | None
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def escalated(self) -> bool:
        return self.queue is not None


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A suite run against an agent."""

    suite: str
    agent: str
    runs: int
    results: tuple[ScenarioRun, ...]
    seconds: float
    options: Mapping[str, str] = field(default_factory=dict)


def scenario_now(scenario: Scenario, business: Business) -> datetime:
    """The scenario's clock; a time written without an offset is the pack's local time."""
    assert scenario.now is not None  # the suite's loader sets every scenario's
    now = scenario.now
    return now if now.tzinfo is not None else now.replace(tzinfo=business.timezone)


def _outcome(scenario: Scenario, turns: tuple[TurnResult, ...]) -> tuple[str | None, list[str]]:
    at = next((n for n, t in enumerate(turns, 1) if t.went_to is not None), None)
    queue = turns[at - 1].went_to if at is not None else None
    problems = []
    if scenario.outcome == "contained" and queue is not None:
        problems.append(f"outcome: expected contained, handed to {queue} at turn {at}")
    elif scenario.outcome == "escalated":
        wanted = scenario.expected_queue
        if queue is None:
            problems.append("outcome: expected escalated"
                            f"{f' to {wanted}' if wanted else ''}, the agent kept it")  # fmt: skip
        elif wanted is not None and queue != wanted:
            problems.append(f"outcome: expected escalated to {wanted}, handed to {queue}")
    return queue, problems


async def run_scenario(
    scenario: Scenario,
    business: Business,
    settings: Settings,
    factory: AgentFactory,
    workdir: Path,
    *,
    run: int = 1,
    options: Mapping[str, str] | None = None,
    timeout: float = TURN_TIMEOUT,
) -> ScenarioRun:
    """Play ``scenario`` once against the agent ``factory`` builds."""
    now = scenario_now(scenario, business)
    turns: list[TurnResult] = []
    async with Sandbox(business, settings, factory, now, workdir, options=options,
                       timeout=timeout, tool_results=scenario.tool_results,
                       tool_failures=scenario.tool_failures) as sandbox:  # fmt: skip
        if scenario.channel == "voice":
            await sandbox.place_call(scenario.caller)
        else:
            await sandbox.open_chat(scenario.customer)
        for spec in scenario.turns:
            if turns and turns[-1].reply is None:
                turns.append(TurnResult(spec.text, None, None, failures=(NOT_PLAYED,),
                                        tools_expected=len(spec.tools or ())))  # fmt: skip
                continue
            try:
                observed = await (sandbox.say(spec.say) if spec.say is not None
                                  else sandbox.press(str(spec.press)))  # fmt: skip
            except ThreadlineError as exc:  # the channel refused the customer's turn
                turns.append(TurnResult(spec.text, None, None, failures=(f"refused: {exc}",),
                                        tools_expected=len(spec.tools or ())))  # fmt: skip
                continue
            turns.append(check_turn(spec, observed, timeout=timeout, never=scenario.must_not_say))
    played = tuple(turns)
    queue, problems = _outcome(scenario, played)
    failures = [f"turn {n}: {f}" for n, t in enumerate(played, 1) for f in t.failures]
    return ScenarioRun(scenario, run, played, queue, tuple(failures + problems))


async def evaluate(
    suite: Suite,
    business: Business,
    settings: Settings,
    agent: str,
    *,
    runs: int = 1,
    options: Mapping[str, str] | None = None,
    timeout: float | None = None,
    done: Callable[[ScenarioRun], None] | None = None,
) -> Evaluation:
    """Run every scenario of ``suite`` ``runs`` times against ``agent``, a turn waiting
    ``timeout`` seconds at most for its reply; ``done`` hears of each run as it ends.
    What the agent's runs share (a model provider) is opened first, and closed when the
    last run ends."""
    if runs < 1:
        raise ValueError("runs must be at least 1")
    started = time.perf_counter()
    results = []
    root = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="threadline-eval-"))
    try:
        async with AsyncExitStack() as shared:
            setup = EvaluationSetup(business, settings, shared, dict(options or {}))
            factory = await open_agent(agent, setup)
            for run in range(1, runs + 1):
                for index, scenario in enumerate(suite.scenarios):
                    workdir = root / f"{run}-{index}"
                    result = await run_scenario(scenario, business, settings, factory, workdir,
                                                run=run, options=options,
                                                timeout=timeout or TURN_TIMEOUT)  # fmt: skip
                    await asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True)
                    results.append(result)
                    if done is not None:
                        done(result)
    finally:
        await asyncio.to_thread(shutil.rmtree, root, ignore_errors=True)
    return Evaluation(suite.name, agent, runs, tuple(results), time.perf_counter() - started,
                      dict(options or {}))  # fmt: skip

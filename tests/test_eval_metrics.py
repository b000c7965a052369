"""The suite's figures, and the gate, on small synthetic runs (no product involved)."""

from __future__ import annotations

from datetime import datetime

import pytest

from threadline.core.events import Actor, Event
from threadline.evaluation.checks import Call, TurnResult, check_turn
from threadline.evaluation.gate import Thresholds, breaches, load_thresholds
from threadline.evaluation.metrics import figures, pass_hat, percentile
from threadline.evaluation.runner import ScenarioRun
from threadline.evaluation.sandbox import Observed
from threadline.evaluation.suite import Scenario, SuiteError, TurnSpec

NOW = datetime(2025, 3, 4, 10, 0)


def _scenario(id_: str, outcome: str = "contained", queue: str | None = None) -> Scenario:
    return Scenario.model_validate({"id": id_, "now": NOW, "outcome": outcome, "queue": queue,
                                    "turns": [{"say": "hello"}]})  # fmt: skip


def _run(scenario: Scenario, run: int, passed: bool = True, queue: str | None = None,
         **turn: object) -> ScenarioRun:  # fmt: skip
    result = TurnResult("hello", "hi", 10.0 * run, **turn)  # type: ignore[arg-type]
    return ScenarioRun(scenario, run, (result,), queue, () if passed else ("turn 1: wrong",))


def test_pass_hat_k_counts_a_scenario_only_when_every_run_passed() -> None:
    a, b, c = _scenario("a"), _scenario("b"), _scenario("c")
    runs = [_run(a, 1), _run(a, 2), _run(b, 1), _run(b, 2, passed=False),
            _run(c, 1, passed=False), _run(c, 2, passed=False)]  # fmt: skip
    measured = figures(runs)
    assert measured["task_success"] == pytest.approx(3 / 6)
    assert measured["pass_k"] == pytest.approx(1 / 3)
    # pass^1 averages each scenario's share of passing runs; pass^2 needs both.
    assert pass_hat(runs, 2) == {1: pytest.approx((1 + 0.5 + 0) / 3), 2: pytest.approx(1 / 3)}


def test_pass_hat_estimates_from_more_runs_than_k() -> None:
    a = _scenario("a")
    runs = [_run(a, 1), _run(a, 2), _run(a, 3, passed=False)]
    # Two of three runs passed: C(2,2)/C(3,2) = 1/3 for two runs drawn at random.
    assert pass_hat(runs, 3) == {1: pytest.approx(2 / 3), 2: pytest.approx(1 / 3), 3: 0.0}


def test_containment_and_escalation_are_measured_against_the_expected_outcome() -> None:
    stay, go, billing = _scenario("stay"), _scenario("go", "escalated"), _scenario(
        "billing", "escalated", "billing")  # fmt: skip
    runs = [
        _run(stay, 1),
        _run(stay, 2, passed=False, queue="orders"),  # a false escalation
        _run(go, 1, queue="orders"),
        _run(go, 2, passed=False),  # a missed escalation
        _run(billing, 1, queue="billing"),
        _run(billing, 2, passed=False, queue="orders"),  # the wrong queue
    ]
    measured = figures(runs)
    assert measured["containment"] == pytest.approx(1 / 2)
    assert measured["false_escalations"] == 1
    assert measured["correct_escalation"] == pytest.approx(2 / 4)


def test_a_rate_with_nothing_to_measure_is_none() -> None:
    measured = figures([_run(_scenario("a"), 1)])
    assert measured["correct_escalation"] is None
    assert measured["tool_accuracy"] is None


def test_tool_accuracy_is_calls_matched_over_calls_expected() -> None:
    a = _scenario("a")
    runs = [_run(a, 1, tools_expected=2, tools_matched=2, tools_unexpected=1),
            _run(a, 2, tools_expected=2, tools_matched=1)]  # fmt: skip
    measured = figures(runs)
    assert measured["tool_accuracy"] == pytest.approx(3 / 4)
    assert measured["unexpected_tool_calls"] == 1


def test_latency_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None


def _events(*specs: tuple[str, dict[str, object]]) -> tuple[Event, ...]:
    bot = Actor("bot", "northwind-bot")
    return tuple(Event("c", type_, payload, actor=bot) for type_, payload in specs)


def _turn(**spec: object) -> TurnSpec:
    return TurnSpec.model_validate({"say": "track order 1042", **spec})


LOOKUP = {"action_id": "a1", "tool": "lookup_order", "arguments": {"order_number": "1042"}}
OBSERVED = Observed(
    _events(
        ("intent.detected", {"intent": "order_status", "confidence": 0.9, "alternatives": {}}),
        ("action.requested", LOOKUP),
        ("action.requested", {"action_id": "a2", "tool": "knowledge", "arguments": {}}),
        ("message.sent", {"text": "Order 1042 is delayed. What's the postcode?"}),
    ),
    "Order 1042 is delayed. What's the postcode?",
    12.5,
)


def test_expected_calls_match_on_name_and_a_subset_of_arguments() -> None:
    spec = _turn(tools=[{"name": "lookup_order", "arguments": {"order_number": 1042}}])
    turn = check_turn(spec, OBSERVED, timeout=1)
    assert turn.failures == ()
    # The knowledge look-up is a tool the turn does not name: not judged.
    assert (turn.tools_expected, turn.tools_matched, turn.tools_unexpected) == (1, 1, 0)
    assert turn.calls[0] == Call("lookup_order", {"order_number": "1042"})


def test_a_call_with_other_arguments_is_a_failure() -> None:
    spec = _turn(tools=[{"name": "lookup_order", "arguments": {"order_number": "1057"}}])
    turn = check_turn(spec, OBSERVED, timeout=1)
    assert (turn.tools_matched, turn.tools_unexpected) == (0, 1)
    assert turn.failures[0].startswith("tools: expected lookup_order(order_number='1057')")


def test_a_turn_that_must_not_call_fails_on_any_call() -> None:
    turn = check_turn(_turn(no_tools=True), OBSERVED, timeout=1)
    assert turn.tools_unexpected == 2 and turn.failures[0].startswith("tools: expected no call")


def test_saying_what_must_not_be_said_fails_and_counts() -> None:
    spec = _turn(must_not_say=["delayed"], reply_contains=["postcode"])
    turn = check_turn(spec, OBSERVED, timeout=1, never=("Aster",))
    assert turn.failures == ("reply: says 'delayed', which it must not",)
    assert turn.leaks == 1


def test_an_expected_handoff_and_intent_that_do_not_happen_fail() -> None:
    turn = check_turn(_turn(intent="refund", handoff={"queue": "billing"}), OBSERVED, timeout=1)
    assert turn.failures == ("intent: expected refund, got order_status",
                             "handoff: expected one to billing, got none")  # fmt: skip


def test_no_reply_is_a_failure() -> None:
    turn = check_turn(_turn(), Observed((), None, None), timeout=2)
    assert turn.failures == ("no reply within 2 s",)


def test_the_gate_names_each_breach(tmp_path) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text("min: {task_success: 0.9, correct_escalation: 0.5}\n"
                    "max: {must_not_say_violations: 0}\n")  # fmt: skip
    thresholds = load_thresholds(path)
    measured = {"task_success": 0.8, "correct_escalation": None, "must_not_say_violations": 2}
    assert breaches(measured, thresholds) == [
        "task_success is 0.8, under its threshold 0.9",
        "correct_escalation: nothing measured it (gate: at least 0.5)",
        "must_not_say_violations is 2, over its threshold 0",
    ]
    assert breaches({"task_success": 0.95, "correct_escalation": 0.5,
                     "must_not_say_violations": 0}, thresholds) == []  # fmt: skip


def test_thresholds_name_known_metrics_only(tmp_path) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text("min: {task_sucess: 0.9}\n")
    with pytest.raises(SuiteError, match="task_sucess: not a metric"):
        load_thresholds(path)
    assert Thresholds().min == {}

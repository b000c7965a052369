"""Evaluation suites as written: what they mean, and every mistake said with its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import NORTHWIND
from threadline.evaluation.suite import SuiteError, Text, load_suite, matches

SHIPPED = NORTHWIND / "evaluation" / "suite"

ONE = """\
now: 2025-03-04T10:00:00
scenarios:
  - id: order
    outcome: contained
    turns:
      - say: 1042
        intent: order_status
        tools: [lookup_order]
        reply_contains: 1042
"""


def _written(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _problem(tmp_path: Path, text: str) -> str:
    with pytest.raises(SuiteError) as caught:
        load_suite(_written(tmp_path, text))
    return str(caught.value)


def test_a_suite_reads_what_the_customer_says_as_written_and_takes_shorthands(tmp_path) -> None:
    suite = load_suite(_written(tmp_path, ONE))
    turn = suite.scenarios[0].turns[0]
    assert turn.say == "1042"
    assert turn.intent == ("order_status",)
    assert [t.name for t in turn.tools or ()] == ["lookup_order"]
    assert turn.reply_contains == ("1042",)
    assert suite.scenarios[0].now is not None and suite.scenarios[0].now.hour == 10


def test_an_unknown_expectation_is_named_with_its_file_and_line(tmp_path) -> None:
    message = _problem(tmp_path, ONE.replace("intent:", "intnet:"))
    assert message.endswith("suite.yaml:7: scenarios[0].turns[0].intnet: is not a known key")


def test_invalid_yaml_says_where(tmp_path) -> None:
    message = _problem(tmp_path, ONE.replace("turns:", "turns: [", 1))
    assert "suite.yaml:" in message and "not valid YAML" in message


def test_a_turn_says_or_presses_exactly_one_thing(tmp_path) -> None:
    both = ONE.replace("      - say: 1042", "      - press: '1'\n        say: 1")
    message = _problem(tmp_path, both)
    assert "a turn has one of `say` or `press`" in message


def test_contradicting_expectations_are_refused(tmp_path) -> None:
    text = ONE.replace("tools: [lookup_order]", "handoff: true\n        contained: true")
    assert "`handoff` and `contained` contradict each other" in _problem(tmp_path, text)


def test_a_handoff_in_a_contained_scenario_is_refused(tmp_path) -> None:
    text = ONE.replace("tools: [lookup_order]", "handoff: {queue: billing}")
    assert "the outcome is `contained`" in _problem(tmp_path, text)


def test_a_bad_regular_expression_is_refused_where_it_is(tmp_path) -> None:
    text = ONE.replace("reply_contains: 1042", "must_not_say: [{regex: '(unclosed'}]")
    assert "suite.yaml:9: " in _problem(tmp_path, text)


def test_a_scenario_without_a_clock_is_refused(tmp_path) -> None:
    assert "has no `now`" in _problem(tmp_path, ONE.replace("now: 2025-03-04T10:00:00\n", ""))


def test_keys_given_twice_are_refused(tmp_path) -> None:
    text = ONE.replace("        intent: order_status\n", "        intent: a\n        intent: b\n")
    assert "is given twice" in _problem(tmp_path, text)


def test_scenario_ids_are_unique_across_a_folder(tmp_path) -> None:
    _written(tmp_path, ONE, "a.yaml")
    _written(tmp_path, ONE, "b.yaml")
    with pytest.raises(SuiteError, match="'order' is also in"):
        load_suite(tmp_path)


def test_a_missing_suite_is_one_problem(tmp_path) -> None:
    with pytest.raises(SuiteError, match="no such file or folder"):
        load_suite(tmp_path / "nowhere.yaml")


def test_voice_only_keys_are_refused_on_chat(tmp_path) -> None:
    caller = '    caller: "+14155550123"\n    outcome: contained'
    text = ONE.replace("    outcome: contained", caller)
    assert "`caller` is for voice" in _problem(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "pattern", "found"),
    [
        ("Order 1042 (Aster 14 laptop)", "aster 14", True),
        ("Order 1042", "Aster", False),
        ("postcode 94103.", {"regex": r"\b94103\b"}, True),
        ("postcode 941030", {"regex": r"\b94103\b"}, False),
    ],
)
def test_a_text_is_a_substring_in_any_case_and_a_regex_is_searched(text, pattern, found) -> None:
    from threadline.evaluation.suite import Regex

    wanted: Text = Regex(**pattern) if isinstance(pattern, dict) else pattern
    assert matches(text, wanted) is found


def test_tags_choose_scenarios(tmp_path) -> None:
    suite = load_suite(_written(tmp_path, ONE.replace("  - id: order\n", "  - id: order\n"
                                                      "    tags: [orders]\n")))  # fmt: skip
    assert len(suite.tagged(["orders", "hours"]).scenarios) == 1
    assert suite.tagged(["hours"]).scenarios == ()
    assert suite.tagged([]) is suite


def test_the_shipped_suite_has_150_conversations_30_of_them_adversarial() -> None:
    suite = load_suite(SHIPPED)
    assert len(suite.scenarios) >= 150
    assert len(suite.tagged(["adversarial"]).scenarios) >= 30
    assert {s.channel for s in suite.scenarios} == {"chat", "voice"}
    assert {s.outcome for s in suite.scenarios} == {"contained", "escalated"}


def test_the_shipped_suite_scripts_only_tools_of_the_pack(northwind) -> None:
    for scenario in load_suite(SHIPPED).scenarios:
        assert scenario.scripted_tools <= set(northwind.pack.tools), scenario.id


EITHER = """\
now: 2025-03-04T10:00:00
scenarios:
  - id: refund
    outcome: escalated
    turns:
      - say: I want a refund for order 1043
        handoff_or_approval: {queue: billing, tool: refund_order}
"""


def test_a_turn_may_hand_off_or_ask_for_an_approval_and_goes_to_the_queue_either_way(
    tmp_path,
) -> None:
    scenario = load_suite(_written(tmp_path, EITHER)).scenarios[0]
    wanted = scenario.turns[0].handoff_or_approval
    assert wanted is not None and (wanted.queue, wanted.tool) == ("billing", "refund_order")
    assert scenario.expected_queue == "billing"


@pytest.mark.parametrize("also", ["handoff: true", "approval: refund_order", "contained: true"])
def test_handoff_or_approval_is_instead_of_a_handoff_an_approval_or_containment(
    tmp_path, also
) -> None:
    message = _problem(tmp_path, EITHER + f"        {also}\n")
    assert "`handoff_or_approval` is instead of" in message


def test_a_contained_scenario_cannot_hand_off_or_ask_for_an_approval(tmp_path) -> None:
    message = _problem(tmp_path, EITHER.replace("outcome: escalated", "outcome: contained"))
    assert "a turn expects a handoff but the outcome is `contained`" in message

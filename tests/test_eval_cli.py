"""``threadline eval``: the table, the JSON report, the gate, and bad input."""

from __future__ import annotations

import json

import pytest

from tests.conftest import NORTHWIND
from threadline.cli import main

SUITE = """\
now: 2025-03-04T10:00:00
scenarios:
  - id: hours
    tags: [hours]
    outcome: contained
    turns:
      - say: when are you open?
        intent: store_hours
        no_tools: true
  - id: refund
    tags: [handoff]
    outcome: escalated
    turns:
      - say: I want my money back
        handoff: {queue: billing}
  - id: wrong-on-purpose
    tags: [orders]
    outcome: contained
    turns:
      - say: track order 1042
        must_not_say: [delayed]
"""


@pytest.fixture
def suite(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE, encoding="utf-8")
    return path


def _eval(*args: str) -> int:
    return main(["eval", *args, "--business", str(NORTHWIND)])


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith("threadline: error: ")
    return captured.err


def test_the_report_has_every_figure_and_every_run(suite, tmp_path, capsys) -> None:
    report = tmp_path / "out" / "eval.json"
    assert _eval(str(suite), "--runs", "2", "--json", str(report)) == 0
    out = capsys.readouterr().out
    assert "task success" in out and "wrong-on-purpose" in out
    data = json.loads(report.read_text())
    assert data["runs"] == 2 and data["agent"] == "embedded" and data["gate"] is None
    metrics = data["metrics"]
    assert metrics["task_success"] == pytest.approx(4 / 6)
    assert metrics["pass_k"] == pytest.approx(2 / 3)
    assert metrics["correct_escalation"] == 1.0 and metrics["must_not_say_violations"] == 2
    assert set(data["pass_hat"]) == {"1", "2"}
    assert data["tags"]["orders"]["passed"] == 0
    wrong = next(s for s in data["scenarios"] if s["id"] == "wrong-on-purpose")
    assert wrong["passed_runs"] == 0 and len(wrong["runs"]) == 2
    turn = wrong["runs"][0]["turns"][0]
    assert turn["intent"] == "order_status" and turn["tools"] == ["lookup_order"]
    assert "reply" not in turn  # what was said only with --transcripts


def test_transcripts_are_in_the_report_when_asked(suite, tmp_path, capsys) -> None:
    report = tmp_path / "eval.json"
    assert _eval(str(suite), "--tags", "hours", "--transcripts", "--json", str(report)) == 0
    data = json.loads(report.read_text())
    assert [s["id"] for s in data["scenarios"]] == ["hours"]
    turn = data["scenarios"][0]["runs"][0]["turns"][0]
    assert turn["said"] == "when are you open?" and "Market Street" in turn["reply"]


def test_the_gate_fails_with_one_line_per_breach(suite, tmp_path, capsys) -> None:
    gate = tmp_path / "thresholds.yaml"
    gate.write_text("min: {task_success: 0.9, correct_escalation: 1.0}\n"
                    "max: {must_not_say_violations: 0}\n")  # fmt: skip
    report = tmp_path / "eval.json"
    assert _eval(str(suite), "--gate", str(gate), "--json", str(report)) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "threadline: eval: task_success is 0.6667, under its threshold 0.9",
        "threadline: eval: must_not_say_violations is 1, over its threshold 0",
    ]
    assert json.loads(report.read_text())["gate"] == {
        "passed": False,
        "breaches": [line.removeprefix("threadline: eval: ") for line in err],
    }


def test_a_gate_that_holds_exits_zero(suite, tmp_path, capsys) -> None:
    gate = tmp_path / "thresholds.yaml"
    gate.write_text("min: {containment: 0.5}\n")
    assert _eval(str(suite), "--gate", str(gate)) == 0
    assert "gate: every threshold met" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (SUITE.replace("intent:", "intnet:"), "intnet: is not a known key"),
        (SUITE.replace("scenarios:", "scenarios: ["), "not valid YAML"),
    ],
)
def test_a_bad_suite_is_one_line_and_exit_status_2(tmp_path, capsys, text, said) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    report = tmp_path / "eval.json"
    assert _eval(str(path), "--json", str(report)) == 2
    assert said in _one_error_line(capsys)
    assert not report.exists()


def test_an_unknown_suite_file_is_exit_status_2(tmp_path, capsys) -> None:
    assert _eval(str(tmp_path / "missing.yaml")) == 2
    assert "no such file or folder" in _one_error_line(capsys)


def test_an_unknown_agent_is_exit_status_2(suite, capsys) -> None:
    assert _eval(str(suite), "--agent", "oracle") == 2
    assert "unknown agent 'oracle'" in _one_error_line(capsys)


def test_options_the_agent_does_not_take_are_exit_status_2(suite, capsys) -> None:
    assert _eval(str(suite), "--agent-option", "url=http://x") == 2
    assert "takes no options" in _one_error_line(capsys)


def test_bad_thresholds_are_exit_status_2(suite, tmp_path, capsys) -> None:
    gate = tmp_path / "thresholds.yaml"
    gate.write_text("min: {speed: 1}\n")
    assert _eval(str(suite), "--gate", str(gate)) == 2
    assert "speed: not a metric" in _one_error_line(capsys)


def test_tags_that_match_nothing_are_exit_status_2(suite, capsys) -> None:
    assert _eval(str(suite), "--tags", "nothing,none") == 2
    assert "no scenario" in _one_error_line(capsys)


def test_scripting_a_tool_the_pack_lacks_is_exit_status_2(tmp_path, capsys) -> None:
    path = tmp_path / "suite.yaml"
    scripted = "    tags: [hours]\n    tool_failures: {teleport: down}\n"
    path.write_text(SUITE.replace("    tags: [hours]\n", scripted))
    assert _eval(str(path)) == 2
    assert "scripts teleport, not a tool of" in _one_error_line(capsys)


def test_without_rich_the_table_is_plain_text(suite, capsys, monkeypatch) -> None:
    from threadline.evaluation import report

    monkeypatch.setattr(report, "has_rich", lambda: False)
    assert _eval(str(suite)) == 0
    out = capsys.readouterr().out
    assert "task success" in out and "FAIL wrong-on-purpose (1/1 runs): turn 1: reply:" in out

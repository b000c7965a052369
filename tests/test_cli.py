"""The threadline command: the demo, replay, schema export and its errors."""

from __future__ import annotations

import json
import re

import pytest

from threadline.cli import main


@pytest.fixture
def store_env(tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    monkeypatch.setenv("THREADLINE_STORE", url)
    return url


def test_demo_crosses_three_channels_in_one_conversation(store_env, capsys) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    conversation_ids = re.findall(r"^conversation (\S+)", out, re.MULTILINE)
    assert len(conversation_ids) == 1
    rows = [line.split() for line in out.splitlines() if re.match(r"^\s+\d+\s", line)]
    assert {row[1] for row in rows} == {"chat", "voice", "in_person"}
    assert [int(row[0]) for row in rows] == list(range(1, len(rows) + 1))
    assert "status      resolved (replacement_collected)" in out
    assert "order_number=1042" in out


def test_replay_folds_the_stored_conversation_again(store_env, capsys) -> None:
    main(["demo"])
    demo_out = capsys.readouterr().out
    conversation_id = re.search(r"^conversation (\S+)", demo_out, re.MULTILINE).group(1)
    assert main(["replay", conversation_id]) == 0
    replay_out = capsys.readouterr().out
    assert "status      resolved (replacement_collected)" in replay_out
    assert replay_out.count("\n") > 27


def test_replay_of_an_unknown_conversation_is_one_line_and_fails(store_env, capsys) -> None:
    assert main(["replay", "no-such-conversation"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("threadline: error: no conversation no-such-conversation")
    assert err.count("\n") == 1


def test_schema_export_writes_one_file_per_type_and_version(tmp_path, capsys) -> None:
    assert main(["schema", "export", str(tmp_path / "schemas")]) == 0
    files = sorted(p.name for p in (tmp_path / "schemas").iterdir())
    assert "message.sent.v1.json" in files and "message.sent.v2.json" in files
    schema = json.loads((tmp_path / "schemas" / "message.received.v1.json").read_text())
    assert schema["x-event-type"] == "message.received"
    assert schema["x-pii-fields"] == ["text"]
    assert schema["additionalProperties"] is False


def test_an_unknown_setting_is_refused_with_a_hint(monkeypatch, capsys) -> None:
    monkeypatch.setenv("THREADLINE_STOR", "sqlite:///x.db")
    assert main(["demo"]) == 1
    err = capsys.readouterr().err
    assert (
        err
        == "threadline: error: unknown setting THREADLINE_STOR (did you mean THREADLINE_STORE?)\n"
    )


def test_an_unknown_store_scheme_is_refused(monkeypatch, capsys) -> None:
    monkeypatch.setenv("THREADLINE_STORE", "mysql://localhost/db")
    assert main(["demo"]) == 1
    assert "unknown store 'mysql://localhost/db'" in capsys.readouterr().err


def test_a_bad_number_setting_names_the_variable(monkeypatch, capsys) -> None:
    monkeypatch.setenv("THREADLINE_SNAPSHOT_EVERY", "often")
    assert main(["demo"]) == 1
    assert capsys.readouterr().err.startswith(
        "threadline: error: bad setting THREADLINE_SNAPSHOT_EVERY"
    )


@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("4", "4")])
def test_the_command_runs_openblas_on_one_thread_unless_told_otherwise(given, expected) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if given is not None:
        env["OPENBLAS_NUM_THREADS"] = given
    code = "import threadline.cli, os, sys; print(os.environ['OPENBLAS_NUM_THREADS'])"
    code += "; print('numpy' in sys.modules)"  # set before numpy could have read it
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == [expected, "False"]

"""The threadline command: the demo, replay, schema export and its errors."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest

from tests.conftest import NORTHWIND
from tests.serving import environment
from threadline.business import load
from threadline.cli import main
from threadline.security.sign_in import sign_in_people
from threadline.settings import load_settings


@pytest.fixture
def store_env(tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    monkeypatch.setenv("THREADLINE_STORE", url)
    return url


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


# Asks the OpenBLAS that numpy loaded how many threads it runs, after importing the command.
OPENBLAS_THREADS = """
import ctypes, sys
import threadline.cli
assert "numpy" not in sys.modules, "numpy loaded before the command could set OpenBLAS up"
import numpy
paths = {line.split()[-1] for line in open("/proc/self/maps") if "openblas" in line.lower()}
for path in paths:
    library = ctypes.CDLL(path)
    for name in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                 "scipy_openblas_get_num_threads", "openblas_get_num_threads"):
        if hasattr(library, name):
            print(getattr(library, name)())
            sys.exit(0)
print("no OpenBLAS")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenBLAS runs one thread on one core")
@pytest.mark.parametrize(("given", "expected"), [(None, 1), ("2", 2)])
def test_the_command_runs_openblas_on_one_thread_unless_told_otherwise(given, expected) -> None:
    """Under uvloop every espeak-ng sentence is a fork; a fork while Whisper's feature
    extraction is inside a multi-threaded OpenBLAS call hangs in OpenBLAS's fork handler (it
    waits for its busy worker threads), and with it the whole service. One thread has no
    worker to wait for. An explicit OPENBLAS_NUM_THREADS is kept."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if given is not None:
        env["OPENBLAS_NUM_THREADS"] = given
    out = subprocess.run([sys.executable, "-c", OPENBLAS_THREADS], env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    if out.stdout.strip() == "no OpenBLAS":
        pytest.skip("numpy is not built on OpenBLAS")
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == expected


@pytest.mark.parametrize(
    ("variable", "value", "shown"),
    [
        ("THREADLINE_BUS", "nats://user:hunter2@127.0.0.1:4222", "nats://…"),
        ("THREADLINE_CACHE", "redis://:hunter2@127.0.0.1:6379/0", "redis://…"),
        ("THREADLINE_BUS", "kafka", "'kafka'"),
    ],
)
def test_a_bus_or_cache_this_build_lacks_is_refused(monkeypatch, capsys, variable, value, shown):
    monkeypatch.setenv(variable, value)
    assert main(["demo"]) == 1
    assert capsys.readouterr().err == (
        f"threadline: error: bad setting {variable}: {shown} is not supported by this build"
        " (supported: memory)\n"
    )  # the scheme only: a URL may carry a password


def test_the_built_in_bus_and_cache_are_accepted() -> None:
    settings = load_settings({"THREADLINE_BUS": "memory", "THREADLINE_CACHE": "memory"})
    assert (settings.bus, settings.cache) == ("memory", "memory")


def test_serve_with_an_unsupported_bus_stops_with_one_line(tmp_path) -> None:
    env = environment(
        THREADLINE_STORE=f"sqlite:///{tmp_path / 'x.db'}", THREADLINE_BUS="nats://127.0.0.1:4222"
    )
    out = subprocess.run([sys.executable, "-m", "threadline.cli", "serve", "--port", "0"],
                         env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr == (
        "threadline: error: bad setting THREADLINE_BUS: nats://… is not supported by this build"
        " (supported: memory)\n"
    )


def test_an_unknown_environment_is_refused(monkeypatch, capsys) -> None:
    monkeypatch.setenv("THREADLINE_ENV", "staging")
    assert main(["demo"]) == 1
    assert capsys.readouterr().err.startswith("threadline: error: bad setting THREADLINE_ENV:")


def test_token_links_prints_a_fragment_link_for_everyone_who_signs_in(
    store_env, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("THREADLINE_PUBLIC_URL", "https://desk.example.com")
    assert main(["token", "links"]) == 0
    lines = capsys.readouterr().out.splitlines()
    people = sign_in_people(load(NORTHWIND))
    assert [line.split()[0] for line in lines] == [person.subject for person in people]
    for line, person in zip(lines, people, strict=True):
        assert line.split()[1].startswith(f"https://desk.example.com{person.page}#token=eyJ")
    assert "?" not in "".join(lines)


def test_token_links_is_refused_in_production(store_env, monkeypatch, capsys) -> None:
    monkeypatch.setenv("THREADLINE_ENV", "production")
    monkeypatch.setenv("THREADLINE_TOKEN_SECRET", secrets.token_urlsafe(32))
    assert main(["token", "links"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("threadline: error: sign-in links are for development only")


def test_the_benchmark_is_not_a_command(capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["bench"])
    assert stopped.value.code == 2
    assert "invalid choice: 'bench'" in capsys.readouterr().err

"""The service's log never carries a customer's data, even when a turn fails."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog

from threadline.logs import configure_logging

CARD = "4111111111111111"
POSTCODE = "94103"


@pytest.fixture(autouse=True)
def _restored() -> Iterator[None]:
    before = structlog.get_config()
    yield
    structlog.configure(**before)


def _fail(text: str) -> None:
    slots = {"postcode": POSTCODE}  # a local a turn holds: never in the log
    raise ValueError(f"could not read {text!r} with {slots}")


@pytest.mark.parametrize("env", ["development", "production"])
def test_an_exception_is_logged_without_its_message_or_locals(env, capsys) -> None:
    configure_logging(env)
    log = structlog.get_logger("threadline.test")
    try:
        _fail(f"my card is {CARD}")
    except ValueError:
        log.exception("agent turn failed; handing over", conversation_id="conv-1")
    err = capsys.readouterr().err
    assert "agent turn failed" in err and "conv-1" in err
    assert "ValueError" in err and "_fail" in err  # what failed, and where
    assert CARD not in err and POSTCODE not in err and "my card" not in err
    if env == "production":
        line = json.loads(err.strip().splitlines()[-1])
        assert line["event"] == "agent turn failed; handing over" and line["level"] == "error"


def test_below_the_level_nothing_is_written(capsys) -> None:
    configure_logging("production")
    structlog.get_logger("threadline.test").debug("noise", detail="x")
    assert capsys.readouterr().err == ""

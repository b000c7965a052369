"""The circuit breaker: open after failures in a row, one trial after the cooldown."""

from __future__ import annotations

import pytest

from threadline.models import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_it_opens_after_failures_in_a_row_only() -> None:
    breaker = CircuitBreaker(failures=3, cooldown=10, clock=Clock())
    for _ in range(2):
        breaker.failed()
    breaker.succeeded()  # the count starts again
    breaker.failed()
    breaker.failed()
    assert breaker.state == "closed" and breaker.allow()
    breaker.failed()
    assert breaker.state == "open" and not breaker.allow()


def test_after_the_cooldown_one_trial_goes_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, cooldown=10, clock=clock)
    breaker.failed()
    clock.now += 9.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.state == "half_open"
    assert breaker.allow() and not breaker.allow()  # one trial at a time
    breaker.succeeded()
    assert breaker.state == "closed" and breaker.allow()


def test_a_failed_trial_opens_it_for_another_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=5, cooldown=10, clock=clock)
    for _ in range(5):
        breaker.failed()
    clock.now += 10
    assert breaker.allow()
    breaker.failed()  # one failure is enough while half-open
    assert breaker.state == "open"
    clock.now += 10
    assert breaker.allow()


@pytest.mark.parametrize(("failures", "cooldown"), [(0, 1.0), (1, 0.0)])
def test_a_breaker_that_could_never_close_or_open_is_refused(
    failures: int, cooldown: float
) -> None:
    with pytest.raises(ValueError, match="failures >= 1"):
        CircuitBreaker(failures=failures, cooldown=cooldown)


def test_the_exports_are_pinned() -> None:
    import threadline.models

    assert set(threadline.models.__all__) == {
        "CircuitBreaker",
        "OpenAICompatible",
        "RedactingProvider",
    }

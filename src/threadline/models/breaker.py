"""A circuit breaker: stop calling a dependency that keeps failing, then try it again.

Closed, calls go through. After ``failures`` failed calls in a row it opens: calls are
refused at once, without waiting on a dependency that is down, for ``cooldown`` seconds.
Then it is half-open: one trial call goes through; its success closes the circuit, its
failure opens it for another cooldown.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Counts failures in a row and refuses calls while open (see the module)."""

    def __init__(
        self, failures: int = 5, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if failures < 1 or cooldown <= 0:
            raise ValueError("a circuit breaker needs failures >= 1 and a positive cooldown")
        self.failures = failures
        self.cooldown = cooldown
        self._clock = clock
        self._in_a_row = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._clock() - self._opened_at >= self.cooldown else "open"

    def allow(self) -> bool:
        """Whether a call may go through now (half-open: only the one trial)."""
        state = self.state
        if state == "closed":
            return True
        if state == "open" or self._trial:
            return False
        self._trial = True
        return True

    def succeeded(self) -> None:
        self._in_a_row = 0
        self._opened_at = None
        self._trial = False

    def failed(self) -> None:
        self._in_a_row += 1
        if self._trial or self._in_a_row >= self.failures:
            self._opened_at = self._clock()
        self._trial = False

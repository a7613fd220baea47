"""A small circuit breaker, so a dead origin costs nothing while it is down.

Closed: calls go through; ``threshold`` consecutive failures open it. Open: calls are
refused without touching the network until ``cooldown`` seconds have passed. Half-open:
exactly one trial call goes through; its success closes the breaker, its failure opens
it again for another cooldown.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["BreakerState", "CircuitBreaker", "Permit"]


class BreakerState(enum.Enum):
    """Where the breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Permit(NamedTuple):
    """Leave to make one call; ``trial`` if it is the half-open breaker's one trial."""

    trial: bool


class CircuitBreaker:
    """Consecutive-failure circuit breaker with an injectable monotonic clock."""

    def __init__(
        self,
        *,
        threshold: int,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        if cooldown <= 0:
            raise ValueError("cooldown must be positive")
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker turns half-open once its cooldown ends)."""
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._trial_in_flight or self._clock() - self._opened_at >= self._cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @property
    def consecutive_failures(self) -> int:
        """Failures since the last success."""
        return self._failures

    def retry_after(self) -> float:
        """Seconds until a call may be tried again (0 when one may be tried now)."""
        if self._opened_at is None:
            return 0.0
        remaining = self._opened_at + self._cooldown - self._clock()
        if remaining > 0:
            return remaining
        # Cooled down: if a trial is already running, others wait about one cooldown.
        return self._cooldown if self._trial_in_flight else 0.0

    def acquire(self) -> Permit | None:
        """Ask to make a call: a permit if allowed (half-open: the trial), else None."""
        state = self.state
        if state is BreakerState.CLOSED:
            return Permit(trial=False)
        if state is BreakerState.HALF_OPEN and not self._trial_in_flight:
            self._trial_in_flight = True
            return Permit(trial=True)
        return None

    def record_success(self, permit: Permit) -> None:
        """The origin answered: close the breaker and forget past failures."""
        del permit  # any answer shows the origin is back, trial or not
        self._failures = 0
        self._opened_at = None
        self._trial_in_flight = False

    def record_failure(self, permit: Permit) -> None:
        """The origin failed (connection, timeout, 5xx): count it, open at the threshold."""
        self._failures += 1
        if permit.trial and self._trial_in_flight:
            # The half-open trial failed: open again for a full cooldown.
            self._trial_in_flight = False
            self._opened_at = self._clock()
        elif self._opened_at is None and self._failures >= self._threshold:
            self._opened_at = self._clock()

    def release(self, permit: Permit) -> None:
        """A call ended without a verdict (cancelled): let the next call be the trial."""
        if permit.trial:
            self._trial_in_flight = False

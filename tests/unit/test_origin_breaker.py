"""The origin circuit breaker, driven by a fake clock."""

from __future__ import annotations

import pytest

from origin import BreakerState, CircuitBreaker
from origin.breaker import Permit


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(threshold=3, cooldown=10.0, clock=clock)


def state(breaker: CircuitBreaker) -> BreakerState:
    """The breaker's state (a call, so each check reads it afresh)."""
    return breaker.state


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        permit = breaker.acquire()
        assert permit is not None
        breaker.record_failure(permit)


def test_closed_until_threshold_consecutive_failures(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.retry_after() == 0
    fail(breaker, 1)
    assert state(breaker) is BreakerState.OPEN
    assert breaker.acquire() is None


def test_success_resets_the_count(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    permit = breaker.acquire()
    assert permit is not None
    breaker.record_success(permit)
    assert breaker.consecutive_failures == 0
    fail(breaker, 2)
    assert state(breaker) is BreakerState.CLOSED


def test_open_refuses_until_cooldown_then_allows_one_trial(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    fail(breaker, 3)
    clock.now += 4
    assert breaker.acquire() is None
    assert breaker.retry_after() == pytest.approx(6)
    clock.now += 6
    assert state(breaker) is BreakerState.HALF_OPEN
    trial = breaker.acquire()
    assert trial == Permit(trial=True)
    assert breaker.acquire() is None  # only one trial at a time
    assert breaker.retry_after() > 0
    breaker.record_success(trial)
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.acquire() == Permit(trial=False)


def test_failed_trial_opens_for_another_cooldown(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.now += 10
    trial = breaker.acquire()
    assert trial is not None
    breaker.record_failure(trial)
    assert state(breaker) is BreakerState.OPEN
    assert breaker.retry_after() == pytest.approx(10)
    clock.now += 9.5
    assert breaker.acquire() is None
    clock.now += 0.5
    assert breaker.acquire() == Permit(trial=True)


def test_released_trial_lets_the_next_call_try(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.now += 10
    trial = breaker.acquire()
    assert trial is not None
    breaker.release(trial)  # e.g. the request was cancelled: no verdict
    assert breaker.acquire() == Permit(trial=True)


def test_straggler_failure_does_not_reopen_a_trial(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    straggler = breaker.acquire()  # started while closed, fails late
    assert straggler is not None
    fail(breaker, 3)
    clock.now += 10
    trial = breaker.acquire()
    assert trial is not None
    breaker.record_failure(straggler)
    assert state(breaker) is BreakerState.HALF_OPEN
    breaker.record_success(trial)
    assert state(breaker) is BreakerState.CLOSED


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="threshold"):
        CircuitBreaker(threshold=0, cooldown=1)
    with pytest.raises(ValueError, match="cooldown"):
        CircuitBreaker(threshold=1, cooldown=0)

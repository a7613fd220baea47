"""The supervisor's restart policy: back-off, exit descriptions, one restart step."""

from __future__ import annotations

import logging
import signal
import sys
import time

import pytest

from kush.supervisor import (
    BACKOFF_FIRST_S,
    BACKOFF_MAX_S,
    Child,
    Supervisor,
    describe_exit,
    next_backoff,
)


def test_backoff_doubles_to_a_cap_and_resets_after_a_healthy_run() -> None:
    waits = [next_backoff(None, 0.1)]
    for _ in range(10):
        waits.append(next_backoff(waits[-1], 0.1))
    assert waits[:4] == [0.5, 1.0, 2.0, 4.0]
    assert waits[-1] == BACKOFF_MAX_S
    assert max(waits) == BACKOFF_MAX_S
    assert next_backoff(BACKOFF_MAX_S, 61.0) == BACKOFF_FIRST_S


def test_exit_descriptions() -> None:
    assert describe_exit(3) == "exited with status 3"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(-200) == "killed by signal 200"


def test_a_dead_child_is_restarted_after_its_backoff(caplog: pytest.LogCaptureFixture) -> None:
    sup = Supervisor({})
    child = Child("crashy", [sys.executable, "-c", "raise SystemExit(3)"])
    sup._start(child)
    sup.children.append(child)
    try:
        first = child.proc
        assert first is not None
        first.wait(timeout=30)
        now = time.monotonic()
        with caplog.at_level(logging.ERROR, logger="kush.supervisor"):
            sup.check(now)
        assert "crashy" in caplog.text
        assert "exited with status 3" in caplog.text
        assert child.restart_at == pytest.approx(now + BACKOFF_FIRST_S)
        sup.check(now + BACKOFF_FIRST_S / 2)
        assert child.proc is first  # not yet
        sup.check(now + BACKOFF_FIRST_S)
        assert child.proc is not first
        assert child.restarts == 1
        child.proc.wait(timeout=30)
        sup.check(time.monotonic())
        assert child.backoff == 2 * BACKOFF_FIRST_S  # it died quickly again
    finally:
        if child.proc is not None and child.proc.poll() is None:
            child.proc.kill()
            child.proc.wait()
        assert sup.stop() == 0

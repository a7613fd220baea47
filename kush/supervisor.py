"""Runs the service processes of ``kush up`` / ``kush gateway --workers N``.

A child that exits on its own is restarted after a back-off (0.5 s, doubling to 30 s;
back to 0.5 s once a child has run 60 s), so one crashed gateway worker costs its own
connections, not the whole edge. Only SIGTERM/SIGINT stop everything.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 8.0
POLL_S = 0.2
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0


def next_backoff(previous: float | None, ran_for: float) -> float:
    """The wait before restarting a child that ran ``ran_for`` seconds: the first wait
    after a healthy run (or the first crash), else twice the previous one, capped."""
    if previous is None or ran_for >= HEALTHY_AFTER_S:
        return BACKOFF_FIRST_S
    return min(previous * 2, BACKOFF_MAX_S)


def describe_exit(returncode: int) -> str:
    """``exited with status 3`` or ``killed by SIGKILL``."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with status {returncode}"


@dataclass(slots=True)
class Child:
    """One supervised process: how to start it, and its restart state."""

    name: str
    cmd: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff: float | None = None
    restart_at: float | None = None
    restarts: int = field(default=0)


class Supervisor:
    """Runs child processes, restarts the ones that die, and stops them all together on
    SIGINT/SIGTERM."""

    def __init__(
        self, env: dict[str, str], *, on_exit: Callable[[int], None] | None = None
    ) -> None:
        self.env = env
        #: told the pid of every child that exited (the gateway's metrics forget it)
        self.on_exit = on_exit
        self.children: list[Child] = []
        self.stopping = False

    def spawn(self, name: str, args: Sequence[str]) -> None:
        """Start ``python -m kush ARGS`` as a supervised child called ``name``."""
        child = Child(name, [sys.executable, "-m", "kush", *args])
        self._start(child)
        self.children.append(child)

    def _start(self, child: Child) -> None:
        child.proc = subprocess.Popen(child.cmd, env=self.env)  # noqa: S603
        child.started_at = time.monotonic()
        child.restart_at = None

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def wait(self) -> int:
        """Block until SIGINT/SIGTERM, restarting children that die meanwhile; then
        stop every child. Returns 0 when all stopped cleanly, else 1."""
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        while not self.stopping:
            self.check(time.monotonic())
            time.sleep(POLL_S)
        return self.stop()

    def check(self, now: float) -> None:
        """One supervision step: note children that died and restart those due."""
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restarts += 1
                    log.warning("restarting %s (restart %d)", child.name, child.restarts)
                    self._start(child)
                continue
            if child.proc is None or child.proc.poll() is None:
                continue
            proc = child.proc
            if self.on_exit is not None:
                self.on_exit(proc.pid)
            ran_for = now - child.started_at
            child.backoff = next_backoff(child.backoff, ran_for)
            child.restart_at = now + child.backoff
            log.error(
                "%s (pid %d) %s after %.1f s; restarting in %.1f s",
                child.name,
                proc.pid,
                describe_exit(proc.returncode),
                ran_for,
                child.backoff,
            )

    def stop(self) -> int:
        """SIGTERM every running child, SIGKILL those still up after the grace period."""
        running = [c.proc for c in self.children if c.proc is not None and c.restart_at is None]
        for proc in running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        code = 0
        for child in self.children:
            if child.proc is None or child.restart_at is not None:
                continue
            proc = child.proc
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", child.name)
                proc.kill()
                proc.wait()
                code = 1
                continue
            if proc.returncode not in (0, -signal.SIGTERM, -signal.SIGINT):
                log.warning("%s %s while stopping", child.name, describe_exit(proc.returncode))
                code = 1
        return code

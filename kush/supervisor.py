"""Runs the service processes of ``kush up`` / ``kush gateway --workers N``.

A child that exits on its own is restarted after a back-off (0.5 s, doubling to 30 s;
back to 0.5 s once a child has run 60 s), so one crashed gateway worker costs its own
connections, not the whole edge. Only SIGTERM/SIGINT stop everything: each child gets
SIGTERM (a gateway worker drains, see ``runtime.serve``) and SIGKILL after ``grace_s``.

SIGHUP is a rolling restart of the children spawned with ``on_reload="roll"`` (the
gateway workers), one at a time: a replacement starts with the write end of a pipe named
by ``KUSH_READY_FD`` and writes a byte on it once it listens; only then is the old
process sent SIGTERM, and it drains while the next one is replaced. A replacement that
dies or is not ready within ``READY_TIMEOUT_S`` is stopped, the old process is kept, and
the rolling restart ends there (logged). A child spawned with ``on_reload="forward"`` (the
nested ``kush gateway`` of ``kush up``) is sent the SIGHUP instead.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 8.0
POLL_S = 0.2
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0
#: how long a replacement may take to listen during a rolling restart
READY_TIMEOUT_S = 60.0
#: the environment variable naming the pipe a child writes one byte to once it listens
READY_FD_ENV = "KUSH_READY_FD"
#: added to a child's drain timeout before the supervisor kills it
STOP_MARGIN_S = 5.0

#: what SIGHUP does to a child: nothing, replace it, or pass SIGHUP on to it (a nested
#: supervisor, such as ``kush up``'s ``kush gateway``, then rolls its own workers)
ReloadPolicy = Literal["ignore", "roll", "forward"]


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


def _clean_stop(returncode: int) -> bool:
    """The exit of a child that stopped as asked (drained, or died of the signal)."""
    return returncode in (0, -signal.SIGTERM, -signal.SIGINT)


def _terminate(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM ``proc``; SIGKILL it if it is still up after ``grace_s``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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
    on_reload: ReloadPolicy = "ignore"


@dataclass(slots=True)
class Retiring:
    """A process replaced by a rolling restart, draining after its SIGTERM."""

    name: str
    proc: subprocess.Popen[bytes]
    kill_at: float


class Supervisor:
    """Runs child processes, restarts the ones that die, and stops them all together on
    SIGINT/SIGTERM."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        on_exit: Callable[[int], None] | None = None,
        grace_s: float = SHUTDOWN_GRACE_S,
    ) -> None:
        self.env = env
        #: told the pid of every child that exited (the gateway's metrics forget it)
        self.on_exit = on_exit
        self.grace_s = grace_s
        self.children: list[Child] = []
        self.retiring: list[Retiring] = []
        self.stopping = False
        self.reload_requested = False

    def spawn(self, name: str, args: Sequence[str], *, on_reload: ReloadPolicy = "ignore") -> None:
        """Start ``python -m kush ARGS`` as a supervised child called ``name``;
        ``on_reload="roll"``: SIGHUP replaces it (see the module doc)."""
        child = Child(name, [sys.executable, "-m", "kush", *args], on_reload=on_reload)
        self._start(child)
        self.children.append(child)

    def _start(self, child: Child) -> None:
        child.proc = subprocess.Popen(child.cmd, env=self.env)  # noqa: S603
        child.started_at = time.monotonic()
        child.restart_at = None

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def _on_reload(self, signum: int, _frame: object) -> None:
        self.reload_requested = True

    def wait(self) -> int:
        """Block until SIGINT/SIGTERM, restarting children that die meanwhile and rolling
        them on SIGHUP; then stop every child. Returns 0 when all stopped cleanly, else 1."""
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_reload)
        while not self.stopping:
            if self.reload_requested:
                self.reload_requested = False
                self.roll()
            self.check(time.monotonic())
            time.sleep(POLL_S)
        return self.stop()

    def roll(self) -> int:
        """Replace every running ``on_reload="roll"`` child, one at a time (see the module
        doc); returns how many were replaced."""
        for child in self.children:
            proc = child.proc
            if child.on_reload == "forward" and proc is not None and proc.poll() is None:
                log.info("SIGHUP passed on to %s (pid %d)", child.name, proc.pid)
                proc.send_signal(signal.SIGHUP)
        rolling = [c for c in self.children if c.on_reload == "roll"]
        if not rolling:
            return 0
        log.info("rolling restart of %d processes", len(rolling))
        replaced = 0
        for child in rolling:
            old = child.proc
            if self.stopping:
                break
            if old is None or child.restart_at is not None or old.poll() is not None:
                continue  # down: check() restarts it
            new = self._start_ready(child)
            if new is None:
                log.error("rolling restart stopped: %s kept its old process", child.name)
                return replaced
            child.proc, child.started_at, child.backoff = new, time.monotonic(), None
            old.send_signal(signal.SIGTERM)
            self.retiring.append(Retiring(child.name, old, time.monotonic() + self.grace_s))
            log.info("%s: pid %d listens; pid %d drains", child.name, new.pid, old.pid)
            replaced += 1
        log.info("rolling restart done: %d of %d processes replaced", replaced, len(rolling))
        return replaced

    def _start_ready(self, child: Child) -> subprocess.Popen[bytes] | None:
        """A new process for ``child`` that said it listens, or None (it is stopped)."""
        read_fd, write_fd = os.pipe()
        try:
            env = {**self.env, READY_FD_ENV: str(write_fd)}
            proc = subprocess.Popen(child.cmd, env=env, pass_fds=(write_fd,))  # noqa: S603
        finally:
            os.close(write_fd)
        try:
            why = self._wait_ready(proc, read_fd)
        finally:
            os.close(read_fd)
        if why is None:
            return proc
        log.error("%s: replacement pid %d %s", child.name, proc.pid, why)
        _terminate(proc, self.grace_s)
        return None

    def _wait_ready(self, proc: subprocess.Popen[bytes], read_fd: int) -> str | None:
        """None once ``proc`` says it listens, else why not."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.stopping and time.monotonic() < deadline:
            readable, _, _ = select.select([read_fd], [], [], POLL_S)
            if readable and os.read(read_fd, 1) == b"1":
                return None
            if readable:  # end of file: it closed the pipe (or died) without listening
                try:
                    return describe_exit(proc.wait(timeout=POLL_S * 5))
                except subprocess.TimeoutExpired:
                    return "closed its ready pipe without listening"
            if proc.poll() is not None:
                return describe_exit(proc.returncode)
        if self.stopping:
            return "stopped before it listened"
        return f"not listening after {READY_TIMEOUT_S:g} s"

    def check(self, now: float) -> None:
        """One supervision step: note children that died and restart those due; reap
        drained processes of a rolling restart (killed past their grace)."""
        self._reap(now)
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

    def _reap(self, now: float) -> None:
        for old in list(self.retiring):
            if old.proc.poll() is not None:
                self.retiring.remove(old)
                if self.on_exit is not None:
                    self.on_exit(old.proc.pid)
                level = logging.INFO if _clean_stop(old.proc.returncode) else logging.WARNING
                log.log(
                    level,
                    "%s: old pid %d %s",
                    old.name,
                    old.proc.pid,
                    describe_exit(old.proc.returncode),
                )
            elif now >= old.kill_at:
                log.warning("%s: old pid %d still draining; killing it", old.name, old.proc.pid)
                old.proc.kill()

    def stop(self) -> int:
        """SIGTERM every running child, SIGKILL those still up after the grace period
        (processes draining from a rolling restart included)."""
        running = [c.proc for c in self.children if c.proc is not None and c.restart_at is None]
        for proc in running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        code = 0
        stopping = [
            (c.name, c.proc) for c in self.children if c.proc is not None and c.restart_at is None
        ]
        stopping += [(old.name, old.proc) for old in self.retiring]
        self.retiring.clear()
        for name, proc in stopping:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", name)
                proc.kill()
                proc.wait()
                code = 1
                continue
            if not _clean_stop(proc.returncode):
                log.warning("%s %s while stopping", name, describe_exit(proc.returncode))
                code = 1
        return code

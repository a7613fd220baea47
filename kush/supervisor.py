"""Runs the service processes of ``kush up`` / ``kush gateway --workers N``."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 8.0


class Supervisor:
    """Runs child processes, forwards SIGINT/SIGTERM, and stops them all together."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.stopping = False

    def spawn(self, name: str, args: Sequence[str]) -> None:
        cmd = [sys.executable, "-m", "kush", *args]
        self.children.append((name, subprocess.Popen(cmd, env=self.env)))  # noqa: S603

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def wait(self) -> int:
        """Block until a signal arrives or a child dies; then stop every child."""
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        code = 0
        while not self.stopping:
            for name, proc in self.children:
                if proc.poll() is not None:
                    log.error("%s exited with status %s; stopping", name, proc.returncode)
                    self.stopping = True
                    code = 1
            time.sleep(0.2)
        self.stop()
        return code

    def stop(self) -> None:
        for _, proc in self.children:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        for name, proc in self.children:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", name)
                proc.kill()
                proc.wait()

"""``kush gateway --workers 2``: a worker that dies is replaced; SIGTERM stops them all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from runtime.settings import Settings
from tests.integration.helpers import free_port, kush_env

pytestmark = pytest.mark.slow


def _pids_answering(port: int, *, until: Callable[[set[int]], bool], limit_s: float) -> set[int]:
    """The worker pids seen on ``/healthz`` over new connections (the kernel spreads
    them over the workers) until ``until(pids)`` holds or ``limit_s`` has passed."""
    pids: set[int] = set()
    deadline = time.monotonic() + limit_s
    while not until(pids) and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                pids.add(json.loads(r.read())["pid"])
        except OSError:
            time.sleep(0.1)
    return pids


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_killed_worker_is_restarted_and_sigterm_stops_all(
    settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **kush_env(settings, port=port, data_dir=settings.data_dir),
        "KUSH_LOG_LEVEL": "WARNING",
        "KUSH_LOG_FORMAT": "text",
    }
    log_path = tmp_path / "supervisor.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kush", "gateway", "--workers", "2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    try:
        first = _pids_answering(port, until=lambda p: len(p) == 2, limit_s=60)
        assert len(first) == 2
        assert first == {c.pid for c in psutil.Process(proc.pid).children()}
        victim, survivor = sorted(first)
        os.kill(victim, signal.SIGKILL)

        # a new worker answers on the same port while the other keeps answering
        seen = _pids_answering(
            port, until=lambda p: survivor in p and len(p - first) > 0, limit_s=60
        )
        replacement = seen - first
        assert victim not in seen
        assert survivor in seen
        assert len(replacement) == 1
        assert proc.poll() is None
        workers = {c.pid for c in psutil.Process(proc.pid).children()}
        assert workers == {survivor, *replacement}
        text = log_path.read_text()
        assert f"gateway-0 (pid {victim})" in text or f"gateway-1 (pid {victim})" in text
        assert "killed by SIGKILL" in text

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while not all(_gone(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(_gone(pid) for pid in workers)
        assert _pids_answering(port, until=bool, limit_s=1) == set()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

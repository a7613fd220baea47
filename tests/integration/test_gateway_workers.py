"""``kush gateway --workers 2``: two processes share one port (SO_REUSEPORT)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from runtime.settings import Settings
from tests.integration.helpers import free_port, kush_env

pytestmark = pytest.mark.slow


def test_two_workers_share_the_port(settings: Settings) -> None:
    port = free_port()
    env = {
        **kush_env(settings, port=port, data_dir=settings.data_dir),
        "KUSH_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "kush", "gateway", "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        pids: set[int] = set()
        deadline = time.monotonic() + 60
        while len(pids) < 2 and time.monotonic() < deadline:
            try:
                # a new connection each time: the kernel spreads them over the workers
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    pids.add(json.loads(r.read())["pid"])
            except OSError:
                time.sleep(0.2)
        assert len(pids) == 2
        assert proc.pid not in pids
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

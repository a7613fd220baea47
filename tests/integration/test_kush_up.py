"""``kush up`` with embedded defaults: starts, answers /readyz on both ports, stops on SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.integration.helpers import free_port

pytestmark = pytest.mark.slow


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _postgres_for(data_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        cmd = " ".join(proc.info.get("cmdline") or [])
        if proc.info.get("name") == "postgres" and str(data_dir) in cmd:
            found.append(proc)
    return found


@pytest.fixture
def data_root() -> Iterator[Path]:
    """Outside pytest's private temp root: the embedded PostgreSQL runs as another user
    and needs to reach its data directory."""
    root = Path(tempfile.mkdtemp(prefix="kush-up-test-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_up_embedded_then_sigterm(data_root: Path) -> None:
    tmp_path = data_root
    gw, adm = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        KUSH_DATA_DIR=str(tmp_path / "var"),
        KUSH_GATEWAY_PORT=str(gw),
        KUSH_ADMIN_PORT=str(adm),
        KUSH_SEED_DEMO_FILM="false",
        KUSH_LOG_LEVEL="WARNING",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "kush", "up", "--workers", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        urls = [f"http://127.0.0.1:{gw}/readyz", f"http://127.0.0.1:{adm}/readyz"]
        while not all(_ready(u) for u in urls):
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "kush up did not become ready"
            time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        text = out.decode()
        assert proc.returncode == 0, text
        for account in (
            "free@demo.kush",
            "basic@demo.kush",
            "premium@demo.kush",
            "admin@demo.kush",
        ):
            assert account in text
        assert f"http://127.0.0.1:{gw}" in text
        assert not _ready(urls[0])
        # the embedded PostgreSQL stopped with it
        deadline = time.monotonic() + 10
        while _postgres_for(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _postgres_for(tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

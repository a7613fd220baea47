"""The operator basics of the ``kush`` command: ``--version``, ``config``, configuration errors."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version

SETTINGS_PREFIXES = ("KUSH_", "DATABASE_URL", "REDIS_URL", "STRIPE_")


def _kush(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m kush`` with only the given settings in its environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(SETTINGS_PREFIXES)}
    return subprocess.run(
        [sys.executable, "-m", "kush", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version() -> None:
    done = _kush("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"kush {version('kush-edge')}"


def test_config_lists_environment_variables_with_secrets_masked() -> None:
    done = _kush(
        "config",
        env={
            "KUSH_MODE": "production",
            "KUSH_MASTER_KEY": "m" * 43,
            "STRIPE_WEBHOOK_SECRET": "whsec_topsecret",
            "DATABASE_URL": "postgresql://kush:pg-pass-123@db.internal/kush",
            "REDIS_URL": "redis://:redis-pass-456@cache.internal:6379/0",
            "KUSH_GATEWAY_PORT": "9090",
        },
    )
    assert done.returncode == 0, done.stderr
    rows = dict(
        line.split(None, 1) if " " in line else (line, "") for line in done.stdout.splitlines()
    )
    assert rows["KUSH_GATEWAY_PORT"] == "9090"
    assert rows["KUSH_MODE"] == "production"
    assert rows["DATABASE_URL"] == "postgresql://kush:********@db.internal/kush"
    assert rows["KUSH_MASTER_KEY"] == "********"
    assert rows["KUSH_COOKIE_SECURE"] == "true"
    assert "gateway_port" not in rows
    for secret in ("m" * 43, "whsec_topsecret", "pg-pass-123", "redis-pass-456"):
        assert secret not in done.stdout


def test_every_configuration_error_on_its_own_line() -> None:
    done = _kush(
        "config",
        env={"KUSH_GATEWAY_PORT": "eighty", "KUSH_LOG_LEVEL": "loud", "KUSH_HOST": "0.0.0.0"},
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert [line.split(":")[2].strip() for line in lines] == [
        "KUSH_LOG_LEVEL",
        "KUSH_GATEWAY_PORT",
        "KUSH_HOST",
    ]
    assert all(line.startswith("kush: configuration error: ") for line in lines)
    assert done.stdout == ""


def test_log_level_in_lower_case() -> None:
    done = _kush("config", env={"KUSH_LOG_LEVEL": "debug"})
    assert done.returncode == 0, done.stderr
    assert "KUSH_LOG_LEVEL               DEBUG" in done.stdout.splitlines()

"""``kush loadtest``: Locust runs headless against a test gateway and writes its report.

The gateway and the admin service run in-process on free loopback ports; `kush loadtest`
creates its accounts (demo mode), runs a handful of users for about ten seconds and must
finish with a report and no failed request.
"""

from __future__ import annotations

import asyncio
import csv
import sys
from pathlib import Path
from typing import Any

import pytest

from admin.app import create_app as create_admin
from gateway.app import create_app
from kush import loadtest
from runtime import db
from runtime.settings import Settings
from tests.conftest import DEMO_PASSWORD, Film

pytestmark = pytest.mark.slow


def _env(settings: Settings, data_dir: Path, gateway_port: int, admin_port: int) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "KUSH_DB_SCHEMA": settings.db_schema,
        "KUSH_REDIS_PREFIX": settings.redis_prefix,
        "KUSH_MASTER_KEY": settings.master_key or "",
        "KUSH_DEMO_PASSWORD": DEMO_PASSWORD,
        "KUSH_DATA_DIR": str(data_dir),
        "KUSH_GATEWAY_PORT": str(gateway_port),
        "KUSH_ADMIN_PORT": str(admin_port),
        "KUSH_LOG_LEVEL": "WARNING",
    }


async def _kush(env: dict[str, str], *args: str, limit_s: float = 240) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kush",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_kush_loadtest_writes_a_report_with_no_failures(
    play_settings: Settings, film: Film, aiohttp_server: Any, tmp_path: Path
) -> None:
    gateway = await aiohttp_server(create_app(play_settings))
    admin = await aiohttp_server(create_admin(play_settings))
    env = _env(play_settings, tmp_path / "data", gateway.port, admin.port)
    report = tmp_path / "report"
    code, out = await _kush(
        env,
        "loadtest",
        "--users",
        "4",
        "--spawn-rate",
        "4",
        "--run-time",
        "10s",
        "--movie",
        film.movie_id,
        "--report",
        str(report),
    )
    assert code == 0, out
    assert (report / "report.html").stat().st_size > 0
    with (report / "kush_stats.csv").open(newline="") as fh:
        rows = {row["Name"]: row for row in csv.DictReader(fh)}
    total = rows["Aggregated"]
    assert int(total["Request Count"]) > 0
    assert int(total["Failure Count"]) == 0, (report / "kush_failures.csv").read_text()
    for name in (
        "/v1/auth/login",
        "/v1/playback/[movie]",
        "/hls/[movie]/master.m3u8",
        "/hls/[movie]/[rendition]/index.m3u8",
        loadtest.SEGMENT_NAME,
        "time to first segment",
    ):
        assert int(rows[name]["Request Count"]) > 0, name
    assert "report:" in out


async def test_create_users_in_bulk(
    play_settings: Settings, aiohttp_server: Any, tmp_path: Path
) -> None:
    env = _env(play_settings, tmp_path / "data", 1, 2)
    code, out = await _kush(env, "loadtest", "--create-users", "25", limit_s=120)
    assert code == 0, out
    assert "load-test accounts: " in out
    conn = await db.connect(play_settings)
    try:
        rows = await conn.fetch(
            """SELECT u.email, coalesce(s.plan_id, 'free') AS plan
                 FROM users u LEFT JOIN subscriptions s
                   ON s.user_id = u.id AND s.status = 'active'
                WHERE u.email LIKE 'load-%@loadtest.kush'"""
        )
    finally:
        await conn.close()
    plans = {row["email"]: row["plan"] for row in rows}
    assert len(plans) >= 25
    assert plans[loadtest.email_of(0)] == "free"
    assert plans[loadtest.email_of(6)] == "basic"
    assert plans[loadtest.email_of(9)] == "premium"
    # twice is fine: the same accounts, refreshed
    code, out = await _kush(env, "loadtest", "--create-users", "25", limit_s=120)
    assert code == 0, out


async def test_loadtest_refuses_when_nothing_answers(
    play_settings: Settings, tmp_path: Path
) -> None:
    from tests.integration.helpers import free_port

    env = _env(play_settings, tmp_path / "data", free_port(), free_port())
    code, out = await _kush(env, "loadtest", "--run-time", "5s", limit_s=60)
    assert code == 2
    assert "nothing answers" in out

"""``kush users create``: the first production admin without SQL."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator

import asyncpg
import pytest

from runtime import db
from runtime.settings import Settings
from tests.integration.helpers import PASSWORD
from tokens.passwords import verify_password


@pytest.fixture
def schema_settings(settings: Settings) -> Iterator[Settings]:
    """A schema of its own, dropped afterwards (the command migrates it)."""
    own = dataclasses.replace(settings, db_schema=f"kush_users_{secrets.token_hex(4)}")
    yield own

    async def drop() -> None:
        conn = await asyncpg.connect(settings.database_url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{own.db_schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


def _kush(
    settings: Settings, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "KUSH_DB_SCHEMA": settings.db_schema,
        "KUSH_DATA_DIR": str(settings.data_dir),
        "KUSH_LOG_LEVEL": "WARNING",
    }
    return subprocess.run(
        [sys.executable, "-m", "kush", "users", "create", *args],
        env=env,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def _account(settings: Settings, email: str) -> dict[str, object]:
    conn = await db.connect(settings)
    try:
        user = await conn.fetchrow(
            "SELECT id, role, password_hash FROM users WHERE email = $1", email
        )
        assert user is not None
        subs = await conn.fetch(
            "SELECT plan_id, status, provider FROM subscriptions WHERE user_id = $1", user["id"]
        )
        audits = await conn.fetch(
            "SELECT action, details::text FROM audit_log WHERE target_id = $1 ORDER BY id",
            str(user["id"]),
        )
    finally:
        await conn.close()
    return {
        "id": str(user["id"]),
        "role": user["role"],
        "hash": user["password_hash"],
        "subs": [tuple(r) for r in subs],
        "audits": [r["action"] for r in audits],
    }


async def test_create_admin_with_password_from_stdin(schema_settings: Settings) -> None:
    done = _kush(
        schema_settings,
        "Boss@Example.UG",
        "--role",
        "admin",
        "--plan",
        "premium",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert done.returncode == 0, done.stderr
    account = await _account(schema_settings, "boss@example.ug")
    assert account["role"] == "admin"
    assert verify_password(str(account["hash"]), PASSWORD)
    assert account["subs"] == [("premium", "active", "admin")]
    assert account["audits"] == ["user.create"]
    assert f"created boss@example.ug (id {account['id']}) role=admin plan=premium" in done.stdout
    assert PASSWORD not in done.stdout + done.stderr

    again = _kush(
        schema_settings, "boss@example.ug", "--role", "user", "--password-stdin", stdin="x"
    )
    assert again.returncode == 1
    assert "exists" in again.stderr
    assert "Traceback" not in again.stderr

    demoted = _kush(schema_settings, "boss@example.ug", "--role", "moderator", "--update-role")
    assert demoted.returncode == 0, demoted.stderr
    account = await _account(schema_settings, "boss@example.ug")
    assert account["role"] == "moderator"
    assert verify_password(str(account["hash"]), PASSWORD)  # untouched
    assert account["subs"] == [("premium", "active", "admin")]
    assert account["audits"] == ["user.create", "user.role_update"]


async def test_generated_password_is_printed_once_and_works(schema_settings: Settings) -> None:
    done = _kush(schema_settings, "ops@example.ug", "--role", "moderator")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("password: ")]
    assert len(lines) == 1
    generated = lines[0].removeprefix("password: ")
    account = await _account(schema_settings, "ops@example.ug")
    assert verify_password(str(account["hash"]), generated)
    assert account["role"] == "moderator"
    assert account["subs"] == []  # free: no subscription row


@pytest.mark.parametrize(
    ("args", "stdin", "status", "message"),
    [
        (["not-an-email", "--role", "admin", "--password-stdin"], PASSWORD, 1, "e-mail"),
        (["weak@example.ug", "--role", "admin", "--password-stdin"], "short", 1, "password"),
        (["x@example.ug", "--role", "root", "--password-stdin"], PASSWORD, 2, "invalid choice"),
        (["x@example.ug", "--role", "user", "--plan", "gold"], None, 2, "invalid choice"),
    ],
)
def test_bad_input_is_a_clear_error(
    schema_settings: Settings, args: list[str], stdin: str | None, status: int, message: str
) -> None:
    done = _kush(schema_settings, *args, stdin=stdin)
    assert done.returncode == status
    assert message in done.stderr.lower()
    assert "Traceback" not in done.stderr

"""Property-based API drill (issue 10): schemathesis generates requests from both OpenAPI
documents and sends them to the real services running on loopback; no answer may be a
500, and every answer must match its documented schema.

The services run as ``kush gateway`` / ``kush admin`` subprocesses against this run's
schema and Redis prefix, signed in as the demo admin, so authenticated routes are
exercised past their 401. Examples per operation: ``KUSH_API_FUZZ_EXAMPLES`` (default
8).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from kush.seed import seed_demo_accounts
from runtime import db
from runtime.settings import Settings
from tests.conftest import DEMO_PASSWORD
from tests.integration.helpers import free_port

EXAMPLES = int(os.environ.get("KUSH_API_FUZZ_EXAMPLES", "8"))
CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
)
pytestmark = pytest.mark.slow


def _env(s: Settings, gateway_port: int, admin_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUSH_", "STRIPE_"))}
    env.update(
        {
            "KUSH_MODE": "demo",
            "DATABASE_URL": s.database_url or "",
            "REDIS_URL": s.redis_url or "",
            "KUSH_DB_SCHEMA": s.db_schema,
            "KUSH_REDIS_PREFIX": s.redis_prefix,
            "KUSH_MASTER_KEY": s.master_key or "",
            "KUSH_DATA_DIR": str(s.data_dir),
            "KUSH_GATEWAY_PORT": str(gateway_port),
            "KUSH_ADMIN_PORT": str(admin_port),
            "KUSH_LOG_FORMAT": "text",
            "KUSH_LOG_LEVEL": "WARNING",
            # the drill sends thousands of requests from one address and account
            "KUSH_LOGIN_FREE_FAILURES": "1000",
            "KUSH_REGISTER_LIMIT_PER_HOUR": "100000",
            "KUSH_PLAYBACK_STARTS_PER_MINUTE": "100000",
        }
    )
    return env


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}")
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not start")


@dataclasses.dataclass(frozen=True)
class Services:
    gateway: str
    admin: str
    token: str


@pytest.fixture(scope="module")
def services(base_settings: Settings) -> Iterator[Services]:
    async def seed() -> None:
        conn = await db.connect(base_settings)
        try:
            await seed_demo_accounts(conn, DEMO_PASSWORD)
        finally:
            await conn.close()

    asyncio.run(seed())
    gw_port, admin_port = free_port(), free_port()
    env = _env(base_settings, gw_port, admin_port)
    procs = [
        subprocess.Popen([sys.executable, "-m", "kush", "gateway", "--workers", "1"], env=env),
        subprocess.Popen([sys.executable, "-m", "kush", "admin"], env=env),
    ]
    gateway, admin = f"http://127.0.0.1:{gw_port}", f"http://127.0.0.1:{admin_port}"
    try:
        _wait_ready(gateway, procs[0])
        _wait_ready(admin, procs[1])
        login = requests.post(
            gateway + "/v1/auth/login",
            json={"email": "admin@demo.kush", "password": DEMO_PASSWORD},
            timeout=10,
        )
        login.raise_for_status()
        yield Services(gateway, admin, login.json()["access_token"])
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _document(base: str, path: str) -> dict[str, Any]:
    return dict(requests.get(base + path, timeout=10).json())


def _fuzz_operation(
    base: str, operation: Any, token: str, failures: list[str], calls: list[int]
) -> None:
    label = operation.label

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy())
    def check(case: Any) -> None:
        response = case.call(base_url=base, headers={"Authorization": f"Bearer {token}"})
        calls.append(response.status_code)
        try:
            case.validate_response(response, checks=CHECKS)
        except Exception as err:
            failures.append(f"{label}: {type(err).__name__}: {str(err)[:400]}")

    check()


def _run(base: str, document: dict[str, Any], token: str) -> tuple[list[str], list[int]]:
    """Every operation, a few generated examples each; returns the failures and the
    statuses of every call made."""
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    calls: list[int] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        _fuzz_operation(base, operation, token, failures, calls)
    return failures, calls


def test_gateway_api_never_500_and_matches_its_document(services: Services) -> None:
    document = _document(services.gateway, "/v1/openapi.json")
    failures, calls = _run(services.gateway, document, services.token)
    assert failures == []
    operations = sum(len(item) for item in document["paths"].values())
    assert len(calls) >= operations  # every operation was called
    assert 500 not in calls


def test_admin_api_never_500_and_matches_its_document(services: Services) -> None:
    document = _document(services.admin, "/admin/v1/openapi.json")
    failures, calls = _run(services.admin, document, services.token)
    assert failures == []
    operations = sum(len(item) for item in document["paths"].values())
    assert len(calls) >= operations  # every operation was called
    assert 500 not in calls

"""Admin ad inventory API: role checks, validation, campaigns, policies, report."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient

from admin.app import create_app as create_admin
from gateway.app import create_app as create_gateway
from runtime.settings import Settings
from runtime.web import pg_key
from tests.integration.conftest import DEMO_PASSWORD
from tests.integration.helpers import bearer, register_and_login


@pytest.fixture
async def gateway(play_settings: Settings, aiohttp_client) -> TestClient:
    return await aiohttp_client(create_gateway(play_settings))


@pytest.fixture
async def admin(play_settings: Settings, aiohttp_client) -> TestClient:
    return await aiohttp_client(create_admin(play_settings))


async def admin_token(gateway: TestClient) -> str:
    resp = await gateway.post(
        "/v1/auth/login", json={"email": "admin@demo.kush", "password": DEMO_PASSWORD}
    )
    return str((await resp.json())["access_token"])


def flight() -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "starts_at": (now - timedelta(days=1)).isoformat(),
        "ends_at": (now + timedelta(days=30)).isoformat(),
    }


async def test_every_route_is_role_checked(gateway: TestClient, admin: TestClient) -> None:
    user = (await register_and_login(gateway))["access_token"]
    routes = [
        ("POST", "/admin/v1/ads"),
        ("GET", "/admin/v1/ads"),
        ("POST", "/admin/v1/campaigns"),
        ("GET", "/admin/v1/campaigns"),
        ("PUT", "/admin/v1/break-policies/default"),
        ("GET", "/admin/v1/reports/ads"),
    ]
    for method, path in routes:
        resp = await admin.request(method, path, json={})
        assert resp.status == 401, path
        resp = await admin.request(method, path, json={}, headers=bearer(user))
        assert resp.status == 403, path
        assert (await resp.json())["error"]["code"] == "forbidden_role"


async def test_ads_and_campaigns(gateway: TestClient, admin: TestClient) -> None:
    auth = bearer(await admin_token(gateway))
    resp = await admin.post("/admin/v1/ads", json={"name": "Airtel bundles"}, headers=auth)
    assert resp.status == 201
    ad = await resp.json()
    assert ad["status"] == "draft"
    for bad in (
        {"name": ""},
        {"name": "x", "click_url": "javascript:alert(1)"},
        {"name": "x", "generate_seconds": 1000},
    ):
        resp = await admin.post("/admin/v1/ads", json=bad, headers=auth)
        assert resp.status in {400, 422}, bad
    campaign = {
        "name": "Launch",
        "weight": 5,
        "target_plans": ["free"],
        "daily_cap": 100,
        "frequency_cap_per_day": 2,
        "target_regions": ["Central Region"],
        "ad_ids": [ad["id"]],
        **flight(),
    }
    resp = await admin.post("/admin/v1/campaigns", json=campaign, headers=auth)
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    assert created["ad_ids"] == [ad["id"]]
    assert created["frequency_cap_per_day"] == 2
    assert created["target_regions"] == ["Central Region"]
    bad_flight = {**campaign, "ends_at": campaign["starts_at"]}
    assert (await admin.post("/admin/v1/campaigns", json=bad_flight, headers=auth)).status == 422
    unknown = {**campaign, "ad_ids": ["00000000-0000-0000-0000-000000000000"]}
    assert (await admin.post("/admin/v1/campaigns", json=unknown, headers=auth)).status == 422
    resp = await admin.patch(
        f"/admin/v1/campaigns/{created['id']}", json={"status": "paused"}, headers=auth
    )
    assert (await resp.json())["status"] == "paused"
    listing = await (await admin.get("/admin/v1/campaigns", headers=auth)).json()
    assert any(c["id"] == created["id"] for c in listing["items"])


async def test_break_policy_and_report(gateway: TestClient, admin: TestClient) -> None:
    auth = bearer(await admin_token(gateway))
    resp = await admin.put(
        "/admin/v1/break-policies/default",
        json={"preroll": True, "midroll_every_s": 30},
        headers=auth,
    )
    assert resp.status == 422  # mid-rolls more often than every minute are refused
    err = (await resp.json())["error"]
    assert err["code"] == "invalid_request"
    assert [f["path"] for f in err["fields"]] == ["midroll_every_s"]
    resp = await admin.put(
        "/admin/v1/break-policies/default",
        json={"preroll": True, "midroll_every_s": 60, "max_ads_per_pod": 1},
        headers=auth,
    )
    assert resp.status == 200
    resp = await admin.get("/admin/v1/reports/ads?from=2026-13-01", headers=auth)
    assert resp.status == 422
    assert [f["path"] for f in (await resp.json())["error"]["fields"]] == ["from"]
    resp = await admin.get("/admin/v1/reports/ads", headers=auth)
    assert resp.status == 200
    assert isinstance((await resp.json())["items"], list)


async def test_openapi_describes_every_admin_route(admin: TestClient) -> None:
    resp = await admin.get("/admin/v1/openapi.json")
    spec = await resp.json()
    assert spec["openapi"].startswith("3.")
    routes = {
        r.canonical
        for r in admin.app.router.resources()
        # the API, and the Stripe webhook (signed by Stripe, outside /admin/v1/)
        if r.canonical.startswith(("/admin/v1/", "/billing/"))
        and r.canonical != "/admin/v1/openapi.json"
    }
    assert routes == set(spec["paths"])


@pytest.mark.slow
async def test_generated_creative_becomes_ready(gateway: TestClient, admin: TestClient) -> None:
    auth = bearer(await admin_token(gateway))
    resp = await admin.post(
        "/admin/v1/ads", json={"name": "Generated", "generate_seconds": 6}, headers=auth
    )
    assert resp.status == 201
    ad = await resp.json()
    assert ad["status"] == "processing"
    async with asyncio.timeout(180):
        while ad["status"] == "processing":
            await asyncio.sleep(0.5)
            ad = await (await admin.get(f"/admin/v1/ads/{ad['id']}", headers=auth)).json()
    assert ad["status"] == "ready"
    assert ad["duration_s"] == pytest.approx(6, abs=0.5)


@pytest.mark.slow
async def test_generation_holds_no_connection_and_is_bounded(
    gateway: TestClient, play_settings: Settings, aiohttp_client
) -> None:
    """Encodes run one at a time (KUSH_ADMIN_MAX_ENCODES=1) and hold no database
    connection while ffmpeg runs: with a pool of 2, three encodes in flight must leave
    the pool free for the admin's other requests."""
    small = dataclasses.replace(play_settings, db_pool_size=2, admin_max_encodes=1)
    admin: TestClient = await aiohttp_client(create_admin(small))
    auth = bearer(await admin_token(gateway))
    ids = []
    for i in range(3):
        resp = await admin.post(
            "/admin/v1/ads", json={"name": f"Bulk {i}", "generate_seconds": 5}, headers=auth
        )
        assert resp.status == 201
        ids.append((await resp.json())["id"])
    pool = admin.app[pg_key]
    in_use_while_busy: list[int] = []
    async with asyncio.timeout(300):
        while True:
            statuses = [
                (await (await admin.get(f"/admin/v1/ads/{i}", headers=auth)).json())["status"]
                for i in ids
            ]
            busy = statuses.count("processing")
            if busy >= 2:
                in_use_while_busy.append(pool.get_size() - pool.get_idle_size())
            if busy == 0:
                break
            await asyncio.sleep(0.2)
    assert statuses == ["ready"] * 3
    assert in_use_while_busy, "the encodes finished before they could be observed"
    assert max(in_use_while_busy) <= 1, in_use_while_busy

"""Data (issue 15): bytes metered per session and shown within seconds, the data saver
from the account setting or ``Save-Data: on`` (360p cap, smallest rendition first, a
lighter ad load), rendition size estimates, and the admin usage report."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from admin.app import create_app as create_admin
from gateway.app import create_app as create_gateway
from runtime.settings import Settings
from tests.conftest import AdFilm, Film
from tests.integration.catalogue_support import Account, demo_admin, login, new_account
from tests.integration.conftest import DEMO_PASSWORD
from tests.integration.playing import local, uris

FRESH_WITHIN_S = 15.0


@pytest.fixture
async def gateway(play_settings: Settings, aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(create_gateway(play_settings))


@pytest.fixture
async def admin(play_settings: Settings, aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(create_admin(play_settings))


async def play(gateway: TestClient, who: Account, movie_id: str, **headers: str) -> Any:
    resp = await gateway.post(f"/v1/playback/{movie_id}", headers={**who.auth, **headers})
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def master_heights(gateway: TestClient, manifest_url: str) -> list[str]:
    resp = await gateway.get(local(manifest_url))
    assert resp.status == 200
    return [uri.split("/")[0] for uri in uris(await resp.text()) if "index.m3u8" in uri]


async def usage(gateway: TestClient, who: Account, **params: str) -> Any:
    resp = await gateway.get("/v1/me/usage", headers=who.auth, params=params)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Cache-Control"] == "no-store"
    return await resp.json()


async def watch_a_bit(gateway: TestClient, manifest_url: str, segments: int = 2) -> int:
    """Fetch the master, the first variant's playlist and a few segments; the bytes."""
    total = 0
    resp = await gateway.get(local(manifest_url))
    master = await resp.text()
    total += len(master.encode())
    variant = uris(master)[0]
    root = local(manifest_url).split("?")[0].rsplit("/", 1)[0]
    resp = await gateway.get(f"{root}/{variant}")
    media = await resp.text()
    total += len(media.encode())
    rendition = variant.split("/")[0]
    for uri in uris(media)[:segments]:
        resp = await gateway.get(f"{root}/{rendition}/{uri}")
        assert resp.status == 200
        total += len(await resp.read())
    return total


async def test_usage_is_fresh_within_seconds_of_the_bytes(
    gateway: TestClient, pg: asyncpg.Connection, film: Film
) -> None:
    viewer = await new_account(gateway, pg)
    assert await usage(gateway, viewer) == {
        "from": datetime.now(UTC).date().replace(day=1).isoformat(),
        "to": datetime.now(UTC).date().isoformat(),
        "total_bytes": 0,
        "items": [],
    }
    started = await play(gateway, viewer, film.movie_id)
    delivered = await watch_a_bit(gateway, started["manifest_url"])
    deadline = time.monotonic() + FRESH_WITHIN_S
    body = await usage(gateway, viewer)
    while body["total_bytes"] < delivered and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        body = await usage(gateway, viewer)
    assert body["total_bytes"] == delivered
    assert [(i["movie_id"], i["bytes"], i["sessions"]) for i in body["items"]] == [
        (film.movie_id, delivered, 1)
    ]
    # in PostgreSQL, one row for the session and day, not one per segment
    rows = await pg.fetch(
        "SELECT session_id, bytes, edge_bytes FROM data_usage WHERE user_id = $1",
        uuid.UUID(viewer.id),
    )
    assert [(r["session_id"], r["bytes"], r["edge_bytes"]) for r in rows] == [
        (started["session_id"], delivered, 0)
    ]
    # a data access request includes it
    export = await (await gateway.get("/v1/me/export", headers=viewer.auth)).json()
    assert [(u["session_id"], u["movie_id"], u["bytes"]) for u in export["data_usage"]] == [
        (started["session_id"], film.movie_id, delivered)
    ]
    # a second session of the same film adds to it
    resp = await gateway.delete(f"/v1/playback/{started['session_id']}", headers=viewer.auth)
    assert resp.status == 204
    again = await play(gateway, viewer, film.movie_id)
    more = await watch_a_bit(gateway, again["manifest_url"], segments=1)
    deadline = time.monotonic() + FRESH_WITHIN_S
    body = await usage(gateway, viewer)
    while body["total_bytes"] < delivered + more and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        body = await usage(gateway, viewer)
    assert [(i["bytes"], i["sessions"]) for i in body["items"]] == [(delivered + more, 2)]
    # another range: nothing then
    past = await usage(gateway, viewer, **{"from": "2025-01-01", "to": "2025-01-31"})
    assert (past["total_bytes"], past["items"]) == (0, [])
    resp = await gateway.get(
        "/v1/me/usage", headers=viewer.auth, params={"from": "2026-02-01", "to": "2026-01-01"}
    )
    assert resp.status == 422


async def test_save_data_header_caps_at_360p_smallest_first(
    gateway: TestClient, pg: asyncpg.Connection, film: Film
) -> None:
    premium = await login(gateway, "premium@demo.kush", DEMO_PASSWORD)
    normal = await play(gateway, premium, film.movie_id)
    assert normal["data_saver"] is False
    assert set(normal["renditions"]) == {"1080p", "720p", "480p", "360p"}
    assert (await master_heights(gateway, normal["manifest_url"]))[0] == "480p"
    saver = await play(gateway, premium, film.movie_id, **{"Save-Data": "on"})
    assert saver["data_saver"] is True
    assert saver["renditions"] == ["360p"]
    assert await master_heights(gateway, saver["manifest_url"]) == ["360p"]
    # a rendition above the cap is refused even with a valid-looking path
    seg = local(saver["manifest_url"]).replace("master.m3u8", "480p/index.m3u8")
    assert (await gateway.get(seg)).status == 403
    for body in (normal, saver):
        resp = await gateway.delete(f"/v1/playback/{body['session_id']}", headers=premium.auth)
        assert resp.status == 204


async def test_the_account_setting_makes_every_session_a_data_saver_one(
    gateway: TestClient, pg: asyncpg.Connection, film: Film
) -> None:
    viewer = await new_account(gateway, pg)
    me = await (await gateway.get("/v1/me", headers=viewer.auth)).json()
    assert me["data_saver"] is False
    resp = await gateway.patch("/v1/me", json={"data_saver": True}, headers=viewer.auth)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["data_saver"] is True
    # other changes leave it alone
    resp = await gateway.patch("/v1/me", json={"display_name": "Okello"}, headers=viewer.auth)
    assert (await resp.json())["data_saver"] is True
    saver = await play(gateway, viewer, film.movie_id)
    assert (saver["data_saver"], saver["renditions"]) == (True, ["360p"])
    await gateway.delete(f"/v1/playback/{saver['session_id']}", headers=viewer.auth)
    resp = await gateway.patch("/v1/me", json={"data_saver": False}, headers=viewer.auth)
    assert (await resp.json())["data_saver"] is False
    normal = await play(gateway, viewer, film.movie_id)
    assert (normal["data_saver"], sorted(normal["renditions"])) == (False, ["360p", "480p"])
    resp = await gateway.patch("/v1/me", json={"data_saver": "yes please"}, headers=viewer.auth)
    assert resp.status == 422


async def _pods(pg: asyncpg.Connection, session_id: str) -> list[float]:
    plan = await pg.fetchval("SELECT ad_plan FROM playback_sessions WHERE id = $1", session_id)
    if plan is None:
        return []
    data = plan if isinstance(plan, dict) else json.loads(plan)
    return [float(p["at_s"]) for p in data["pods"]]


async def test_the_data_saver_gets_one_short_preroll_and_no_midroll(
    gateway: TestClient, pg: asyncpg.Connection, ad_film: AdFilm
) -> None:
    normal = await play(gateway, await new_account(gateway, pg), ad_film.movie_id)
    assert normal["ads"] is True
    assert await _pods(pg, normal["session_id"]) == [0.0, 6.0]  # pre-roll, cue at 6 s
    saver = await play(
        gateway, await new_account(gateway, pg), ad_film.movie_id, **{"Save-Data": "on"}
    )
    assert (saver["ads"], saver["data_saver"]) == (True, True)
    assert await _pods(pg, saver["session_id"]) == [0.0]


async def test_movie_detail_estimates_megabytes_per_rendition(
    gateway: TestClient, film: Film
) -> None:
    resp = await gateway.get(f"/v1/movies/{film.movie_id}")
    assert resp.status == 200
    body = await resp.json()
    sizes = body["renditions"]
    assert [r["name"] for r in sizes] == ["360p", "480p", "720p", "1080p"]
    for r in sizes:
        expected = round(r["bandwidth"] * body["duration_s"] / 8 / 1_000_000, 1)
        assert r["megabytes"] == expected
    assert sizes[0]["height"] == 360
    assert sizes[0]["megabytes"] > 0


async def test_admin_usage_report_is_for_admins_and_moderators(
    gateway: TestClient, admin: TestClient, pg: asyncpg.Connection, film: Film
) -> None:
    viewer = await new_account(gateway, pg)
    started = await play(gateway, viewer, film.movie_id)
    delivered = await watch_a_bit(gateway, started["manifest_url"], segments=1)
    today = datetime.now(UTC).date().isoformat()
    params = {"from": today, "to": today}
    # no usage read settles anything here: the gateway's background writer delivers it
    boss = await demo_admin(gateway)
    deadline = time.monotonic() + FRESH_WITHIN_S
    query = "SELECT coalesce(sum(bytes), 0) FROM data_usage WHERE session_id = $1"
    written = await pg.fetchval(query, started["session_id"])
    while written < delivered and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        written = await pg.fetchval(query, started["session_id"])
    assert written == delivered
    resp = await admin.get("/admin/v1/reports/usage", params=params, headers=viewer.auth)
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "forbidden_role"
    assert (await admin.get("/admin/v1/reports/usage")).status == 401
    moderator = await new_account(gateway, pg, role="moderator")
    for reader in (boss, moderator):
        resp = await admin.get("/admin/v1/reports/usage", params=params, headers=reader.auth)
        assert resp.status == 200, await resp.text()
        report = await resp.json()
        rows = [r for r in report["items"] if r["movie_id"] == film.movie_id]
        assert len(rows) == 1
        assert rows[0]["day"] == today
        assert rows[0]["bytes"] >= delivered
        assert rows[0]["sessions"] >= 1
        assert rows[0]["viewers"] >= 1
        assert report["total_bytes"] >= delivered
    resp = await admin.get(
        "/admin/v1/reports/usage",
        params={"from": "2026-02-01", "to": "2026-01-01"},
        headers=boss.auth,
    )
    assert resp.status == 422

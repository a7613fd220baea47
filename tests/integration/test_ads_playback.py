"""Server-side ad insertion end to end: free viewers get a pre-roll and a mid-roll,
paid viewers none; players decode across the breaks; events are counted exactly once."""

from __future__ import annotations

import asyncio
import re

import pytest
from aiohttp.test_utils import TestClient

from admin.app import create_app as create_admin
from gateway.ads.inventory import Inventory
from gateway.ads.writer import drain_once, ensure_group
from gateway.app import create_app
from gateway.keys import playback_key
from runtime import db
from runtime.redis import Keys
from runtime.settings import Settings
from tests.conftest import DEMO_PASSWORD, AdFilm
from tests.integration.helpers import bearer, ffmpeg_reads, register_and_login
from tests.integration.test_playback import local, login, start, uris


@pytest.fixture
async def client(play_settings: Settings, aiohttp_client) -> TestClient:
    return await aiohttp_client(create_app(play_settings))


async def _media(client: TestClient, movie_id: str, manifest_url: str) -> dict[str, str]:
    master = await (await client.get(local(manifest_url))).text()
    out = {}
    for variant in uris(master):
        out[variant.split("/")[0]] = await (await client.get(f"/hls/{movie_id}/{variant}")).text()
    return out


def _shape(playlist: str) -> list[str]:
    """The pod structure of a playlist: ad/content segment kinds and their durations."""
    shape, pending = [], ""
    for line in playlist.splitlines():
        if line == "#EXT-X-DISCONTINUITY":
            shape.append("|")
        elif line.startswith("#EXT-X-DATERANGE") and "com.kushfilms.ad" in line:
            shape.append("AD[" + re.search(r"DURATION=([\d.]+)", line)[1] + "]")  # type: ignore[index]
        elif line.startswith("#EXTINF"):
            pending = line.split(":")[1].split(",")[0]
        elif line and not line.startswith("#"):
            shape.append(("a" if line.startswith("/hls/ads/") else "c") + pending)
    return shape


async def test_free_gets_aligned_pre_and_mid_rolls_premium_none(
    client: TestClient, ad_film: AdFilm
) -> None:
    free = (await register_and_login(client))["access_token"]
    body = await (await start(client, free, ad_film.movie_id)).json()
    assert body["ads"] is True
    media = await _media(client, ad_film.movie_id, body["manifest_url"])
    shapes = {name: _shape(text) for name, text in media.items()}
    reference = next(iter(shapes.values()))
    assert all(shape == reference for shape in shapes.values()), shapes
    assert sum(1 for s in reference if s.startswith("AD[")) == 2  # pre-roll and mid-roll
    assert reference[0].startswith("AD[")
    one = next(iter(media.values()))
    assert "#EXT-X-CUE-OUT" not in one
    target = int(re.search(r"#EXT-X-TARGETDURATION:(\d+)", one)[1])  # type: ignore[index]
    assert all(round(float(d)) <= target for d in re.findall(r"#EXTINF:([\d.]+)", one))
    # every URI works, ad segments included
    for name, text in media.items():
        for uri in uris(text):
            path = uri if uri.startswith("/") else f"/hls/{ad_film.movie_id}/{name}/{uri}"
            assert (await client.get(path)).status == 200, path
    premium = await login(client, "premium")
    p = await (await start(client, premium, ad_film.movie_id)).json()
    assert p["ads"] is False
    assert all(
        "com.kushfilms.ad" not in t
        for t in (await _media(client, ad_film.movie_id, p["manifest_url"])).values()
    )
    await client.delete(f"/v1/playback/{p['session_id']}", headers=bearer(premium))


@pytest.mark.slow
async def test_ffmpeg_decodes_across_the_breaks(client: TestClient, ad_film: AdFilm) -> None:
    free = (await register_and_login(client))["access_token"]
    body = await (await start(client, free, ad_film.movie_id)).json()
    assert body["ads"] is True
    await ffmpeg_reads(body["manifest_url"])


async def test_events_counted_exactly_once_and_reported(
    client: TestClient, ad_film: AdFilm, play_settings: Settings, aiohttp_client
) -> None:
    free = (await register_and_login(client))["access_token"]
    body = await (await start(client, free, ad_film.movie_id)).json()
    session_id = body["session_id"]
    media = await _media(client, ad_film.movie_id, body["manifest_url"])
    name, text = next(iter(media.items()))
    segments = [
        u if u.startswith("/") else f"/hls/{ad_film.movie_id}/{name}/{u}" for u in uris(text)
    ]
    keys = Keys(play_settings.redis_prefix)
    pool = await db.create_pool(play_settings)
    app = client.app
    from runtime.web import redis_key

    redis = app[redis_key]
    try:
        await ensure_group(redis, keys)
        for _ in range(2):  # the player refetches everything: nothing counts twice
            for path in segments:
                assert (await client.get(path)).status == 200
            await drain_once(pool, redis, keys, "test-writer", claim_idle_ms=0, block_ms=10)
        rows = await pool.fetch(
            "SELECT pod_index, event, count(*) AS n FROM ad_events WHERE session_id = $1 "
            "GROUP BY 1, 2 ORDER BY 1, 2",
            session_id,
        )
        got = {(r["pod_index"], r["event"]): r["n"] for r in rows}
        for pod in (0, 1):
            for event in (
                "impression",
                "first_quartile",
                "midpoint",
                "third_quartile",
                "complete",
                "confirmed_impression",
            ):
                assert got.get((pod, event)) == 1, (pod, event, got)
    finally:
        await pool.close()
    admin_client: TestClient = await aiohttp_client(create_admin(play_settings))
    resp = await client.post(
        "/v1/auth/login", json={"email": "admin@demo.kush", "password": DEMO_PASSWORD}
    )
    admin_token = (await resp.json())["access_token"]
    report = await (
        await admin_client.get("/admin/v1/reports/ads", headers=bearer(admin_token))
    ).json()
    mine = [i for i in report["items"] if i["campaign_id"] == ad_film.campaign_id]
    assert sum(i["impressions"] for i in mine) >= 2
    assert sum(i["confirmed_impressions"] for i in mine) >= 2


async def test_frequency_cap_across_sessions(client: TestClient, ad_film: AdFilm) -> None:
    viewer = (await register_and_login(client))["access_token"]
    first = await (await start(client, viewer, ad_film.movie_id)).json()
    assert first["ads"] is True  # two ads of the campaign: its daily cap of 2 is used up
    await client.delete(f"/v1/playback/{first['session_id']}", headers=bearer(viewer))
    second = await (await start(client, viewer, ad_film.movie_id)).json()
    assert second["ads"] is False
    await client.delete(f"/v1/playback/{second['session_id']}", headers=bearer(viewer))


async def _fallbacks(client: TestClient, reason: str) -> float:
    text = await (await client.get("/metrics")).text()
    found = re.search(rf'kush_ads_fallback_total\{{reason="{reason}"\}} ([\d.e+]+)', text)
    return float(found[1]) if found else 0.0


async def test_missing_creative_means_no_ads_not_a_broken_film(
    client: TestClient, ad_film: AdFilm, play_settings: Settings, aiohttp_client
) -> None:
    """Ads are best effort: a creative gone from the origin is dropped (counted in
    kush_ads_fallback_total) and the film plays, whether it vanished before the session
    started or after."""
    ad_dir = play_settings.origin_root / "ads" / ad_film.ad_id
    hidden = ad_dir.with_name(ad_film.ad_id + ".hidden")
    viewer = (await register_and_login(client))["access_token"]
    started = await (await start(client, viewer, ad_film.movie_id)).json()
    assert started["ads"] is True
    ad_dir.rename(hidden)
    try:
        # a session that planned the ad, served by a worker that never read the creative
        other: TestClient = await aiohttp_client(create_app(play_settings))
        media = await _media(other, ad_film.movie_id, started["manifest_url"])
        assert media
        assert all("com.kushfilms.ad" not in text for text in media.values())
        assert all("#EXTINF" in text for text in media.values())
        assert await _fallbacks(other, "creative_unavailable") >= 1
        # a new session while the creative is missing: no ads promised, film plays
        fresh = (await register_and_login(other))["access_token"]
        resp = await start(other, fresh, ad_film.movie_id)
        assert resp.status == 201
        body = await resp.json()
        assert body["ads"] is False
        media = await _media(other, ad_film.movie_id, body["manifest_url"])
        assert all("com.kushfilms.ad" not in text for text in media.values())
    finally:
        hidden.rename(ad_dir)


async def test_ad_decision_failure_still_starts_playback(
    client: TestClient, ad_film: AdFilm, play_settings: Settings
) -> None:
    """An error while deciding ads (here: the inventory's database pool is closed)
    starts the session without ads instead of failing it."""
    pb = client.app[playback_key]
    closed = await db.create_pool(play_settings)
    await closed.close()
    pb.inventory = Inventory(closed, pb.redis, pb.keys)
    viewer = (await register_and_login(client))["access_token"]
    resp = await start(client, viewer, ad_film.movie_id)
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["ads"] is False
    assert await _fallbacks(client, "decision_failed") >= 1


async def test_concurrent_requests_compile_a_stitched_playlist_once(
    ad_film: AdFilm, play_settings: Settings, aiohttp_client
) -> None:
    """Stitching runs off the event loop and concurrent requests for the same playlist
    share one compile."""
    client: TestClient = await aiohttp_client(create_app(play_settings))
    viewer = (await register_and_login(client))["access_token"]
    body = await (await start(client, viewer, ad_film.movie_id)).json()
    assert body["ads"] is True
    master = await (await client.get(local(body["manifest_url"]))).text()
    variant = uris(master)[0]
    stitcher = client.app[playback_key].stitcher
    before = stitcher.compiles
    responses = await asyncio.gather(
        *[client.get(f"/hls/{ad_film.movie_id}/{variant}") for _ in range(6)]
    )
    texts = {await r.text() for r in responses}
    assert [r.status for r in responses] == [200] * 6
    assert len(texts) == 1
    assert "com.kushfilms.ad" in next(iter(texts))
    assert stitcher.compiles - before == 1

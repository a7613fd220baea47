"""Server-side ad insertion end to end: free viewers get a pre-roll and a mid-roll,
paid viewers none; players decode across the breaks; events are counted exactly once."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shutil
import uuid

import pytest
from aiohttp.test_utils import TestClient

from admin.app import create_app as create_admin
from admin.ingest import build_demo_film, find_ffmpeg
from admin.publish import record_ad_package, record_package, upload_ad_package, upload_package
from gateway.ads.writer import drain_once, ensure_group
from gateway.app import create_app
from kush import db
from kush.redis import Keys
from kush.settings import Settings
from origin import LocalOrigin
from tests.integration.conftest import DEMO_PASSWORD, Film
from tests.integration.helpers import bearer, register_and_login
from tests.integration.test_playback import local, login, start, uris

CATEGORY = "ads-test"


@dataclasses.dataclass(frozen=True)
class AdFilm:
    movie_id: str
    ad_id: str
    campaign_id: str


def _with_cue(text: str) -> str:
    """Put an SCTE-35 style cue before the second segment (a mid-roll at 6 s)."""
    lines = text.splitlines()
    extinfs = [i for i, line in enumerate(lines) if line.startswith("#EXTINF")]
    lines.insert(extinfs[1], "#EXT-X-CUE-OUT:DURATION=15")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def ad_film(
    base_settings: Settings, film: Film, tmp_path_factory: pytest.TempPathFactory
) -> AdFilm:
    work = tmp_path_factory.mktemp("adfilm")

    async def build() -> AdFilm:
        ad_pkg = await build_demo_film(work / "ad", duration_s=12, preset="ultrafast")
        content = work / "content"
        shutil.copytree(film.package.master_path.parent, content)
        for playlist in content.glob("*/index.m3u8"):
            playlist.write_text(_with_cue(playlist.read_text()))
        origin = LocalOrigin(film.origin_dir)
        conn = await db.connect(base_settings)
        try:
            movie_id = str(uuid.uuid4())
            await conn.execute(
                "INSERT INTO movies (id, slug, title) VALUES ($1, $2, 'Ads test film')",
                uuid.UUID(movie_id),
                f"ads-{movie_id[:8]}",
            )
            await upload_package(origin, movie_id, content)
            await record_package(conn, movie_id, film.package, publish=True)
            cat = await conn.fetchval(
                """INSERT INTO categories (slug, name) VALUES ($1, 'Ads test')
                   ON CONFLICT (slug) DO UPDATE SET name = EXCLUDED.name RETURNING id""",
                CATEGORY,
            )
            await conn.execute(
                "INSERT INTO movie_categories VALUES ($1, $2)", uuid.UUID(movie_id), cat
            )
            ad_id = str(
                await conn.fetchval(
                    "INSERT INTO ads (name, status) VALUES ('Test ad', 'processing') RETURNING id"
                )
            )
            await upload_ad_package(origin, ad_id, work / "ad")
            await record_ad_package(conn, ad_id, ad_pkg)
            campaign_id = str(
                await conn.fetchval(
                    """INSERT INTO campaigns (name, starts_at, ends_at, target_plans,
                       target_categories, frequency_cap_per_day)
                   VALUES ('Test campaign', now() - interval '1 day', now() + interval '1 day',
                           '{free}', $1, 2) RETURNING id""",
                    [CATEGORY],
                )
            )
            await conn.execute(
                "INSERT INTO campaign_ads VALUES ($1, $2)", uuid.UUID(campaign_id), uuid.UUID(ad_id)
            )
            await conn.execute(
                """INSERT INTO break_policies (movie_id, preroll, use_cue_points, max_pod_s,
                       max_ads_per_pod) VALUES ($1, true, true, 30, 1)""",
                uuid.UUID(movie_id),
            )
        finally:
            await conn.close()
            await origin.close()
        return AdFilm(movie_id, ad_id, campaign_id)

    return asyncio.run(build())


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
    proc = await asyncio.create_subprocess_exec(
        find_ffmpeg(),
        "-v",
        "error",
        "-i",
        body["manifest_url"],
        "-map",
        "0:v:0",
        "-map",
        "0:a:0",
        "-f",
        "null",
        "-",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=180)
    assert proc.returncode == 0, err.decode()[-2000:]


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
    from kush.web import redis_key

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

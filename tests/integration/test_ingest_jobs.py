"""Uploads and ingest jobs through the admin API, run by the worker's queue, played by
the gateway: a film and a real ad creative ingested from uploads, the pod in every
rendition of a free viewer's session and in the audio-only playlist, a re-ingest that
switches every gateway worker to the new version and deletes the old one."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from admin.app import create_app as create_admin
from admin.ingest import find_ffmpeg, generate_test_source
from admin.ingest.ffmpeg import first_timestamps
from admin.ingest.transcode import TS_MUX_OFFSET_S
from gateway.app import create_app as create_gateway
from runtime import db
from runtime.settings import Settings
from tests.integration.helpers import ffmpeg_reads, register_and_login
from tests.integration.jobs_support import (
    admin_token,
    drop_schema,
    fresh_schema,
    new_movie,
    upload,
    wait_job,
    worker,
)
from tests.integration.test_playback import local, start, uris

pytestmark = pytest.mark.slow


@pytest.fixture
async def jobs_settings(settings: Settings, tmp_path: Path) -> AsyncIterator[Settings]:
    fresh = await fresh_schema(settings, tmp_path)
    yield fresh
    await drop_schema(fresh)


@pytest.fixture
async def admin(jobs_settings: Settings, aiohttp_client) -> TestClient:
    return await aiohttp_client(create_admin(jobs_settings))


@pytest.fixture
async def gateway(jobs_settings: Settings, aiohttp_client) -> TestClient:
    return await aiohttp_client(create_gateway(jobs_settings))


@pytest.fixture
async def gateway2(jobs_settings: Settings, aiohttp_client) -> TestClient:
    """A second gateway worker (its own playlist cache)."""
    return await aiohttp_client(create_gateway(jobs_settings))


async def _media(client: TestClient, movie_id: str, manifest_url: str) -> dict[str, str]:
    master = await (await client.get(local(manifest_url))).text()
    out = {}
    for variant in uris(master):
        resp = await client.get(f"/hls/{movie_id}/{variant}")
        assert resp.status == 200, variant
        out[variant.split("/")[0]] = await resp.text()
    return out


def _pod_shape(playlist: str) -> list[str]:
    """Ads and content in playlist order, with each segment's duration."""
    shape, pending = [], ""
    for line in playlist.splitlines():
        if line == "#EXT-X-DISCONTINUITY":
            shape.append("|")
        elif line.startswith("#EXTINF"):
            pending = line.split(":")[1].split(",")[0]
        elif line and not line.startswith("#"):
            shape.append(("ad " if line.startswith("/hls/ads/") else "film ") + pending)
    return shape


async def _ffmpeg_reads_audio(url: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        find_ffmpeg(),
        "-v",
        "error",
        "-i",
        url,
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


async def test_upload_ingest_publish_and_play_with_a_real_ad(
    jobs_settings: Settings, admin: TestClient, gateway: TestClient, gateway2: TestClient
) -> None:
    auth = await admin_token(gateway)
    work = jobs_settings.data_dir
    film_src = await generate_test_source(
        work / "film.mp4", duration_s=13, width=854, height=480, label="Film one"
    )
    ad_src = await generate_test_source(
        work / "ad.mp4", duration_s=7, width=640, height=360, label="Advert"
    )
    movie_id = await new_movie(jobs_settings)

    async with worker(jobs_settings):
        film_upload = await upload(admin, auth, film_src, "video/mp4")
        resp = await admin.post(
            f"/admin/v1/movies/{movie_id}/ingest", json={"upload_id": film_upload}, headers=auth
        )
        assert resp.status == 202, await resp.text()
        job_id = (await resp.json())["job_id"]
        # a second ingest while the first runs is refused
        again = await admin.post(
            f"/admin/v1/movies/{movie_id}/ingest", json={"upload_id": film_upload}, headers=auth
        )
        assert again.status == 409
        assert (await again.json())["error"]["code"] == "ingest_in_progress"

        ad_upload = await upload(admin, auth, ad_src, "video/mp4")
        resp = await admin.post(
            "/admin/v1/ads", json={"name": "Real creative", "upload_id": ad_upload}, headers=auth
        )
        assert resp.status == 201, await resp.text()
        ad = await resp.json()
        assert ad["status"] == "processing"

        job = await wait_job(admin, auth, job_id)
        assert job["status"] == "ready", job
        assert job["progress"] == 1.0
        assert job["attempts"] == 1
        assert job["error"] is None
        ad_job = await wait_job(admin, auth, ad["job_id"])
        assert ad_job["status"] == "ready", ad_job
        listed = await (await admin.get("/admin/v1/jobs?status=ready", headers=auth)).json()
        assert {j["id"] for j in listed["items"]} == {job_id, ad["job_id"]}
        bad = await admin.get("/admin/v1/jobs?status=sleeping", headers=auth)
        assert bad.status == 422

    ad_row = await (await admin.get(f"/admin/v1/ads/{ad['id']}", headers=auth)).json()
    assert ad_row["status"] == "ready"
    assert ad_row["duration_s"] == pytest.approx(7, abs=0.1)

    conn = await db.connect(jobs_settings)
    try:
        row = await conn.fetchrow(
            "SELECT status, version, master_key, download_key FROM movies WHERE id = $1::uuid",
            movie_id,
        )
        assert row["status"] == "draft"  # ingest never publishes by itself
        assert row["version"] == 2
        assert row["master_key"] == f"videos/{movie_id}/v2/master.m3u8"
        assert row["download_key"] == f"videos/{movie_id}/v2/download.mp4"
        names = sorted(
            r["name"]
            for r in await conn.fetch(
                "SELECT name FROM renditions WHERE movie_id = $1::uuid", movie_id
            )
        )
        assert names == ["v2-240p", "v2-360p", "v2-480p", "v2-audio"]
        # publishing is the catalogue's route; the test flips the flag
        await conn.execute(
            "UPDATE movies SET status = 'published', published_at = now() WHERE id = $1::uuid",
            movie_id,
        )
    finally:
        await conn.close()

    # every rendition's first segment starts with the others, audio and video together
    origin = jobs_settings.origin_root / "videos" / movie_id
    starts = {
        name: await first_timestamps(origin / name / "seg_00000.ts")
        for name in ("v2-480p", "v2-360p", "v2-240p", "v2-audio")
    }
    values = [t for found in starts.values() for t in found.values()]
    assert len(values) == 7, starts  # three times audio+video, once audio
    assert max(values) - min(values) < 0.001, starts
    # the TS muxer's offset and the B-frame reorder delay (two frames at 24 fps)
    assert min(values) == pytest.approx(TS_MUX_OFFSET_S + 2 / 24, abs=0.001), starts

    # a campaign for free viewers and a pre-roll on this film
    now = datetime.now(UTC)
    resp = await admin.post(
        "/admin/v1/campaigns",
        json={
            "name": "Real creative campaign",
            "starts_at": (now - timedelta(days=1)).isoformat(),
            "ends_at": (now + timedelta(days=1)).isoformat(),
            "target_plans": ["free"],
            "ad_ids": [ad["id"]],
        },
        headers=auth,
    )
    assert resp.status == 201, await resp.text()
    resp = await admin.put(
        f"/admin/v1/break-policies/{movie_id}",
        json={"preroll": True, "use_cue_points": False, "max_pod_s": 30, "max_ads_per_pod": 1},
        headers=auth,
    )
    assert resp.status == 200, await resp.text()

    free = (await register_and_login(gateway))["access_token"]
    body = await (await start(gateway, free, movie_id)).json()
    assert body["ads"] is True, body
    media = await _media(gateway, movie_id, body["manifest_url"])
    assert set(media) == {"v2-480p", "v2-360p", "v2-240p", "v2-audio"}
    shapes = {name: _pod_shape(text) for name, text in media.items()}
    reference = shapes["v2-480p"]
    assert reference[0].startswith("ad "), reference
    assert "|" in reference
    assert all(shape == reference for shape in shapes.values()), shapes
    assert "com.kushfilms.ad" in media["v2-audio"]
    await ffmpeg_reads(body["manifest_url"])
    audio_url = (
        body["manifest_url"].rsplit("/", 1)[0]
        + "/"
        + next(
            u
            for u in uris(await (await gateway.get(local(body["manifest_url"]))).text())
            if u.startswith("v2-audio/")
        )
    )
    await _ffmpeg_reads_audio(audio_url)

    # re-ingest: a new version, switched at once on every gateway worker, old one gone
    premium_other = await register_and_login(gateway2)
    before = await (await start(gateway2, premium_other["access_token"], movie_id)).json()
    assert "v2-" in await (await gateway2.get(local(before["manifest_url"]))).text()
    async with worker(jobs_settings):
        second = await upload(admin, auth, film_src, "video/mp4")
        resp = await admin.post(
            f"/admin/v1/movies/{movie_id}/ingest", json={"upload_id": second}, headers=auth
        )
        job = await wait_job(admin, auth, (await resp.json())["job_id"])
        assert job["status"] == "ready", job
    for client in (gateway, gateway2):
        viewer = (await register_and_login(client))["access_token"]
        after = await (await start(client, viewer, movie_id)).json()
        master = await (await client.get(local(after["manifest_url"]))).text()
        assert re.findall(r"^(v\d+)-", master, re.MULTILINE) == ["v3"] * len(uris(master))
    assert sorted(p.name for p in origin.iterdir()) == [
        "poster.jpg",
        "v3",
        "v3-240p",
        "v3-360p",
        "v3-480p",
        "v3-audio",
    ]
    assert sorted(p.name for p in (origin / "v3").iterdir()) == ["download.mp4", "master.m3u8"]


async def test_playlists_and_non_video_files_are_refused_with_their_reasons(
    jobs_settings: Settings, admin: TestClient, gateway: TestClient
) -> None:
    """An uploaded HLS playlist naming files of the server (a segment of another film,
    /etc/passwd) never reads them; a text file is not a video. Both fail at once with
    their reason (no retries), and a retry runs them again."""
    auth = await admin_token(gateway)
    work = jobs_settings.data_dir
    secret = await generate_test_source(
        work / "other-film.mp4", duration_s=3, width=320, height=240
    )
    segment = work / "private" / "seg_00000.ts"
    segment.parent.mkdir()
    proc = await asyncio.create_subprocess_exec(
        find_ffmpeg(),
        "-v",
        "error",
        "-i",
        str(secret),
        "-c",
        "copy",
        "-f",
        "mpegts",
        str(segment),
    )
    assert await proc.wait() == 0
    playlist = work / "trailer.mp4"  # the name lies; the content is a playlist
    playlist.write_text(
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXT-X-PLAYLIST-TYPE:VOD\n"
        f"#EXTINF:3.0,\nfile:{segment}\n#EXTINF:3.0,\n{segment}\n"
        "#EXTINF:3.0,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
    )
    text = work / "notes.mp4"
    text.write_text("These are not the frames you are looking for.\n" * 50)
    outcomes = {}
    async with worker(jobs_settings):
        for name, path in (("playlist", playlist), ("text", text)):
            movie_id = await new_movie(jobs_settings, f"Refused {name}")
            upload_id = await upload(admin, auth, path, "video/mp4")
            resp = await admin.post(
                f"/admin/v1/movies/{movie_id}/ingest", json={"upload_id": upload_id}, headers=auth
            )
            assert resp.status == 202, await resp.text()
            outcomes[name] = (movie_id, await wait_job(admin, auth, (await resp.json())["job_id"]))
        playlist_job = outcomes["playlist"][1]
        assert playlist_job["status"] == "failed"
        assert playlist_job["attempts"] == 1
        assert playlist_job["error"].startswith("not_a_video: "), playlist_job
        assert "'hls'" in playlist_job["error"]
        text_job = outcomes["text"][1]
        assert text_job["status"] == "failed"
        assert text_job["attempts"] == 1
        assert text_job["error"].startswith("unreadable: "), text_job
        listed = await (await admin.get("/admin/v1/jobs?status=failed", headers=auth)).json()
        assert {j["id"] for j in listed["items"]} == {playlist_job["id"], text_job["id"]}
        # a retry queues it again; the reason stays until the attempt ends
        resp = await admin.post(f"/admin/v1/jobs/{text_job['id']}/retry", headers=auth)
        assert resp.status == 202
        again = await wait_job(admin, auth, text_job["id"])
        assert again["status"] == "failed"
        assert again["error"].startswith("unreadable: ")
    # nothing of either reached the origin or the catalogue
    for movie_id, _ in outcomes.values():
        assert not (jobs_settings.origin_root / "videos" / movie_id).exists()
    conn = await db.connect(jobs_settings)
    try:
        versions = await conn.fetch(
            "SELECT version, master_key FROM movies WHERE id = ANY($1::uuid[])",
            [m for m, _ in outcomes.values()],
        )
    finally:
        await conn.close()
    assert [(r["version"], r["master_key"]) for r in versions] == [(1, None), (1, None)]
    # a finished job cannot be retried
    resp = await admin.post(f"/admin/v1/jobs/{playlist_job['id']}/retry", headers=auth)
    assert resp.status == 202
    resp = await admin.post(f"/admin/v1/jobs/{playlist_job['id']}/retry", headers=auth)
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "job_not_failed"

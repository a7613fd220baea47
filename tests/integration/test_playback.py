"""Playback end to end: entitlements, tokenized playlists, segments, real ffmpeg."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from runtime import db
from runtime.settings import Settings
from runtime.web import redis_key, rkeys_key
from tests.integration.conftest import DEMO_PASSWORD, Film
from tests.integration.helpers import bearer, ffmpeg_reads, register_and_login
from tokens.service.session_endings import session_key


@pytest.fixture
async def client(play_settings: Settings, aiohttp_client) -> TestClient:
    return await aiohttp_client(create_app(play_settings))


async def login(client: TestClient, plan: str) -> str:
    resp = await client.post(
        "/v1/auth/login", json={"email": f"{plan}@demo.kush", "password": DEMO_PASSWORD}
    )
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["access_token"])


async def start(client: TestClient, token: str, movie_id: str, **headers: str) -> Any:
    resp = await client.post(f"/v1/playback/{movie_id}", headers={**bearer(token), **headers})
    return resp


async def end_all(client: TestClient, token: str, session_id: str) -> None:
    resp = await client.delete(f"/v1/playback/{session_id}", headers=bearer(token))
    assert resp.status == 204


def uris(playlist: str) -> list[str]:
    found = []
    for line in playlist.splitlines():
        if line and not line.startswith("#"):
            found.append(line)
        found.extend(re.findall(r'URI="([^"]+)"', line))
    return found


def local(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


def join(base: str, uri: str) -> str:
    return uri if uri.startswith("/") else base.rsplit("/", 1)[0] + "/" + uri


async def follow(client: TestClient, manifest_url: str) -> dict[str, int]:
    """Fetch the master, every playlist and every URI in them; return path -> status."""
    seen: dict[str, int] = {}
    master_url = local(manifest_url)
    resp = await client.get(master_url)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
    assert resp.headers["Cache-Control"] == "private, no-store"
    master = await resp.text()
    for variant in uris(master):
        assert "t=" in variant
        url = join(master_url.split("?")[0], variant)
        resp = await client.get(url)
        seen[url.split("?")[0]] = resp.status
        media = await resp.text()
        for uri in uris(media):
            assert "?t=" in uri
            seg = join(url.split("?")[0], uri)
            r = await client.get(seg)
            body = await r.read()
            seen[seg.split("?")[0]] = r.status
            assert r.status == 200
            assert len(body) > 0
            assert r.headers["Cache-Control"] == "private, max-age=2592000, immutable"
            assert r.headers["Content-Type"] == "video/mp2t"
    return seen


@pytest.mark.parametrize(
    ("plan", "best", "first"), [("free", 480, 480), ("basic", 720, 480), ("premium", 1080, 480)]
)
async def test_follow_the_link_per_plan(
    client: TestClient, film: Film, plan: str, best: int, first: int
) -> None:
    token = await login(client, plan)
    resp = await start(client, token, film.movie_id)
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert set(body) >= {"session_id", "manifest_url", "expires_at", "ads"}
    assert body["expires_at"].endswith("Z")
    assert isinstance(body["ads"], bool)
    master = await (await client.get(local(body["manifest_url"]))).text()
    heights = [int(h) for h in re.findall(r"RESOLUTION=\d+x(\d+)", master)]
    assert max(heights) == best
    assert heights[0] == first  # the data-saver rendition is listed first
    seen = await follow(client, body["manifest_url"])
    assert all(status == 200 for status in seen.values())
    assert len(seen) >= 4
    await end_all(client, token, body["session_id"])


async def test_tampered_and_cross_session_tokens_refused(client: TestClient, film: Film) -> None:
    premium = await login(client, "premium")
    free = await login(client, "free")
    p = await (await start(client, premium, film.movie_id)).json()
    f = await (await start(client, free, film.movie_id)).json()
    try:
        p_master = await (await client.get(local(p["manifest_url"]))).text()
        hd = next(u for u in uris(p_master) if u.startswith("1080p/"))
        hd_url = f"/hls/{film.movie_id}/{hd}"
        hd_playlist = await (await client.get(hd_url)).text()
        seg = next(u for u in uris(hd_playlist))
        seg_url = f"/hls/{film.movie_id}/1080p/{seg}"
        assert (await client.get(seg_url)).status == 200
        # one character changed in the token: refused
        path, token = seg_url.split("?t=")
        flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
        resp = await client.get(f"{path}?t={flipped}")
        assert resp.status == 403
        assert "error" in await resp.json()
        # the 1080p path with a free session's token for another path: refused
        f_master = await (await client.get(local(f["manifest_url"]))).text()
        free_token = uris(f_master)[0].split("?t=")[1]
        resp = await client.get(f"{path}?t={free_token}")
        assert resp.status == 403
        # a token for segment 0 replayed on segment 1: refused
        other = path.replace("seg_00000", "seg_00001")
        assert other != path
        assert (await client.get(f"{other}?t={token}")).status == 403
        # no token at all: 401, never the bytes
        resp = await client.get(path)
        assert resp.status == 401
        assert resp.content_type == "application/json"
    finally:
        await end_all(client, premium, p["session_id"])
        await end_all(client, free, f["session_id"])


async def test_segment_range_and_etag(client: TestClient, film: Film) -> None:
    token = await login(client, "basic")
    body = await (await start(client, token, film.movie_id)).json()
    try:
        master = await (await client.get(local(body["manifest_url"]))).text()
        variant = uris(master)[0]
        rendition = variant.split("/")[0]
        media = await (await client.get(f"/hls/{film.movie_id}/{variant}")).text()
        seg_url = f"/hls/{film.movie_id}/{rendition}/{uris(media)[0]}"
        full = await (await client.get(seg_url)).read()
        resp = await client.get(seg_url, headers={"Range": "bytes=0-187"})
        assert resp.status == 206
        assert await resp.read() == full[:188]
        assert resp.headers["Content-Range"] == f"bytes 0-187/{len(full)}"
        etag = (await client.get(seg_url)).headers["ETag"]
        resp = await client.get(seg_url, headers={"If-None-Match": etag})
        assert resp.status == 304
        resp = await client.get(seg_url, headers={"Range": f"bytes={len(full) + 10}-"})
        assert resp.status == 416
    finally:
        await end_all(client, token, body["session_id"])


async def test_stream_limit_and_end(client: TestClient, film: Film) -> None:
    token = await login(client, "free")
    first = await start(client, token, film.movie_id)
    assert first.status == 201
    second = await start(client, token, film.movie_id)
    assert second.status == 403
    assert (await second.json())["error"]["code"] == "stream_limit"
    await end_all(client, token, (await first.json())["session_id"])
    third = await start(client, token, film.movie_id)
    assert third.status == 201
    await end_all(client, token, (await third.json())["session_id"])


async def test_unreadable_stored_session_is_refused_not_a_crash(
    client: TestClient, film: Film, play_settings: Settings
) -> None:
    """A session entry another release wrote (unknown format byte) reads as ended: a
    clean 403, never a 500, and the entry is not trusted."""
    token = await login(client, "premium")
    body = await (await start(client, token, film.movie_id)).json()
    redis = client.app[redis_key]
    key = session_key(client.app[rkeys_key], body["session_id"])
    await redis.set(key, b"\x7f" + b'{"id": "from the future"}', ex=60)
    resp = await client.get(local(body["manifest_url"]))
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "session_revoked"
    assert (
        await client.delete(f"/v1/playback/{body['session_id']}", headers=bearer(token))
    ).status == 404


async def test_logout_mid_playback_stops_segments_in_every_worker(
    play_settings: Settings, film: Film, aiohttp_client
) -> None:
    worker_a: TestClient = await aiohttp_client(create_app(play_settings))
    worker_b: TestClient = await aiohttp_client(create_app(play_settings))
    account = await register_and_login(worker_a)
    token = account["access_token"]
    body = await (await start(worker_a, token, film.movie_id)).json()
    master = await (await worker_b.get(local(body["manifest_url"]))).text()
    variant = uris(master)[0]
    media = await (await worker_b.get(f"/hls/{film.movie_id}/{variant}")).text()
    seg_url = f"/hls/{film.movie_id}/{variant.split('/')[0]}/{uris(media)[0]}"
    assert (await worker_b.get(seg_url)).status == 200
    assert (await worker_a.post("/v1/auth/logout", headers=bearer(token))).status == 204
    await asyncio.sleep(1.0)  # the documented bound: revocation reaches every worker within 1 s
    for worker in (worker_a, worker_b):
        resp = await worker.get(seg_url)
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "session_revoked"


async def test_geo_and_age_rules(film: Film, play_settings: Settings, aiohttp_client) -> None:
    # the test client connects from loopback: make it the trusted edge that sets the header
    trusted = dataclasses.replace(play_settings, trusted_proxies=("127.0.0.0/8", "::1/128"))
    client: TestClient = await aiohttp_client(create_app(trusted))
    token = await login(client, "premium")
    conn = await db.connect(play_settings)
    mid = uuid.UUID(film.resume_movie_id)
    try:
        await conn.execute("UPDATE movies SET geo_allow = '{KE}' WHERE id = $1", mid)
        resp = await start(client, token, film.resume_movie_id, **{"CF-IPCountry": "UG"})
        assert (await resp.json())["error"]["code"] == "geo_blocked"
        resp = await start(client, token, film.resume_movie_id)  # unknown country, restricted film
        assert resp.status == 403
        await conn.execute(
            "UPDATE movies SET geo_allow = NULL, geo_block = '{UG}', min_age = 0 WHERE id = $1", mid
        )
        resp = await start(client, token, film.resume_movie_id, **{"CF-IPCountry": "UG"})
        assert (await resp.json())["error"]["code"] == "geo_blocked"
        await conn.execute("UPDATE movies SET geo_block = '{}', min_age = 21 WHERE id = $1", mid)
        # a new account has no birth year on file: an age-restricted film is refused
        unknown_age = (await register_and_login(client))["access_token"]
        resp = await start(client, unknown_age, film.resume_movie_id)
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "age_restricted"
    finally:
        await conn.execute(
            "UPDATE movies SET geo_allow = NULL, geo_block = '{}', min_age = 0 WHERE id = $1", mid
        )
        await conn.close()
    resp = await start(client, token, str(uuid.uuid4()))
    assert resp.status == 404


async def test_a_missing_film_is_reported_before_a_disabled_account(
    client: TestClient, film: Film, play_settings: Settings
) -> None:
    """The film and the account are read at once; the film's error still comes first."""
    account = await register_and_login(client)
    token = account["access_token"]
    conn = await db.connect(play_settings)
    try:
        await conn.execute(
            "UPDATE users SET disabled_at = now() WHERE email = $1", account["email"]
        )
    finally:
        await conn.close()
    resp = await start(client, token, str(uuid.uuid4()))
    assert (resp.status, (await resp.json())["error"]["code"]) == (404, "movie_not_found")
    resp = await start(client, token, film.movie_id)
    assert (resp.status, (await resp.json())["error"]["code"]) == (403, "account_disabled")


async def test_country_and_forwarded_for_are_ignored_from_untrusted_peers(
    film: Film, play_settings: Settings, aiohttp_client
) -> None:
    """Anyone can send CF-IPCountry and X-Forwarded-For: only a trusted proxy is believed."""
    untrusted: TestClient = await aiohttp_client(create_app(play_settings))
    trusted: TestClient = await aiohttp_client(
        create_app(dataclasses.replace(play_settings, trusted_proxies=("127.0.0.1/32",)))
    )
    conn = await db.connect(play_settings)
    mid = uuid.UUID(film.resume_movie_id)
    spoof = {"CF-IPCountry": "KE", "X-Forwarded-For": "203.0.113.9"}
    try:
        await conn.execute("UPDATE movies SET geo_allow = '{KE}' WHERE id = $1", mid)
        token = await login(untrusted, "premium")
        resp = await start(untrusted, token, film.resume_movie_id, **spoof)
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "geo_blocked"
        resp = await start(trusted, token, film.resume_movie_id, **spoof)
        assert resp.status == 201, await resp.text()
        body = await resp.json()
        row = await conn.fetchrow(
            "SELECT client_ip, country FROM playback_sessions WHERE id = $1", body["session_id"]
        )
        assert (str(row["client_ip"]), row["country"]) == ("203.0.113.9", "KE")
        await end_all(trusted, token, body["session_id"])
    finally:
        await conn.execute("UPDATE movies SET geo_allow = NULL WHERE id = $1", mid)
        await conn.close()


async def test_progress_and_resume(client: TestClient, film: Film) -> None:
    account = await register_and_login(client)
    token = account["access_token"]
    resp = await client.put(
        f"/v1/me/progress/{film.resume_movie_id}", json={"position_s": 95.5}, headers=bearer(token)
    )
    assert resp.status == 204
    resp = await client.put(
        f"/v1/me/progress/{film.resume_movie_id}", json={"position_s": "x"}, headers=bearer(token)
    )
    assert resp.status == 422
    assert [f["path"] for f in (await resp.json())["error"]["fields"]] == ["position_s"]
    hist = await (await client.get("/v1/me/history", headers=bearer(token))).json()
    assert hist["items"][0]["movie_id"] == film.resume_movie_id
    assert hist["items"][0]["position_s"] == 95.5
    body = await (await start(client, token, film.resume_movie_id)).json()
    master = await (await client.get(local(body["manifest_url"]))).text()
    assert "#EXT-X-START:TIME-OFFSET=95.500,PRECISE=YES" in master
    variant = uris(master)[0]
    media = await (await client.get(f"/hls/{film.resume_movie_id}/{variant}")).text()
    assert "#EXT-X-START:TIME-OFFSET=95.500" in media
    await end_all(client, token, body["session_id"])


async def test_traversal_never_escapes(client: TestClient, film: Film) -> None:
    token = await login(client, "premium")
    body = await (await start(client, token, film.movie_id)).json()
    try:
        good_token = body["manifest_url"].split("?t=")[1]
        for path in (
            f"/hls/{film.movie_id}/../../../etc/passwd",
            f"/hls/{film.movie_id}/720p/..%2F..%2F..%2Fetc%2Fpasswd",
            f"/hls/{film.movie_id}/%2e%2e/%2e%2e/master.m3u8",
            f"/hls/{film.movie_id}/720p/%00.ts",
        ):
            resp = await client.get(f"{path}?t={good_token}")
            assert resp.status in {400, 403, 404}, path
            assert resp.content_type == "application/json"
            assert b"root:" not in await resp.read()
    finally:
        await end_all(client, token, body["session_id"])


@pytest.mark.slow
@pytest.mark.parametrize("plan", ["free", "premium"])
async def test_ffmpeg_plays_the_manifest(client: TestClient, film: Film, plan: str) -> None:
    token = await login(client, plan)
    body = await (await start(client, token, film.movie_id)).json()
    try:
        assert (await ffmpeg_reads(body["manifest_url"], limit_s=120)).strip() == ""
    finally:
        await end_all(client, token, body["session_id"])


async def test_progress_derived_from_segment_fetches(client: TestClient, film: Film) -> None:
    account = await register_and_login(client)
    token = account["access_token"]
    body = await (await start(client, token, film.movie_id)).json()
    master = await (await client.get(local(body["manifest_url"]))).text()
    variant = uris(master)[0]
    media = await (await client.get(f"/hls/{film.movie_id}/{variant}")).text()
    second = uris(media)[1]  # starts 6 s into the film
    assert (
        await client.get(f"/hls/{film.movie_id}/{variant.split('/')[0]}/{second}")
    ).status == 200
    hist = await (await client.get("/v1/me/history", headers=bearer(token))).json()
    assert hist["items"][0]["movie_id"] == film.movie_id
    assert hist["items"][0]["position_s"] == pytest.approx(6.0, abs=0.1)
    await end_all(client, token, body["session_id"])


async def test_playlists_gzip_cors_and_hotlink(
    play_settings: Settings, film: Film, aiohttp_client
) -> None:
    guarded = dataclasses.replace(play_settings, hotlink_allowed_hosts=("kushfilms.example",))
    client: TestClient = await aiohttp_client(create_app(guarded))
    token = await login(client, "basic")
    body = await (await start(client, token, film.movie_id)).json()
    try:
        url = local(body["manifest_url"])
        resp = await client.get(
            url, headers={"Accept-Encoding": "gzip", "Origin": "https://kushfilms.example"}
        )
        assert resp.status == 200
        assert resp.headers["Content-Encoding"] == "gzip"
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        resp = await client.get(url, headers={"Referer": "https://evil.example/page"})
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "hotlink_denied"
        assert (await client.get(url)).status == 200  # native players send no Referer
        resp = await client.options(
            url, headers={"Origin": "https://x.example", "Access-Control-Request-Method": "GET"}
        )
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
    finally:
        await end_all(client, token, body["session_id"])


async def test_playback_starts_are_rate_limited_per_account(
    film: Film, play_settings: Settings, aiohttp_client
) -> None:
    """Start → stop in a loop is bounded per account (each start may compile a stitched
    playlist); another account is not affected."""
    limited = dataclasses.replace(
        play_settings,
        playback_starts_per_minute=3,
        redis_prefix=play_settings.redis_prefix + f"ps{uuid.uuid4().hex[:6]}:",
    )
    client: TestClient = await aiohttp_client(create_app(limited))
    token = (await register_and_login(client))["access_token"]
    statuses = []
    for _ in range(4):
        resp = await start(client, token, film.movie_id)
        statuses.append(resp.status)
        if resp.status == 201:
            await end_all(client, token, (await resp.json())["session_id"])
    assert statuses == [201, 201, 201, 429]
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert (await resp.json())["error"]["code"] == "rate_limited"
    other = (await register_and_login(client))["access_token"]
    assert (await start(client, other, film.movie_id)).status == 201

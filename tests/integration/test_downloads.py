"""Offline downloads (premium) end to end: the ingest's 480p MP4 (real ffmpeg), the
signed URL (the gateway's file route with a token for the local origin, a presigned GET
from moto's S3 server), refusals (plan, film, tokens), the expiry tied to the period
end, revocation on a downgrade, and the bytes counted as data use."""

from __future__ import annotations

import dataclasses
import struct
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from admin.app import create_app as create_admin
from admin.ingest import probe
from admin.publish import upload_package
from gateway.app import create_app as create_gateway
from origin import S3Origin
from runtime.settings import Settings
from tests.integration.conftest import DEMO_PASSWORD, Film
from tests.integration.helpers import PASSWORD, bearer, new_email
from tests.support.moto_server import MotoServer
from tokens import sign_download
from tokens.service.auth import create_account
from tokens.service.views import keystore_key


@pytest.fixture
async def gateway(play_settings: Settings, aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(create_gateway(play_settings))


async def login(client: TestClient, email: str, password: str = PASSWORD) -> str:
    resp = await client.post("/v1/auth/login", json={"email": email, "password": password})
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["access_token"])


async def demo_login(client: TestClient, plan: str) -> str:
    return await login(client, f"{plan}@demo.kush", DEMO_PASSWORD)


async def viewer(
    client: TestClient,
    pg: asyncpg.Connection,
    *,
    plan: str | None = None,
    provider: str = "manual",
    period_end: datetime | None = None,
    ends_at: datetime | None = None,
) -> tuple[str, str]:
    """A fresh account (made directly: the run's register budget is shared), with a
    subscription row on ``plan`` if given; returns (user id, access token)."""
    email = new_email()
    user_id = await create_account(pg, email, PASSWORD)
    await pg.execute("UPDATE users SET birth_year = 1990 WHERE id = $1::uuid", user_id)
    if plan is not None:
        await pg.execute(
            """INSERT INTO subscriptions (user_id, plan_id, status, provider,
                   current_period_end, ends_at)
               VALUES ($1::uuid, $2, 'active', $3, $4, $5)""",
            user_id,
            plan,
            provider,
            period_end,
            ends_at,
        )
    return user_id, await login(client, email)


def local(url: str) -> str:
    return "/" + url.split("/", 3)[3]


async def issue(client: TestClient, token: str, movie_id: str) -> aiohttp.ClientResponse:
    return await client.post(f"/v1/downloads/{movie_id}", headers=bearer(token))


async def error_code(resp: aiohttp.ClientResponse) -> str:
    return str((await resp.json())["error"]["code"])


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def top_level_boxes(path: Path) -> list[str]:
    """The MP4's top-level box types in file order (ISO/IEC 14496-12 §4.2)."""
    boxes: list[str] = []
    with path.open("rb") as f:
        while header := f.read(8):
            size, kind = struct.unpack(">I4s", header)
            boxes.append(kind.decode("latin-1"))
            if size == 1:
                size = struct.unpack(">Q", f.read(8))[0] - 8
            f.seek(size - 8, 1)
    return boxes


# ------------------------------------------------------------------ the ingest's MP4


async def test_ingest_writes_a_faststart_480p_h264_aac_mp4(
    film: Film, pg: asyncpg.Connection
) -> None:
    download = film.package.download
    assert download is not None
    assert download.rendition == "480p"
    assert download.path.name == "download.mp4"
    info = await probe(download.path, ours=True)
    assert (info.video_codec, info.width, info.height) == ("h264", 854, 480)
    assert info.audio_codec == "aac"
    assert info.duration_s == pytest.approx(12, abs=0.2)
    boxes = top_level_boxes(download.path)
    assert boxes.index("moov") < boxes.index("mdat")  # faststart: the index first
    row = await pg.fetchrow(
        "SELECT download_key, download_bytes FROM movies WHERE id = $1::uuid", film.movie_id
    )
    assert row["download_key"] == f"videos/{film.movie_id}/download.mp4"
    assert row["download_bytes"] == download.size == download.path.stat().st_size
    assert (film.origin_dir / "videos" / film.movie_id / "download.mp4").is_file()


# ------------------------------------------------------------------ the local origin


async def test_premium_downloads_the_mp4_through_the_gateway(
    gateway: TestClient, film: Film, pg: asyncpg.Connection
) -> None:
    token = await demo_login(gateway, "premium")
    resp = await issue(gateway, token, film.movie_id)
    assert resp.status == 201, await resp.text()
    assert resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert set(body) == {"download_id", "url", "expires_at", "offline_expires_at", "bytes"}
    url = body["url"]
    assert f"/v1/downloads/{body['download_id']}/file?token=" in url
    expires = datetime.fromisoformat(body["expires_at"])
    left = (expires - datetime.now(UTC)).total_seconds()
    assert 540 < left <= 600  # KUSH_DOWNLOAD_URL_TTL_S, 600 by default
    expected = film.package.download.path.read_bytes()  # type: ignore[union-attr]
    assert body["bytes"] == len(expected)

    before = await pg.fetchval(
        "SELECT bytes_delivered FROM downloads WHERE id = $1", body["download_id"]
    )
    whole = await gateway.get(local(url))
    assert whole.status == 200
    assert whole.headers["Content-Type"] == "video/mp4"
    assert whole.headers["Content-Disposition"].startswith('attachment; filename="test-film-')
    assert whole.headers["Content-Disposition"].endswith('-480p.mp4"')
    assert whole.headers["Cache-Control"] == "private, no-store"
    assert await whole.read() == expected
    # resuming a download: one byte range
    part = await gateway.get(local(url), headers={"Range": "bytes=100-1123"})
    assert part.status == 206
    assert await part.read() == expected[100:1124]

    # asking again refreshes the same download
    again = await (await issue(gateway, token, film.movie_id)).json()
    assert again["download_id"] == body["download_id"]
    listed = await gateway.get("/v1/me/downloads", headers=bearer(token))
    assert listed.status == 200
    items = [i for i in (await listed.json())["items"] if i["download_id"] == body["download_id"]]
    assert len(items) == 1
    item = items[0]
    assert item["movie_id"] == film.movie_id
    assert item["title"] == "Test film test-film"
    assert item["status"] == "active"
    assert item["bytes"] == len(expected)
    # a grant with no end (the demo's): 30 days from the last time the app asked
    offline = datetime.fromisoformat(item["expires_at"])
    assert abs(offline - datetime.fromisoformat(again["offline_expires_at"])) < timedelta(seconds=5)
    assert abs(offline - datetime.now(UTC) - timedelta(days=30)) < timedelta(seconds=5)
    # counted as data use: what the file route sent
    assert item["bytes_delivered"] == before + len(expected) + 1024
    delivered = await pg.fetchval(
        "SELECT sum(bytes) FROM download_deliveries WHERE download_id = $1", body["download_id"]
    )
    assert delivered == item["bytes_delivered"]
    # and in the viewer's data use for the film (README "Data")
    usage = await (await gateway.get("/v1/me/usage", headers=bearer(token))).json()
    film_usage = [i for i in usage["items"] if i["movie_id"] == film.movie_id]
    assert len(film_usage) == 1
    assert film_usage[0]["bytes"] >= delivered
    assert usage["total_bytes"] >= delivered


async def test_free_and_basic_are_refused(gateway: TestClient, film: Film) -> None:
    for plan in ("free", "basic"):
        token = await demo_login(gateway, plan)
        resp = await issue(gateway, token, film.movie_id)
        assert resp.status == 403
        assert await error_code(resp) == "premium_required"
    gateway.session.cookie_jar.clear()  # the logins left their cookies
    anonymous = await gateway.post(f"/v1/downloads/{film.movie_id}")
    assert anonymous.status == 401


async def test_bad_tokens_are_refused(gateway: TestClient, film: Film) -> None:
    token = await demo_login(gateway, "premium")
    body = await (await issue(gateway, token, film.movie_id)).json()
    path = f"/v1/downloads/{body['download_id']}/file"
    good = local(body["url"]).split("token=", 1)[1]

    missing = await gateway.get(path)
    assert missing.status == 401
    assert await error_code(missing) == "token_required"
    tampered = good[:-1] + ("A" if good[-1] != "A" else "B")
    resp = await gateway.get(f"{path}?token={tampered}")
    assert resp.status == 403
    assert await error_code(resp) == "invalid_token"
    ring = gateway.app[keystore_key].keys.segments
    expired = sign_download(ring, body["download_id"], int(time.time()) - 5)
    resp = await gateway.get(f"{path}?token={expired}")
    assert resp.status == 403
    assert await error_code(resp) == "token_expired"
    # a valid token of one download does not open another
    other = "A" * 16
    resp = await gateway.get(f"/v1/downloads/{other}/file?token={good}")
    assert resp.status == 403
    assert await error_code(resp) == "invalid_token"
    # a genuine token of a download that does not exist
    resp = await gateway.get(
        f"/v1/downloads/{other}/file?token={sign_download(ring, other, int(time.time()) + 60)}"
    )
    assert resp.status == 404
    assert await error_code(resp) == "download_not_found"


async def test_films_without_a_copy_or_unpublished(
    gateway: TestClient, film: Film, pg: asyncpg.Connection
) -> None:
    token = await demo_login(gateway, "premium")
    old = uuid.uuid4()
    await pg.execute(
        """INSERT INTO movies (id, slug, title, status, published_at, master_key)
           VALUES ($1, $2, 'Ingested before downloads', 'published', now(), 'videos/x/m.m3u8')""",
        old,
        f"old-{old.hex[:8]}",
    )
    resp = await issue(gateway, token, str(old))
    assert resp.status == 409
    assert await error_code(resp) == "download_unavailable"
    await pg.execute("UPDATE movies SET status = 'unpublished' WHERE id = $1", old)
    for movie_id in (str(old), str(uuid.uuid4()), "not-a-uuid"):
        resp = await issue(gateway, token, movie_id)
        assert resp.status == 404
        assert await error_code(resp) == "movie_not_found"


# ------------------------------------------------------------------ expiry and downgrades


async def test_offline_expiry_is_the_subscription_period_end(
    gateway: TestClient, film: Film, pg: asyncpg.Connection
) -> None:
    period_end = (datetime.now(UTC) + timedelta(days=17)).replace(microsecond=0)
    user_id, token = await viewer(
        gateway, pg, plan="premium", provider="stripe", period_end=period_end
    )
    resp = await issue(gateway, token, film.movie_id)
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["offline_expires_at"] == iso(period_end)
    listed = await (await gateway.get("/v1/me/downloads", headers=bearer(token))).json()
    assert [(i["download_id"], i["expires_at"], i["status"]) for i in listed["items"]] == [
        (body["download_id"], iso(period_end), "active")
    ]
    # the subscription renews: the offline copy follows the new period end
    renewed = period_end + timedelta(days=30)
    await pg.execute(
        "UPDATE subscriptions SET current_period_end = $2 WHERE user_id = $1::uuid",
        user_id,
        renewed,
    )
    listed = await (await gateway.get("/v1/me/downloads", headers=bearer(token))).json()
    assert [(i["expires_at"], i["status"]) for i in listed["items"]] == [(iso(renewed), "active")]


async def test_a_downgrade_revokes_download_links(
    play_settings: Settings, film: Film, pg: asyncpg.Connection, aiohttp_client: Any
) -> None:
    """Premium granted until a date, a download issued, then a grant of basic (the
    admin's plan route: the plan change is recorded and enforced like a webhook's):
    the gateway's URL is refused, no new download is issued, the list says revoked."""
    gateway: TestClient = await aiohttp_client(create_gateway(play_settings))
    admin: TestClient = await aiohttp_client(create_admin(play_settings))
    admin_email = new_email()
    await create_account(pg, admin_email, PASSWORD, role="admin")
    admin_token = await login(gateway, admin_email)
    user_id, token = await viewer(gateway, pg)
    until = (datetime.now(UTC) + timedelta(days=9)).replace(microsecond=0)

    async def grant(plan: str) -> None:
        resp = await admin.post(
            f"/admin/v1/users/{user_id}/plan",
            json={"plan": plan, "until": until.isoformat(), "reason": "test"},
            headers=bearer(admin_token),
        )
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["plan"] == plan

    await grant("premium")
    body = await (await issue(gateway, token, film.movie_id)).json()
    assert body["offline_expires_at"] == iso(until)  # the grant's end
    url = local(body["url"])
    assert (await gateway.get(url, headers={"Range": "bytes=0-9"})).status == 206

    await grant("basic")
    revoked_at = await pg.fetchval(
        "SELECT revoked_at FROM downloads WHERE id = $1", body["download_id"]
    )
    assert revoked_at is not None  # by the plan's enforcement, not by a fetch
    resp = await gateway.get(url)
    assert resp.status == 403
    assert await error_code(resp) == "download_revoked"
    resp = await issue(gateway, token, film.movie_id)
    assert resp.status == 403
    assert await error_code(resp) == "premium_required"
    listed = await (await gateway.get("/v1/me/downloads", headers=bearer(token))).json()
    assert [(i["download_id"], i["status"]) for i in listed["items"]] == [
        (body["download_id"], "revoked")
    ]

    # premium again: a new download, the revoked one stays revoked
    await grant("premium")
    fresh = await (await issue(gateway, token, film.movie_id)).json()
    assert fresh["download_id"] != body["download_id"]
    assert (await gateway.get(url)).status == 403
    assert (await gateway.get(local(fresh["url"]), headers={"Range": "bytes=0-9"})).status == 206


async def test_the_plan_is_checked_at_every_file_request(
    gateway: TestClient, film: Film, pg: asyncpg.Connection
) -> None:
    """A plan change the admin service has not enforced yet still stops the URL."""
    user_id, token = await viewer(gateway, pg, plan="premium")
    body = await (await issue(gateway, token, film.movie_id)).json()
    await pg.execute("UPDATE subscriptions SET plan_id = 'basic' WHERE user_id = $1::uuid", user_id)
    resp = await gateway.get(local(body["url"]))
    assert resp.status == 403
    assert await error_code(resp) == "download_revoked"
    reason = await pg.fetchval(
        "SELECT revoked_reason FROM downloads WHERE id = $1", body["download_id"]
    )
    assert reason == "plan_changed"


async def test_a_withdrawn_film_is_not_served(
    gateway: TestClient, film: Film, pg: asyncpg.Connection
) -> None:
    _, token = await viewer(gateway, pg, plan="premium")
    movie_id = uuid.uuid4()
    await pg.execute(
        """INSERT INTO movies (id, slug, title, status, published_at, download_key,
               download_bytes)
           SELECT $1, $2, 'Withdrawn later', 'published', now(), download_key, download_bytes
             FROM movies WHERE id = $3::uuid""",
        movie_id,
        f"withdrawn-{movie_id.hex[:8]}",
        film.movie_id,
    )
    body = await (await issue(gateway, token, str(movie_id))).json()
    await pg.execute("UPDATE movies SET status = 'taken_down' WHERE id = $1", movie_id)
    resp = await gateway.get(local(body["url"]))
    assert resp.status == 403
    assert await error_code(resp) == "film_unavailable"


# ------------------------------------------------------------------ the S3 origin


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


async def test_s3_origin_hands_out_a_presigned_get(
    play_settings: Settings,
    film: Film,
    moto: MotoServer,
    pg: asyncpg.Connection,
    aiohttp_client: Any,
) -> None:
    bucket = moto.create_bucket()
    s3 = dataclasses.replace(
        play_settings,
        origin="s3",
        s3_endpoint_url=moto.endpoint_url,
        s3_bucket=bucket,
        s3_access_key_id="testing",
        s3_secret_access_key="testing",
        s3_region="us-east-1",
        download_url_ttl_s=120,
    )
    store = S3Origin(
        endpoint_url=moto.endpoint_url,
        bucket=bucket,
        access_key_id="testing",
        secret_access_key="testing",
        region="us-east-1",
    )
    try:
        await upload_package(store, film.movie_id, film.package.master_path.parent)
    finally:
        await store.close()
    gateway: TestClient = await aiohttp_client(create_gateway(s3))
    _, token = await viewer(gateway, pg, plan="premium")
    resp = await issue(gateway, token, film.movie_id)
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    url = body["url"]
    assert url.startswith(f"{moto.endpoint_url}/{bucket}/videos/{film.movie_id}/download.mp4?")
    assert "X-Amz-Expires=120" in url
    expected = film.package.download.path.read_bytes()  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as got:
            assert got.status == 200
            assert got.headers["Content-Disposition"].endswith('-480p.mp4"')
            assert await got.read() == expected
        async with http.get(url, headers={"Range": "bytes=0-99"}) as part:
            assert part.status == 206
            assert await part.read() == expected[:100]
    # the origin's transfer is not seen: the file's size counts once per URL issued
    row = await pg.fetchrow(
        "SELECT delivery, bytes_delivered FROM downloads WHERE id = $1", body["download_id"]
    )
    assert (row["delivery"], row["bytes_delivered"]) == ("presigned", len(expected))


async def test_export_lists_downloads_and_erasure_revokes_them(
    play_settings: Settings, film: Film, pg: asyncpg.Connection, aiohttp_client: Any
) -> None:
    """A data access request names the films taken offline; erasing the account revokes
    their links like a downgrade does."""
    gateway: TestClient = await aiohttp_client(create_gateway(play_settings))
    admin: TestClient = await aiohttp_client(create_admin(play_settings))
    admin_email = new_email()
    await create_account(pg, admin_email, PASSWORD, role="admin")
    admin_token = await login(gateway, admin_email)
    user_id, token = await viewer(gateway, pg, plan="premium")
    body = await (await issue(gateway, token, film.movie_id)).json()
    url = local(body["url"])
    assert (await gateway.get(url, headers={"Range": "bytes=0-9"})).status == 206

    export = await (await gateway.get("/v1/me/export", headers=bearer(token))).json()
    assert [
        (d["id"], d["movie_id"], d["bytes_delivered"], d["revoked_at"]) for d in export["downloads"]
    ] == [(body["download_id"], film.movie_id, 10, None)]

    resp = await admin.delete(f"/admin/v1/users/{user_id}", headers=bearer(admin_token))
    assert resp.status == 200, await resp.text()
    row = await pg.fetchrow(
        "SELECT revoked_at, revoked_reason FROM downloads WHERE id = $1", body["download_id"]
    )
    assert row["revoked_at"] is not None
    assert row["revoked_reason"] == "erased"
    resp = await gateway.get(url)
    assert resp.status == 403

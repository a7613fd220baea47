"""Error classes (issue 10 #10): upstream faults are 502, a client hanging up is not an
outage, unknown paths are 404 — never a 500."""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app, map_domain_error
from origin import OriginError, S3Origin
from runtime import db
from runtime.settings import Settings
from tests.conftest import DEMO_PASSWORD, Film
from tests.integration.helpers import bearer


@pytest.fixture
async def client(play_settings: Settings, aiohttp_client) -> TestClient:
    return await aiohttp_client(create_app(play_settings))


async def _login(client: TestClient) -> str:
    resp = await client.post(
        "/v1/auth/login", json={"email": "premium@demo.kush", "password": DEMO_PASSWORD}
    )
    return str((await resp.json())["access_token"])


async def test_invalid_utf8_origin_playlist_is_502(
    client: TestClient, film: Film, play_settings: Settings
) -> None:
    """A master playlist at the origin that is not UTF-8 (RFC 8216 §4.1) is an upstream
    fault: 502 bad_origin_playlist, not a 500."""
    movie_id = str(uuid.uuid4())
    folder = film.origin_dir / "videos" / movie_id
    shutil.copytree(film.origin_dir / "videos" / film.movie_id, folder)
    (folder / "master.m3u8").write_bytes(b"#EXTM3U\n#EXT-X-VERSION:3\n\xff\xfe broken\n")
    conn = await db.connect(play_settings)
    try:
        await conn.execute(
            """INSERT INTO movies (id, slug, title, status, duration_s, master_key,
                   published_at, version)
               VALUES ($1, $2, 'Broken', 'published', 12, $3, now(), 1)""",
            uuid.UUID(movie_id),
            f"broken-{movie_id[:8]}",
            f"videos/{movie_id}/master.m3u8",
        )
        resp = await client.post(f"/v1/playback/{movie_id}", headers=bearer(await _login(client)))
        assert resp.status == 502, await resp.text()
        assert (await resp.json())["error"]["code"] == "bad_origin_playlist"
    finally:
        await conn.execute("DELETE FROM movies WHERE id = $1", uuid.UUID(movie_id))
        await conn.close()


async def test_origin_refusing_access_is_502() -> None:
    """An S3 endpoint answering 403 (wrong key, bucket policy) is our upstream's fault."""

    async def denied(request: web.Request) -> web.Response:
        body = "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
        return web.Response(status=403, text=body, content_type="application/xml")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", denied)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    origin = S3Origin(
        endpoint_url=f"http://127.0.0.1:{server.port}",
        bucket="films",
        access_key_id="AKIDEXAMPLE",
        secret_access_key="secret",
        region="auto",
    )
    try:
        with pytest.raises(OriginError) as caught:
            await origin.read_bytes("videos/x/master.m3u8", max_size=1024)
        mapped = map_domain_error(caught.value)
        assert mapped is not None
        assert (mapped.status, mapped.code) == (502, "origin_error")
    finally:
        await origin.close()
        await server.close()


async def test_unknown_hls_path_is_404_and_preflight_still_204(client: TestClient) -> None:
    resp = await client.get("/hls/a/b/c/d/e.ts")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"
    resp = await client.options(
        "/hls/a/b/c/d/e.ts",
        headers={"Origin": "https://player.example", "Access-Control-Request-Method": "GET"},
    )
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_client_hanging_up_mid_body_is_499_not_an_error(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that closes the connection in the middle of its request body is counted
    as 499 (nginx's "client closed request"): not a 500, not a dependency outage."""
    caplog.set_level(logging.DEBUG)
    _reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000\r\n\r\n{"email": '
    )
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.close()
    statuses: list[int] = []
    for _ in range(50):
        statuses = [
            r.fields["status"]  # type: ignore[attr-defined]
            for r in caplog.records
            if r.name == "kush.access" and r.fields["path"] == "/v1/auth/login"  # type: ignore[attr-defined]
        ]
        if statuses:
            break
        await asyncio.sleep(0.1)
    assert statuses == [499]
    assert "dependency unavailable" not in caplog.text
    assert "unhandled error" not in caplog.text
    assert (await client.get("/healthz")).status == 200

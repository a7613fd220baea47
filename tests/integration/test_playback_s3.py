"""The gateway with KUSH_ORIGIN=s3: playback through moto's S3 server on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import pytest
from aiohttp.test_utils import TestClient

from admin.publish import upload_package
from gateway.app import create_app
from gateway.keys import playback_key
from origin import S3Origin
from runtime.settings import Settings
from tests.integration.conftest import Film
from tests.integration.test_playback import follow, local, login, start, uris
from tests.support.moto_server import MotoServer


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture
async def s3_settings(play_settings: Settings, moto: MotoServer, film: Film) -> Settings:
    bucket = moto.create_bucket()
    s3 = dataclasses.replace(
        play_settings,
        origin="s3",
        s3_endpoint_url=moto.endpoint_url,
        s3_bucket=bucket,
        s3_access_key_id="testing",
        s3_secret_access_key="testing",
        s3_region="us-east-1",
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
    return s3


async def test_follow_the_link_through_s3(
    s3_settings: Settings, film: Film, aiohttp_client
) -> None:
    client: TestClient = await aiohttp_client(create_app(s3_settings))
    token = await login(client, "premium")
    body = await (await start(client, token, film.movie_id)).json()
    seen = await follow(client, body["manifest_url"])
    assert seen
    assert all(status == 200 for status in seen.values())
    await client.delete(
        f"/v1/playback/{body['session_id']}", headers={"Authorization": f"Bearer {token}"}
    )


async def test_s3_origin_down_gives_503_then_recovers(
    s3_settings: Settings, film: Film, moto: MotoServer, aiohttp_client
) -> None:
    client: TestClient = await aiohttp_client(create_app(s3_settings))
    token = await login(client, "basic")
    body = await (await start(client, token, film.movie_id)).json()
    master = await (await client.get(local(body["manifest_url"]))).text()
    variant = uris(master)[0]
    media = await (await client.get(f"/hls/{film.movie_id}/{variant}")).text()
    rendition = variant.split("/")[0]
    segs = [f"/hls/{film.movie_id}/{rendition}/{u}" for u in uris(media)]
    r = await client.get(segs[0], headers={"Range": "bytes=0-99"})
    assert r.status == 206
    assert len(await r.read()) == 100
    moto.stop()
    try:
        async with asyncio.timeout(30):
            resp = await client.get(segs[1])
        assert resp.status == 503
        assert int(resp.headers["Retry-After"]) >= 1
        assert (await resp.json())["error"]["code"] == "origin_unavailable"
    finally:
        moto.restart()
    store = client.app[playback_key].origin
    assert isinstance(store, S3Origin)
    async with asyncio.timeout(60):
        while True:
            resp = await client.get(segs[1])
            if resp.status == 200:
                break
            assert resp.status == 503
            await asyncio.sleep(0.5)
    await client.delete(
        f"/v1/playback/{body['session_id']}", headers={"Authorization": f"Bearer {token}"}
    )

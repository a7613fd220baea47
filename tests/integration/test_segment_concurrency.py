"""The per-session cap on concurrent segment requests (issue 10 #5).

A session may have ``KUSH_SESSION_MAX_CONCURRENT_SEGMENTS`` segment requests in flight;
one more is refused with 429 and ``Retry-After: 1``. It is a cap on concurrency, not on
rate: a player fetching one segment after another is never limited (DESIGN.md: at least
50 requests/s per playback session).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from runtime.settings import Settings
from tests.conftest import Film
from tests.integration.test_playback import local, login, start, uris
from tests.support.fake_origin import FakeOrigin

CAP = 4


@pytest.fixture
async def fake(film: Film) -> AsyncIterator[FakeOrigin]:
    origin = FakeOrigin(root=film.origin_dir)
    await origin.start()
    yield origin
    if origin.gate is not None:
        origin.gate.set()
    await origin.stop()


@pytest.fixture
async def client(play_settings: Settings, fake: FakeOrigin, aiohttp_client) -> TestClient:
    settings = dataclasses.replace(
        play_settings,
        origin="s3",
        s3_endpoint_url=fake.endpoint_url,
        s3_bucket="films",
        s3_access_key_id="AKIDEXAMPLE",
        s3_secret_access_key="secret",
        session_max_concurrent_segments=CAP,
    )
    return await aiohttp_client(create_app(settings))  # type: ignore[no-any-return]


async def _segments(client: TestClient, film: Film) -> tuple[str, list[str], str]:
    """A premium session's id, the tokenized paths of all its segments, its token."""
    token = await login(client, "premium")
    body = await (await start(client, token, film.movie_id)).json()
    master = await (await client.get(local(body["manifest_url"]))).text()
    segments: list[str] = []
    for variant in uris(master):
        media_url = f"/hls/{film.movie_id}/{variant}"
        media = await (await client.get(media_url)).text()
        rendition = variant.split("/")[0]
        segments += [f"/hls/{film.movie_id}/{rendition}/{uri}" for uri in uris(media)]
    return str(body["session_id"]), segments, token


async def test_concurrent_segments_beyond_the_cap_get_429(
    client: TestClient, film: Film, fake: FakeOrigin
) -> None:
    session_id, segments, token = await _segments(client, film)
    assert len(segments) > CAP
    fake.gate = asyncio.Event()

    async def fetch(path: str) -> tuple[int, int]:
        response = await client.get(path)
        return response.status, len(await response.read())

    async with asyncio.timeout(30):
        held = [asyncio.create_task(fetch(path)) for path in segments[:CAP]]
        while fake.waiting < CAP:  # noqa: ASYNC110 -- each is at the origin: bounded above
            await asyncio.sleep(0.02)
        refused = await client.get(segments[CAP])
        assert refused.status == 429
        assert refused.headers["Retry-After"] == "1"
        assert (await refused.json())["error"]["code"] == "too_many_segment_requests"
        fake.gate.set()
        results = await asyncio.gather(*held)
        assert all(status == 200 and size > 0 for status, size in results)
        # the slots are free again
        again = await client.get(segments[CAP])
        assert again.status == 200
        await again.read()
    await client.delete(f"/v1/playback/{session_id}", headers={"Authorization": f"Bearer {token}"})


async def test_sequential_segment_fetches_are_never_limited(client: TestClient, film: Film) -> None:
    """A concurrency cap, not a rate limit: 60 fetches back to back all succeed."""
    session_id, segments, token = await _segments(client, film)
    statuses = []
    async with asyncio.timeout(60):
        for i in range(60):
            response = await client.get(
                segments[i % len(segments)], headers={"Range": "bytes=0-1023"}
            )
            await response.read()
            statuses.append(response.status)
    assert statuses == [206] * 60
    await client.delete(f"/v1/playback/{session_id}", headers={"Authorization": f"Bearer {token}"})

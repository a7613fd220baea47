"""The ingest queue across processes: a ``kush worker`` killed mid-transcode leaves its
job to another after the lease; pgqueuer's schema is what migration 0006 installs."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pgqueuer import AsyncpgDriver, Queries

from admin.ingest import generate_test_source
from admin.jobs import create_job
from runtime import db
from runtime.settings import Settings
from tests.integration.jobs_support import drop_schema, fresh_schema, new_movie


@pytest.fixture
async def jobs_settings(settings: Settings, tmp_path: Path) -> AsyncIterator[Settings]:
    fresh = await fresh_schema(settings, tmp_path)
    yield fresh
    await drop_schema(fresh)


async def test_migration_installs_the_schema_pgqueuer_expects(jobs_settings: Settings) -> None:
    conn = await db.connect(jobs_settings)
    try:
        plan = await Queries(AsyncpgDriver(conn)).plan_upgrade()
    finally:
        await conn.close()
    assert list(plan.statements) == []


def _worker_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "KUSH_DB_SCHEMA": settings.db_schema,
        "KUSH_REDIS_PREFIX": settings.redis_prefix,
        "KUSH_MASTER_KEY": settings.master_key or "",
        "KUSH_DATA_DIR": str(settings.data_dir),
        "KUSH_ORIGIN_DIR": str(settings.origin_root),
        "KUSH_INGEST_PRESET": "veryfast",
        "KUSH_JOB_LEASE_SECONDS": "3",
        "KUSH_LOG_LEVEL": "INFO",
        "KUSH_LOG_FORMAT": "text",
    }


async def _spawn_worker(settings: Settings, log: Path) -> asyncio.subprocess.Process:
    # its own process group: killing it kills its ffmpeg too, as a crash of the machine would
    with log.open("wb") as stderr:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kush",
            "worker",
            env=_worker_env(settings),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )


async def _job(settings: Settings, job_id: uuid.UUID) -> dict[str, object]:
    conn = await db.connect(settings)
    try:
        row = await conn.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
    finally:
        await conn.close()
    assert row is not None
    return dict(row)


@pytest.mark.slow
async def test_a_worker_killed_mid_transcode_leaves_the_job_to_another(
    jobs_settings: Settings,
) -> None:
    source = await generate_test_source(
        jobs_settings.data_dir / "long.mp4", duration_s=30, width=1280, height=720
    )
    movie_id = await new_movie(jobs_settings)
    conn = await db.connect(jobs_settings)
    try:
        upload_id = await conn.fetchval(
            """INSERT INTO uploads (filename, content_type, size, object_key, status, expires_at)
               VALUES ('long.mp4', 'video/mp4', $1, 'uploads/x/source', 'uploaded',
                       now() + interval '1 hour') RETURNING id""",
            source.stat().st_size,
        )
        await conn.execute(
            "UPDATE uploads SET object_key = $2 WHERE id = $1",
            upload_id,
            f"uploads/{upload_id}/source",
        )
        target = jobs_settings.origin_root / "uploads" / str(upload_id) / "source"
        target.parent.mkdir(parents=True)
        os.link(source, target)
        job_id = await create_job(
            conn,
            kind="ingest_movie",
            movie_id=uuid.UUID(movie_id),
            upload_id=upload_id,
            max_attempts=3,
            created_by=None,
        )
    finally:
        await conn.close()

    first = await _spawn_worker(jobs_settings, jobs_settings.data_dir / "worker-1.log")
    second: asyncio.subprocess.Process | None = None
    try:
        async with asyncio.timeout(240):
            while True:
                job = await _job(jobs_settings, job_id)
                if job["status"] == "transcoding" and float(job["progress"]) > 0.05:  # type: ignore[arg-type]
                    break
                assert job["status"] in ("queued", "probing", "transcoding"), job
                await asyncio.sleep(0.2)
        assert job["worker"] == f"{os.uname().nodename}:{first.pid}"
        os.killpg(first.pid, signal.SIGKILL)
        await first.wait()
        second = await _spawn_worker(jobs_settings, jobs_settings.data_dir / "worker-2.log")
        async with asyncio.timeout(400):
            while True:
                job = await _job(jobs_settings, job_id)
                if job["status"] in ("ready", "failed"):
                    break
                await asyncio.sleep(0.5)
        assert job["status"] == "ready", job
        assert job["attempts"] == 2
        assert job["worker"] == f"{os.uname().nodename}:{second.pid}"
        assert job["error"] is None
        folders = sorted(
            p.name for p in (jobs_settings.origin_root / "videos" / movie_id).iterdir()
        )
        assert folders == [
            "poster.jpg",
            "v2",
            "v2-240p",
            "v2-360p",
            "v2-480p",
            "v2-720p",
            "v2-audio",
        ]
    finally:
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                os.killpg(proc.pid, signal.SIGTERM)
                await proc.wait()

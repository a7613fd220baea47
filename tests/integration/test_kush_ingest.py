"""``kush ingest FILE``: a local video becomes a published film in the HLS ladder."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from admin.ingest import generate_test_source
from runtime import db
from runtime.settings import Settings

pytestmark = pytest.mark.slow


def _env(settings: Settings, schema: str, origin: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "KUSH_DB_SCHEMA": schema,
        "KUSH_MASTER_KEY": settings.master_key or "",
        "KUSH_ORIGIN_DIR": str(origin),
        "KUSH_DATA_DIR": str(settings.data_dir),
        "KUSH_LOG_LEVEL": "WARNING",
    }


async def test_ingest_publishes_a_ladder_no_taller_than_the_source(settings: Settings) -> None:
    schema = f"kush_ingest_{secrets.token_hex(4)}"
    source = await generate_test_source(
        settings.data_dir / "src.mp4", duration_s=7, width=854, height=480
    )
    origin = settings.data_dir / "origin"
    env = _env(settings, schema, origin)
    try:
        missing = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kush",
            "ingest",
            str(settings.data_dir / "nope.mp4"),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, missing_err = await asyncio.wait_for(missing.communicate(), timeout=60)
        assert missing.returncode == 2
        assert b"no such file" in missing_err
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kush",
            "ingest",
            str(source),
            "--title",
            "Kampala Nights",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=300)
        assert proc.returncode == 0, err.decode()[-2000:]
        movie_id = out.decode().strip().rsplit("published: ", 1)[1]
        # stdout is a pipe: plain progress lines, no carriage returns
        assert "\r" not in out.decode()
        progress = [line for line in out.decode().splitlines() if line.startswith("transcoding")]
        assert progress[-1] == "transcoding 100%"
        assert 2 <= len(progress) <= 11
        conn = await db.connect(dataclasses.replace(settings, db_schema=schema))
        try:
            row = await conn.fetchrow(
                """SELECT title, status, duration_s, download_key, download_bytes
                     FROM movies WHERE id = $1""",
                uuid.UUID(movie_id),
            )
            assert row["title"] == "Kampala Nights"
            assert row["status"] == "published"
            assert row["duration_s"] == pytest.approx(7, abs=0.5)
            # the offline copy sits in the version's folder, switched with it
            assert row["download_key"] == f"videos/{movie_id}/v2/download.mp4"
            download = origin / "videos" / movie_id / "v2" / "download.mp4"
            assert row["download_bytes"] == download.stat().st_size > 0
            names = {
                r["name"]
                for r in await conn.fetch(
                    "SELECT name FROM renditions WHERE movie_id = $1", uuid.UUID(movie_id)
                )
            }
            # rendition folders are named after the film's version (re-ingest is atomic)
            assert "v2-480p" in names
            assert not names & {"v2-1080p", "v2-720p"}  # never above the source
        finally:
            await conn.close()
        assert (origin / "videos" / movie_id / "v2" / "master.m3u8").is_file()
        assert (origin / "videos" / movie_id / "poster.jpg").is_file()
    finally:
        conn2 = await asyncpg.connect(settings.database_url)
        await conn2.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn2.close()

"""Migrations against the real PostgreSQL: from empty, re-run, two concurrent runs."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets

import asyncpg
import pytest

from runtime import db
from runtime.settings import Settings


async def _fresh_schema(settings: Settings) -> Settings:
    return dataclasses.replace(settings, db_schema=f"kush_mig_{secrets.token_hex(4)}")


async def _drop(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{settings.db_schema}" CASCADE')
    finally:
        await conn.close()


async def test_from_empty_then_rerun_is_noop(settings: Settings) -> None:
    fresh = await _fresh_schema(settings)
    versions = [m.version for m in db.load_migrations()]
    conn = await db.connect(fresh)
    try:
        assert await db.migrate(conn, fresh.db_schema) == versions
        assert await db.migrate(conn, fresh.db_schema) == []
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == versions
        plans = await conn.fetch(
            "SELECT id, max_height, max_streams FROM plans WHERE kind = 'plan' ORDER BY rank"
        )
        assert [(p["id"], p["max_height"], p["max_streams"]) for p in plans] == [
            ("free", 480, 1),
            ("basic", 720, 1),
            ("premium", 1080, 3),
        ]
        passes = await conn.fetch(
            """SELECT id, grants_plan, period_days, amount_ugx, currency FROM plans
                WHERE kind = 'pass' ORDER BY period_days"""
        )
        assert [tuple(p) for p in passes] == [
            ("day_pass", "premium", 1, 1000, "ugx"),
            ("week_pass", "premium", 7, 5000, "ugx"),
        ]
    finally:
        await conn.close()
        await _drop(fresh)


async def test_two_concurrent_runs_one_applies_one_waits(settings: Settings) -> None:
    fresh = await _fresh_schema(settings)
    a = await db.connect(fresh)
    b = await db.connect(fresh)
    try:
        results = await asyncio.gather(
            db.migrate(a, fresh.db_schema), db.migrate(b, fresh.db_schema)
        )
        versions = [m.version for m in db.load_migrations()]
        assert sorted(results, key=len) == [[], versions]
        count = await a.fetchval("SELECT count(*) FROM schema_migrations")
        assert count == len(versions)
    finally:
        await a.close()
        await b.close()
        await _drop(fresh)


async def test_failed_migration_rolls_back(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = await _fresh_schema(settings)
    good = db.load_migrations()
    bad_sql = "CREATE TABLE t_ok (x int); SELEC 1"
    broken = [*good, db.Migration(version=9999, name="broken", sql=bad_sql)]
    monkeypatch.setattr(db, "load_migrations", lambda: broken)
    conn = await db.connect(fresh)
    try:
        with pytest.raises(asyncpg.PostgresSyntaxError):
            await db.migrate(conn, fresh.db_schema)
        assert await conn.fetchval("SELECT to_regclass('t_ok')") is None
        assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == good[-1].version
        # The advisory lock was released: another run can proceed.
        monkeypatch.setattr(db, "load_migrations", lambda: good)
        assert await db.migrate(conn, fresh.db_schema) == []
    finally:
        await conn.close()
        await _drop(fresh)

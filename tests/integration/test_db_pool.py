"""The service pool's release: no reset round trip, an open transaction still rolled
back (``runtime.db.create_pool``)."""

from __future__ import annotations

import dataclasses

from runtime import db
from runtime.settings import Settings


async def test_a_release_sends_nothing_to_postgresql(settings: Settings) -> None:
    pool = await db.create_pool(dataclasses.replace(settings, db_pool_size=1))
    watcher = await db.connect(settings)
    try:
        async with pool.acquire() as conn:
            pid = conn.get_server_pid()
            await conn.fetchval("SELECT 42 AS kush_pool_marker")
        # the connection's last statement is still ours: no reset query followed it
        last = await watcher.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid)
        assert last == "SELECT 42 AS kush_pool_marker"
    finally:
        await watcher.close()
        await pool.close()


async def test_a_transaction_left_open_is_rolled_back_on_release(settings: Settings) -> None:
    pool = await db.create_pool(dataclasses.replace(settings, db_pool_size=1))
    try:
        async with pool.acquire() as conn:
            first = conn.get_server_pid()
            await conn.execute("BEGIN")
            assert conn.is_in_transaction()
        async with pool.acquire() as conn:
            assert conn.get_server_pid() == first  # the same connection, back from the pool
            assert not conn.is_in_transaction()
    finally:
        await pool.close()

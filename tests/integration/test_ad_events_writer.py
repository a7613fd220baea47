"""Ad events: Redis stream -> PostgreSQL exactly once, across a worker crash and replays."""

from __future__ import annotations

import uuid

import asyncpg
from redis.asyncio import Redis

from gateway.ads.tracking import emit, stream_key
from gateway.ads.writer import GROUP, drain_once, ensure_group
from runtime import db
from runtime.redis import Keys
from runtime.settings import Settings


async def test_exactly_once_through_a_crash_and_a_replay(settings: Settings, redis: Redis) -> None:
    keys = Keys(settings.redis_prefix + f"w{uuid.uuid4().hex[:6]}:")
    pool = await db.create_pool(settings)
    session_id = f"s-{uuid.uuid4().hex[:12]}"
    ad_id, campaign_id = str(uuid.uuid4()), str(uuid.uuid4())
    events = ["impression", "first_quartile", "midpoint", "third_quartile", "complete"]
    try:
        await ensure_group(redis, keys)
        await emit(
            redis,
            keys,
            session_id=session_id,
            ad_id=ad_id,
            campaign_id=campaign_id,
            pod_index=0,
            events=events,
        )
        # a worker reads the batch and dies before writing or acknowledging it
        read = await redis.xreadgroup(GROUP, "dead-worker", {stream_key(keys): ">"}, count=100)
        assert len(read[0][1]) == len(events)
        assert await _count(pool, session_id) == 0
        # the next worker claims the dead one's pending entries and writes them
        await drain_once(pool, redis, keys, "live-worker", claim_idle_ms=0, block_ms=10)
        assert await _count(pool, session_id) == len(events)
        pending = await redis.xpending(stream_key(keys), GROUP)
        assert pending["pending"] == 0
        # the same events again (a replayed stream, a retried request): no double counting
        await emit(
            redis,
            keys,
            session_id=session_id,
            ad_id=ad_id,
            campaign_id=campaign_id,
            pod_index=0,
            events=events,
        )
        await drain_once(pool, redis, keys, "live-worker", claim_idle_ms=0, block_ms=10)
        assert await _count(pool, session_id) == len(events)
        # malformed entries are dropped (and acknowledged), never crash the writer
        await redis.xadd(stream_key(keys), {"event": "bogus", "session_id": "x"})
        await drain_once(pool, redis, keys, "live-worker", claim_idle_ms=0, block_ms=10)
        assert (await redis.xpending(stream_key(keys), GROUP))["pending"] == 0
    finally:
        await pool.close()


async def _count(pool: asyncpg.Pool, session_id: str) -> int:
    return int(
        await pool.fetchval("SELECT count(*) FROM ad_events WHERE session_id = $1", session_id)
    )

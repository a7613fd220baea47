"""The ``kush worker`` job that moves ad events from the Redis stream to PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from gateway.ads.tracking import stream_key
from runtime.jobs import WorkerContext
from runtime.redis import Keys

log = logging.getLogger(__name__)

GROUP = "ad-writers"
BATCH = 200
BLOCK_MS = 1000
CLAIM_IDLE_MS = 30_000
EVENTS = frozenset(
    {
        "impression",
        "confirmed_impression",
        "first_quartile",
        "midpoint",
        "third_quartile",
        "complete",
    }
)


def consumer_name() -> str:
    """Unique per process, stable for its life."""
    return f"{socket.gethostname()}-{os.getpid()}"


async def ensure_group(redis: Redis, keys: Keys) -> None:
    """Create the consumer group (and the stream) if needed."""
    try:
        await redis.xgroup_create(stream_key(keys), GROUP, id="0", mkstream=True)
    except ResponseError as err:
        if "BUSYGROUP" not in str(err):
            raise


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _rows(entries: list[tuple[Any, dict[Any, Any]]]) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for _, fields in entries:
        f = {_text(k): _text(v) for k, v in fields.items()}
        try:
            event = f["event"]
            if event not in EVENTS:
                raise ValueError(event)
            rows.append(
                (
                    f["session_id"],
                    uuid.UUID(f["ad_id"]),
                    uuid.UUID(f["campaign_id"]) if f.get("campaign_id") else None,
                    int(f["pod_index"]),
                    event,
                    datetime.fromtimestamp(float(f["ts"]), tz=UTC),
                )
            )
        except (KeyError, ValueError) as err:
            log.warning("dropping malformed ad event: %s", type(err).__name__)
    return rows


async def write_batch(
    pool: asyncpg.Pool, redis: Redis, keys: Keys, entries: list[tuple[Any, dict[Any, Any]]]
) -> int:
    """Insert a batch idempotently, then acknowledge it. Returns rows newly written."""
    if not entries:
        return 0
    rows = _rows(entries)
    written = 0
    if rows:
        columns = list(zip(*rows, strict=True))
        inserted = await pool.fetch(
            """INSERT INTO ad_events (session_id, ad_id, campaign_id, pod_index, event,
                   occurred_at)
               SELECT * FROM unnest($1::text[], $2::uuid[], $3::uuid[], $4::int[],
                                    $5::text[], $6::timestamptz[])
               ON CONFLICT (session_id, ad_id, pod_index, event) DO NOTHING
               RETURNING 1""",
            *[list(c) for c in columns],
        )
        written = len(inserted)
    await redis.xack(stream_key(keys), GROUP, *[entry_id for entry_id, _ in entries])
    return written


async def drain_once(
    pool: asyncpg.Pool,
    redis: Redis,
    keys: Keys,
    consumer: str,
    *,
    claim_idle_ms: int = CLAIM_IDLE_MS,
    block_ms: int = BLOCK_MS,
) -> int:
    """One step: re-claim stale pending entries of dead workers, then read new ones."""
    total = 0
    claimed = await redis.xautoclaim(
        stream_key(keys),
        GROUP,
        consumer,
        min_idle_time=claim_idle_ms,
        start_id="0-0",
        count=BATCH,
    )
    if claimed and claimed[1]:
        total += await write_batch(pool, redis, keys, list(claimed[1]))
    # our own pending entries first (after a crash of this consumer name), then new ones
    for start in ("0", ">"):
        response: Any = await redis.xreadgroup(
            GROUP,
            consumer,
            {stream_key(keys): start},
            count=BATCH,
            block=block_ms if start == ">" else None,
        )
        for _, entries in response or []:
            if entries:
                total += await write_batch(pool, redis, keys, list(entries))
    return total


async def ad_events_job(ctx: WorkerContext, stop: asyncio.Event) -> None:
    """Run until ``stop``: keep the table in step with the stream."""
    consumer = consumer_name()
    while not stop.is_set():
        try:
            await ensure_group(ctx.redis, ctx.keys)
            await drain_once(ctx.pool, ctx.redis, ctx.keys, consumer)
        except (OSError, asyncpg.PostgresError, RedisError) as exc:
            log.warning("ad event writer paused: %s", type(exc).__name__)
            await asyncio.sleep(1.0)


def _entry_seconds(entry_id: Any) -> float:
    """When the gateway added a stream entry (its id is ``<unix ms>-<seq>``)."""
    return int(_text(entry_id).split("-", 1)[0]) / 1000


async def oldest_unwritten_age(redis: Redis, keys: Keys, now: float) -> float:
    """Seconds the oldest ad event not yet written to PostgreSQL has waited (0 when none
    waits): the oldest entry read but not acknowledged by the writers' group, else the
    first one after the group's last delivered entry (the whole stream without a group)."""
    stream = stream_key(keys)
    try:
        pending = await redis.xpending(stream, GROUP)
    except ResponseError as err:
        if "NOGROUP" not in str(err):
            raise
        first = await redis.xrange(stream, count=1)
    else:
        if pending["pending"]:
            return max(0.0, now - _entry_seconds(pending["min"]))
        (group,) = [g for g in await redis.xinfo_groups(stream) if _text(g["name"]) == GROUP]
        after = "(" + _text(group["last-delivered-id"])
        first = await redis.xrange(stream, min=after, count=1)
    if not first:
        return 0.0
    return max(0.0, now - _entry_seconds(first[0][0]))

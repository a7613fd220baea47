"""``kush worker``'s /metrics on ``KUSH_WORKER_METRICS_PORT``: the job queue's depth,
the ad-event lag, job durations and process metrics, read when scraped."""

from __future__ import annotations

import dataclasses
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from admin.jobs import enqueue
from gateway.ads.tracking import stream_key
from gateway.ads.writer import GROUP, ensure_group
from kush.worker import serve_metrics, watch_queues
from runtime import db
from runtime.jobs import WorkerContext
from runtime.settings import Settings
from tests.integration.helpers import free_port
from tests.integration.jobs_support import drop_schema, fresh_schema

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
async def ctx(settings: Settings, tmp_path: Path) -> AsyncIterator[WorkerContext]:
    """A worker's context on a schema of its own (an empty queue), metrics watched."""
    fresh = await fresh_schema(settings, tmp_path, worker_metrics_port=free_port())
    pool = await db.create_pool(fresh)
    redis = Redis.from_url(fresh.redis_url or "")
    context = WorkerContext(fresh, pool, redis)
    watch_queues(context)
    try:
        yield context
    finally:
        await redis.aclose()
        await pool.close()
        await drop_schema(fresh)


async def scrape(port: int) -> Samples:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as resp,
    ):
        assert resp.status == 200
        assert resp.content_type == "text/plain"
        text = await resp.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def depth(samples: Samples) -> float:
    return samples[("kush_worker_queue_depth", (("entrypoint", "ingest"),))]


def lag(samples: Samples) -> float:
    return samples[("kush_worker_ad_event_lag_seconds", ())]


async def test_queue_depth_counts_the_queued_jobs(ctx: WorkerContext) -> None:
    async with serve_metrics(ctx) as port:
        assert port == ctx.settings.worker_metrics_port
        assert depth(await scrape(port)) == 0
        async with ctx.pool.acquire() as conn:
            for _ in range(3):
                await enqueue(conn, uuid.uuid4())
            await enqueue(conn, uuid.uuid4(), delay_s=3600)  # delayed: still waiting
        samples = await scrape(port)
        assert depth(samples) == 4
        # no ad events: no lag; process metrics of the worker itself
        assert lag(samples) == 0
        assert samples[("process_resident_memory_bytes", ())] > 0


async def test_ad_event_lag_is_the_age_of_the_oldest_unwritten_event(
    ctx: WorkerContext,
) -> None:
    stream = stream_key(ctx.keys)
    # an event the gateway added 40 s ago (a stream id is its time in milliseconds)
    added_ms = int(time.time() * 1000) - 40_000
    await ctx.redis.xadd(stream, {"event": "impression"}, id=f"{added_ms}-0")
    async with serve_metrics(ctx) as port:
        assert port is not None
        assert lag(await scrape(port)) >= 40  # no writer group yet: the whole stream waits
        await ensure_group(ctx.redis, ctx.keys)
        assert lag(await scrape(port)) >= 40  # not yet delivered to a writer
        read = await ctx.redis.xreadgroup(GROUP, "test-writer", {stream: ">"}, count=10)
        ((_, entries),) = read
        assert lag(await scrape(port)) >= 40  # delivered, not acknowledged (not written)
        await ctx.redis.xack(stream, GROUP, entries[0][0])
        assert lag(await scrape(port)) == 0


async def test_job_durations_by_outcome(ctx: WorkerContext) -> None:
    ctx.job_done("ingest", "ready", 42.0)
    ctx.job_done("ingest", "failed", 3.0)
    async with serve_metrics(ctx) as port:
        assert port is not None
        samples = await scrape(port)
    ready = (("entrypoint", "ingest"), ("outcome", "ready"))
    assert samples[("kush_worker_job_duration_seconds_count", ready)] == 1
    assert samples[("kush_worker_job_duration_seconds_sum", ready)] == 42.0


async def test_no_server_when_disabled_or_the_port_is_taken(ctx: WorkerContext) -> None:
    off = WorkerContext(
        dataclasses.replace(ctx.settings, worker_metrics_port=0), ctx.pool, ctx.redis
    )
    async with serve_metrics(off) as port:
        assert port is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = dataclasses.replace(ctx.settings, worker_metrics_port=taken.getsockname()[1])
        async with serve_metrics(WorkerContext(busy, ctx.pool, ctx.redis)) as port:
            assert port is None  # logged; the jobs would run anyway

"""``kush worker``: runs every background job in :data:`JOBS` until SIGINT/SIGTERM.

One of them serves the ingest queue (`admin.jobs.serve_queue`): several workers, on
several machines, share it. The worker's metrics (queue depth, job durations, ad-event
lag, process) are served on ``KUSH_WORKER_METRICS_PORT`` (`serve_metrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Gauge
from redis.exceptions import RedisError

from admin.billing.jobs import billing_followups_job
from admin.billing.mobile_money import mobile_money_job
from admin.jobs import ENTRYPOINT, queue_depth, serve_queue
from billing.mail import mail_outbox_job
from gateway.ads.writer import ad_events_job, oldest_unwritten_age
from runtime import db
from runtime.jobs import Job, WorkerContext
from runtime.redis import create_redis
from runtime.settings import Settings
from tokens.service.auth import mirror_revocations
from tokens.service.session_endings import sweep_ended_sessions

log = logging.getLogger(__name__)

HOUSEKEEPING_EVERY_S = 300.0
SYNC_EVERY_S = 2.0
#: how far back each pass looks again: a revoking transaction that started before the
#: previous pass but committed after it is still seen
SYNC_OVERLAP_S = 60.0


async def housekeeping(ctx: WorkerContext, stop: asyncio.Event) -> None:
    """Delete expired revocations and refresh tokens; they can no longer be presented."""
    while not stop.is_set():
        try:
            await ctx.pool.execute("DELETE FROM revoked_tokens WHERE expires_at < now()")
            await ctx.pool.execute(
                "DELETE FROM refresh_tokens WHERE expires_at < now() - interval '1 day'"
            )
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("housekeeping skipped: %s", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=HOUSEKEEPING_EVERY_S)


async def sync_step(ctx: WorkerContext, since: datetime | None) -> datetime:
    """Mirror PostgreSQL's recent revocations and ended sessions into Redis (all of them
    when ``since`` is None); returns where the next pass starts."""
    started = await ctx.pool.fetchval("SELECT now()")
    low = None if since is None else since - timedelta(seconds=SYNC_OVERLAP_S)
    await mirror_revocations(ctx.pool, ctx.redis, ctx.keys, since=low)
    await sweep_ended_sessions(ctx.pool, ctx.redis, ctx.keys, since=low, now=time.time())
    assert isinstance(started, datetime)
    return started


async def revocation_sync(ctx: WorkerContext, stop: asyncio.Event) -> None:
    """Keep Redis in step with PostgreSQL for revocations and ended playback sessions:
    the backstop when a gateway's Redis write failed after PostgreSQL committed."""
    since: datetime | None = None
    while not stop.is_set():
        try:
            since = await sync_step(ctx, since)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, RedisError) as exc:
            log.warning("revocation sync paused: %s", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=SYNC_EVERY_S)


async def ingest_queue(ctx: WorkerContext, stop: asyncio.Event) -> None:
    """Run ingest jobs (films and ad creatives) from the PostgreSQL queue."""

    def done(outcome: str, seconds: float) -> None:
        ctx.job_done(ENTRYPOINT, outcome, seconds)

    await serve_queue(ctx.settings, ctx.pool, ctx.redis, stop, on_done=done)


#: Every job the worker runs, written out (one process runs them all).
JOBS: tuple[Job, ...] = (
    housekeeping,
    ad_events_job,
    revocation_sync,
    ingest_queue,
    # billing: the mail outbox, and webhook follow-ups with the plan-expiry sweep
    mail_outbox_job,
    billing_followups_job,
    # mobile money: status queries for payments whose callback never came, expiry
    mobile_money_job,
)


def watch_queues(ctx: WorkerContext) -> None:
    """Probes read when the worker is scraped: the job queue's depth (PostgreSQL) and the
    ad-event lag (Redis). Both are the same for every worker: aggregate with max. A probe
    that fails leaves NaN."""
    registry = ctx.metrics.registry
    depth = Gauge(
        "kush_worker_queue_depth",
        "Jobs waiting in the queue (due or delayed), by entrypoint",
        ["entrypoint"],
        registry=registry,
    )
    lag = Gauge(
        "kush_worker_ad_event_lag_seconds",
        "How long the oldest ad event not yet written to PostgreSQL has waited (0: none)",
        registry=registry,
    )

    async def read_depth() -> None:
        depth.labels(ENTRYPOINT).set(float("nan"))
        for entrypoint, count in (await queue_depth(ctx.pool)).items():
            depth.labels(entrypoint).set(count)

    async def read_lag() -> None:
        lag.set(float("nan"))
        lag.set(await oldest_unwritten_age(ctx.redis, ctx.keys, time.time()))

    ctx.metrics.probes += [read_depth, read_lag]


async def _metrics_view(request: web.Request) -> web.Response:
    body = await request.app[_metrics_ctx_key].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


_metrics_ctx_key = web.AppKey("worker_context", WorkerContext)


@contextlib.asynccontextmanager
async def serve_metrics(ctx: WorkerContext) -> AsyncIterator[int | None]:
    """``GET /metrics`` on ``KUSH_HOST:KUSH_WORKER_METRICS_PORT`` while inside; yields
    the port it listens on (None when the setting is 0, or when the port is taken: the
    jobs run anyway, and Prometheus sees the worker down)."""
    settings = ctx.settings
    if not settings.worker_metrics_port:
        yield None
        return
    app = web.Application()
    app[_metrics_ctx_key] = ctx
    app.router.add_get("/metrics", _metrics_view)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.worker_metrics_port)
        try:
            await site.start()
        except OSError as exc:
            log.error(
                "worker metrics not served: %s:%d: %s",
                settings.host,
                settings.worker_metrics_port,
                exc.strerror or type(exc).__name__,
            )
            yield None
            return
        log.info("worker metrics on http://%s:%d/metrics", settings.host, site_port(runner))
        yield site_port(runner)
    finally:
        await runner.cleanup()


def site_port(runner: web.AppRunner) -> int | None:
    """The port the runner's first socket listens on."""
    for address in runner.addresses:
        return int(address[1])
    return None


async def run_worker(settings: Settings) -> int:
    """Run every registered job until SIGINT/SIGTERM, then let them finish their step."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    pool = await db.create_pool(settings)
    redis = create_redis(settings)
    ctx = WorkerContext(settings, pool, redis)
    watch_queues(ctx)
    log.info("worker started with %d jobs", len(JOBS))
    try:
        async with serve_metrics(ctx):
            tasks = [asyncio.create_task(job(ctx, stop)) for job in JOBS]
            await stop.wait()
            done, pending = await asyncio.wait(tasks, timeout=10.0)
            for task in pending:
                task.cancel()
            for task in done:
                if task.exception() is not None:
                    log.error("job failed: %r", task.exception())
    finally:
        await redis.aclose()
        await pool.close()
    log.info("worker stopped")
    return 0

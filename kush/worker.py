"""``kush worker``: runs every background job in :data:`JOBS` until SIGINT/SIGTERM.

One of them serves the ingest queue (`admin.jobs.serve_queue`): several workers, on
several machines, share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from datetime import datetime, timedelta

import asyncpg
from redis.exceptions import RedisError

from admin.billing.jobs import billing_followups_job
from admin.billing.mobile_money import mobile_money_job
from admin.jobs import serve_queue
from billing.mail import mail_outbox_job
from gateway.ads.writer import ad_events_job
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
    await serve_queue(ctx.settings, ctx.pool, ctx.redis, stop)


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


async def run_worker(settings: Settings) -> int:
    """Run every registered job until SIGINT/SIGTERM, then let them finish their step."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    pool = await db.create_pool(settings)
    redis = create_redis(settings)
    ctx = WorkerContext(settings, pool, redis)
    log.info("worker started with %d jobs", len(JOBS))
    try:
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

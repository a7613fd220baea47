"""``kush worker`` follow-ups of billing: what webhooks and grants leave for later.

- ``enforce_plan`` jobs the webhook or a grant could not run right after its commit
  (Redis down, a crash): end the sessions above the user's plan;
- ``refresh_subscription`` jobs: re-read a subscription from Stripe when two events of
  the same second left its order in doubt, and store Stripe's answer;
- the time sweep: plans that change by time alone (a grace period or a grant running
  out, ``entitlements.recheck_at``) are recomputed and enforced when they are due.

Jobs are claimed under a lease (``FOR UPDATE SKIP LOCKED``), retried with backoff and
given up after ``MAX_ATTEMPTS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import asyncpg

from admin.billing.enforce import PlanChange, enforce_plan, lock_user, record_plan, run_jobs
from admin.billing.events import apply_state, subscription_state
from billing.provider import BillingProvider, create_provider
from billing.store import grace_of
from runtime.jobs import WorkerContext
from runtime.settings import Settings
from tokens.service.sessions import SessionStore

log = logging.getLogger(__name__)

POLL_S = 5.0
BATCH = 20
LEASE_S = 120
MAX_ATTEMPTS = 10


async def sweep_rechecks(
    pool: asyncpg.Pool, sessions: SessionStore, settings: Settings, *, limit: int = 100
) -> list[PlanChange]:
    """Recompute the plans due for a recheck (grace or grant ran out) and enforce the
    ones that changed."""
    grace = grace_of(settings)
    due = await pool.fetch(
        "SELECT user_id FROM entitlements WHERE recheck_at <= now() ORDER BY recheck_at LIMIT $1",
        limit,
    )
    changes: list[PlanChange] = []
    for row in due:
        user_id = str(row["user_id"])
        async with pool.acquire() as conn, conn.transaction():
            await lock_user(conn, user_id)
            change = await record_plan(conn, user_id, grace=grace)
        if change is not None:
            changes.append(change)
    if changes:
        await run_jobs(pool, sessions, changes, grace=grace)
    return changes


async def refresh_subscription(
    pool: asyncpg.Pool,
    sessions: SessionStore,
    settings: Settings,
    provider: BillingProvider,
    user_id: str,
    subscription_id: str,
) -> None:
    """Store Stripe's current view of a subscription (newer than any event we have)."""
    obj = await provider.retrieve_subscription(subscription_id)
    state = subscription_state(settings, obj)
    grace = grace_of(settings)
    async with pool.acquire() as conn, conn.transaction():
        await lock_user(conn, user_id)
        await apply_state(conn, user_id, state, datetime.now(UTC))
        change = await record_plan(conn, user_id, grace=grace)
    if change is not None:
        await run_jobs(pool, sessions, [change], grace=grace)


_CLAIM_SQL = """
UPDATE billing_jobs SET locked_until = now() + make_interval(secs => $1),
                        attempts = attempts + 1
 WHERE id IN (SELECT id FROM billing_jobs
               WHERE done_at IS NULL AND run_after <= now()
                 AND (locked_until IS NULL OR locked_until < now())
               ORDER BY run_after FOR UPDATE SKIP LOCKED LIMIT $2)
RETURNING id, kind, user_id, ref, attempts
"""


async def run_due_jobs(
    pool: asyncpg.Pool,
    sessions: SessionStore,
    settings: Settings,
    provider: BillingProvider | None,
) -> int:
    """Run the billing jobs that are due; returns how many were tried."""
    rows = await pool.fetch(_CLAIM_SQL, LEASE_S, BATCH)
    grace = grace_of(settings)
    for job in rows:
        user_id = str(job["user_id"]) if job["user_id"] else None
        try:
            if user_id is None:
                pass
            elif job["kind"] == "enforce_plan":
                await enforce_plan(pool, sessions, user_id, grace=grace)
            elif provider is None:
                log.info("billing job %d skipped: billing is not configured", job["id"])
            else:
                await refresh_subscription(
                    pool, sessions, settings, provider, user_id, str(job["ref"])
                )
        except Exception as err:
            give_up = job["attempts"] >= MAX_ATTEMPTS
            delay = min(3600, 30 * 2 ** (job["attempts"] - 1))
            log.warning(
                "billing job %d (%s) failed: %s%s",
                job["id"],
                job["kind"],
                type(err).__name__,
                "; giving up" if give_up else f"; retry in {delay} s",
            )
            await pool.execute(
                """UPDATE billing_jobs SET locked_until = NULL, last_error = $2,
                          run_after = now() + make_interval(secs => $3),
                          done_at = CASE WHEN $4 THEN now() END
                    WHERE id = $1""",
                job["id"],
                type(err).__name__,
                delay,
                give_up,
            )
            continue
        await pool.execute(
            "UPDATE billing_jobs SET done_at = now(), locked_until = NULL WHERE id = $1",
            job["id"],
        )
    return len(rows)


async def billing_followups_job(ctx: WorkerContext, stop: asyncio.Event) -> None:
    """``kush worker`` job: billing follow-ups and the time sweep, until stopped."""
    sessions = SessionStore(ctx.pool, ctx.redis, ctx.keys)
    provider = create_provider(ctx.settings)
    try:
        while not stop.is_set():
            try:
                await sweep_rechecks(ctx.pool, sessions, ctx.settings)
                await run_due_jobs(ctx.pool, sessions, ctx.settings, provider)
            except Exception as exc:  # PostgreSQL or Redis away: try again next round
                log.warning("billing follow-ups skipped: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=POLL_S)
    finally:
        if provider is not None:
            await provider.close()


__all__ = ["billing_followups_job", "refresh_subscription", "run_due_jobs", "sweep_rechecks"]

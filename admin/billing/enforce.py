"""Applying a change of effective plan: noticed in the transaction that causes it,
enforced on live playback sessions right after the commit.

:func:`record_plan` runs inside the caller's transaction: it computes the user's
effective plan (:func:`billing.plans.effective_plan`), compares it with the one last
enforced (``entitlements``), stores the new one and, when it changed, queues an
``enforce_plan`` job in the same transaction. The caller then runs :func:`run_jobs` at
once; the job row is the retry should that fail (``kush worker`` picks it up).

Enforcing ends the user's live sessions started under a plan above the new one
(``tokens.service.sessions.end_sessions_beyond_plan``): their next segment is refused with
``plan_changed`` on every gateway worker within a second (the workers' session cache
lives 0.5 s). New playback reads the plan fresh, so it needs nothing. A plan without
offline downloads also revokes the user's downloads (`billing.downloads`): their
gateway download URLs are refused from then on.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from billing.downloads import PLAN_CHANGED, revoke_downloads
from billing.store import UserPlan, load_user_plan, utcnow
from tokens.service.sessions import SessionStore, end_sessions_beyond_plan

log = logging.getLogger(__name__)

INLINE_GRACE_S = 30


@dataclass(frozen=True, slots=True)
class PlanChange:
    """The effective plan of one user moved (``old`` None: never recorded before)."""

    user_id: str
    old: str | None
    new: str
    job_id: int


async def lock_user(conn: asyncpg.Connection, user_id: str) -> None:
    """Serialise billing writes of one user until the transaction ends."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('kush-billing:' || $1::text, 0))",
        user_id,
    )


async def record_plan(
    conn: asyncpg.Connection, user_id: str, *, grace: timedelta, now: datetime | None = None
) -> PlanChange | None:
    """In the caller's transaction: store the user's effective plan and, if it changed,
    queue its enforcement. Returns the change, or None."""
    key = uuid.UUID(user_id)
    current = await load_user_plan(conn, key, grace=grace, now=now or utcnow())
    old = await conn.fetchval("SELECT plan_id FROM entitlements WHERE user_id = $1 FOR UPDATE", key)
    new = current.plan
    await conn.execute(
        """INSERT INTO entitlements (user_id, plan_id, recheck_at) VALUES ($1, $2, $3)
           ON CONFLICT (user_id) DO UPDATE
              SET plan_id = EXCLUDED.plan_id, recheck_at = EXCLUDED.recheck_at,
                  changed_at = CASE WHEN entitlements.plan_id <> EXCLUDED.plan_id
                                    THEN now() ELSE entitlements.changed_at END""",
        key,
        new,
        current.effective.recheck_at,
    )
    if old == new:
        return None
    # the caller enforces right after its commit; the worker only takes the job if that
    # did not happen (run_after leaves the caller the time to do it)
    job_id = await conn.fetchval(
        """INSERT INTO billing_jobs (kind, user_id, run_after)
           VALUES ('enforce_plan', $1, now() + make_interval(secs => $2)) RETURNING id""",
        key,
        INLINE_GRACE_S,
    )
    log.info("plan of user %s: %s -> %s", user_id, old or "(unrecorded)", new)
    return PlanChange(user_id, old, new, int(job_id))


def allowed_plans(current: UserPlan) -> frozenset[str]:
    """The plans whose sessions the current plan covers (its rank or below)."""
    rank = current.limits.rank
    return frozenset(p for p, limits in current.plans.items() if limits.rank <= rank)


async def enforce_plan(
    pool: asyncpg.Pool, sessions: SessionStore, user_id: str, *, grace: timedelta
) -> list[str]:
    """End the user's live sessions above their effective plan (read fresh), and revoke
    their downloads if it includes none; idempotent."""
    current = await load_user_plan(pool, user_id, grace=grace)
    if not current.limits.downloads:
        revoked = await revoke_downloads(pool, user_id, reason=PLAN_CHANGED)
        if revoked:
            log.info("revoked %d downloads of user %s (plan %s)", revoked, user_id, current.plan)
    ended = await end_sessions_beyond_plan(sessions, user_id, allowed_plans=allowed_plans(current))
    if ended:
        log.info(
            "ended %d playback sessions of user %s above plan %s",
            len(ended),
            user_id,
            current.plan,
        )
    return ended


async def run_jobs(
    pool: asyncpg.Pool, sessions: SessionStore, changes: list[PlanChange], *, grace: timedelta
) -> list[str]:
    """Enforce committed plan changes now; a failure leaves the job to ``kush worker``.
    Returns the ids of the sessions ended."""
    ended: list[str] = []
    for change in changes:
        try:
            ended += await enforce_plan(pool, sessions, change.user_id, grace=grace)
        except Exception:
            log.warning(
                "enforcing the plan of user %s deferred to the worker",
                change.user_id,
                exc_info=True,
            )
            continue
        await pool.execute(
            "UPDATE billing_jobs SET done_at = now(), attempts = attempts + 1 WHERE id = $1",
            change.job_id,
        )
    return ended

"""The effective plan as last enforced (``entitlements``): noticing, in the transaction
that causes it, that a user's plan changed, and queueing its enforcement.

Shared by the admin service (webhooks, grants, mobile money callbacks), the gateway
(a mobile money payment starting provisional access) and ``kush worker`` (sweeps);
enforcing on live sessions is ``admin.billing.enforce``.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from billing.store import load_user_plan, utcnow

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

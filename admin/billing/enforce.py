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
from datetime import timedelta

import asyncpg

from billing.downloads import revoke_downloads
from billing.entitlements import PlanChange, lock_user, record_plan
from billing.store import UserPlan, load_user_plan
from tokens.service.session_endings import PAYMENT_NOT_CONFIRMED, PLAN_CHANGED
from tokens.service.sessions import SessionStore, end_sessions_beyond_plan

log = logging.getLogger(__name__)

__all__ = [
    "PlanChange",
    "allowed_plans",
    "ending_reason",
    "enforce_plan",
    "lock_user",
    "record_plan",
    "run_jobs",
]


async def ending_reason(conn: asyncpg.Connection | asyncpg.Pool, user_id: str) -> str:
    """Why sessions above the user's plan end now: ``payment_not_confirmed`` when a
    provisional grant of the past hour ended without a confirmed payment, else
    ``plan_changed``."""
    unconfirmed = await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM mobile_money_payments
                           WHERE user_id = $1 AND status <> 'successful'
                             AND provisional_until > now() - interval '1 hour'
                             AND (status <> 'pending' OR provisional_until <= now()))""",
        uuid.UUID(user_id),
    )
    return PAYMENT_NOT_CONFIRMED if unconfirmed else PLAN_CHANGED


def allowed_plans(current: UserPlan) -> frozenset[str]:
    """The plans whose sessions the current plan covers (its rank or below)."""
    rank = current.limits.rank
    return frozenset(p for p, limits in current.plans.items() if limits.rank <= rank)


async def enforce_plan(
    pool: asyncpg.Pool, sessions: SessionStore, user_id: str, *, grace: timedelta
) -> list[str]:
    """End the user's live sessions above their effective plan (read fresh), and revoke
    their downloads if it includes none; idempotent. Sessions end with
    ``payment_not_confirmed`` when the plan fell because provisional access of an
    unconfirmed mobile money payment ran out, else ``plan_changed``."""
    current = await load_user_plan(pool, user_id, grace=grace)
    reason = await ending_reason(pool, user_id)
    if not current.limits.downloads:
        revoked = await revoke_downloads(pool, user_id, reason=PLAN_CHANGED)
        if revoked:
            log.info("revoked %d downloads of user %s (plan %s)", revoked, user_id, current.plan)
    ended = await end_sessions_beyond_plan(
        sessions, user_id, allowed_plans=allowed_plans(current), reason=reason
    )
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

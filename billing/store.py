"""Reading a user's plan from PostgreSQL: their subscription rows and the plan limits,
in one query, through :func:`billing.plans.effective_plan`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from billing.plans import EffectivePlan, SubscriptionRow, effective_plan
from runtime.settings import Settings


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanLimits:
    """What a plan allows (the plans table)."""

    id: str
    name: str
    rank: int
    max_height: int
    max_streams: int
    ads: bool
    amount_minor: int
    currency: str
    interval: str
    #: the plan includes offline downloads (premium)
    downloads: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class UserPlan:
    """A user's effective plan and its limits."""

    effective: EffectivePlan
    limits: PlanLimits
    plans: dict[str, PlanLimits]

    @property
    def plan(self) -> str:
        return self.effective.plan


# Every plan, each with the user's rows on it (if any): one round trip gives both the
# rows and the limits of whichever plan turns out to be in force. The rows are the
# subscriptions, the periods bought with mobile money (passes) and the provisional
# access of pending mobile money payments; passes themselves are products, not plans.
_PLAN_SQL = """
WITH r AS (
    SELECT s.plan_id, s.id::text AS sub_id, s.provider, s.status, s.current_period_end,
           s.cancel_at_period_end, s.past_due_since, s.ends_at, s.updated_at,
           NULL::timestamptz AS starts_at
      FROM subscriptions s WHERE s.user_id = $1
    UNION ALL
    SELECT a.plan_id, 'period:' || a.id, 'mobile_money', 'active', NULL, false, NULL,
           a.ends_at, a.created_at, a.starts_at
      FROM access_periods a WHERE a.user_id = $1 AND a.ends_at > $2
    UNION ALL
    SELECT m.plan_id, 'provisional:' || m.id, 'provisional', 'active', NULL, false, NULL,
           m.provisional_until, m.created_at, NULL
      FROM mobile_money_payments m
     WHERE m.user_id = $1 AND m.status = 'pending' AND m.provisional_until > $2
)
SELECT p.id AS plan_id, p.name AS plan_name, p.rank, p.max_height, p.max_streams, p.ads,
       p.amount_minor, p.currency, p.billing_interval, p.downloads,
       r.sub_id, r.provider, r.status, r.current_period_end, r.cancel_at_period_end,
       r.past_due_since, r.ends_at, r.updated_at, r.starts_at
  FROM plans p
  LEFT JOIN r ON r.plan_id = p.id
 WHERE p.kind = 'plan'
 ORDER BY p.rank
"""


def grace_of(settings: Settings) -> timedelta:
    """The grace period of a failed payment (``KUSH_BILLING_GRACE_HOURS``)."""
    return timedelta(hours=settings.billing_grace_hours)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _limits(r: Any) -> PlanLimits:
    return PlanLimits(
        id=r["plan_id"],
        name=r["plan_name"],
        rank=r["rank"],
        max_height=r["max_height"],
        max_streams=r["max_streams"],
        ads=r["ads"],
        amount_minor=r["amount_minor"],
        currency=r["currency"],
        interval=r["billing_interval"],
        downloads=r["downloads"],
    )


def subscription_row(r: Any) -> SubscriptionRow:
    """A :class:`SubscriptionRow` from a query row with the columns of ``_PLAN_SQL``."""
    return SubscriptionRow(
        id=str(r["sub_id"]),
        provider=r["provider"],
        plan=r["plan_id"],
        rank=r["rank"],
        status=r["status"],
        current_period_end=r["current_period_end"],
        cancel_at_period_end=r["cancel_at_period_end"],
        past_due_since=r["past_due_since"],
        ends_at=r["ends_at"],
        updated_at=r["updated_at"],
        starts_at=r["starts_at"],
    )


async def load_user_plan(
    conn: asyncpg.Connection | asyncpg.Pool,
    user_id: str | uuid.UUID,
    *,
    grace: timedelta,
    now: datetime | None = None,
) -> UserPlan:
    """The user's effective plan, computed fresh from their subscription rows."""
    key = user_id if isinstance(user_id, uuid.UUID) else uuid.UUID(user_id)
    at = now or utcnow()
    records = await conn.fetch(_PLAN_SQL, key, at)
    plans: dict[str, PlanLimits] = {}
    rows: list[SubscriptionRow] = []
    for r in records:
        plans.setdefault(r["plan_id"], _limits(r))
        if r["sub_id"] is not None:
            rows.append(subscription_row(r))
    effective = effective_plan(rows, now=at, grace=grace)
    return UserPlan(effective=effective, limits=plans[effective.plan], plans=plans)

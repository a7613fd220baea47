"""Admin billing routes: subscriptions, plans granted or revoked by hand, revenue.

Reads are for ``admin`` and ``moderator``, grants for ``admin`` only, and every grant is
written to the audit log in the transaction that makes it. A grant changes the effective
plan at once, like a webhook: live sessions above the new plan end.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from aiohttp import web
from pydantic import AwareDatetime, Field, StringConstraints

from admin.billing.enforce import lock_user, record_plan, run_jobs
from admin.billing.keys import admin_sessions_key
from billing.plans import STATUSES, describe_next
from billing.store import grace_of, load_user_plan
from runtime.api import (
    BodyModel,
    DateStr,
    DateTimeStr,
    InvalidRequest,
    PathParam,
    QueryModel,
    ReplyModel,
    Routes,
    UuidStr,
    parse_body,
    parse_query,
)
from runtime.dayrange import DayRangeQuery, DayRangeReply
from runtime.db import audit
from runtime.errors import NotFound
from runtime.web import json_response, pg_key, request_id_key, settings_key
from tokens.service.views import SIGNED_IN, require_role

ADMIN = frozenset({"admin"})
READERS = frozenset({"admin", "moderator"})
ROLE_ERRORS = {403: "Your role may not do this (`forbidden_role`)"}
MAX_LIST = 500

routes = Routes(tags=("billing",))

Status = Literal[
    "trialing",
    "active",
    "past_due",
    "canceled",
    "unpaid",
    "incomplete",
    "incomplete_expired",
    "paused",
]
assert set(Status.__args__) == set(STATUSES)  # type: ignore[attr-defined]
PlanName = Literal["free", "basic", "premium"]


class SubscriptionQuery(QueryModel):
    """Which subscriptions (newest change first)."""

    status: Status | None = Field(default=None, description="Only this status")
    provider: Annotated[str, Field(min_length=1, max_length=32)] | None = Field(
        default=None, description="`stripe`, `manual`, `admin` or `demo`"
    )
    limit: Annotated[int, Field(ge=1, le=MAX_LIST)] = 100


class Subscription(ReplyModel):
    """One subscription row: a Stripe subscription or a grant by hand."""

    id: UuidStr
    user_id: UuidStr
    email: str
    plan: str
    status: str
    provider: str
    provider_subscription_id: str | None
    provider_customer_id: str | None
    current_period_end: DateTimeStr | None
    cancel_at_period_end: bool
    past_due_since: DateTimeStr | None
    ends_at: DateTimeStr | None = Field(description="A grant by hand ends here")
    reason: str | None
    updated_at: DateTimeStr


class SubscriptionList(ReplyModel):
    """Subscriptions, newest change first."""

    items: list[Subscription]


class PlanGrant(BodyModel):
    """Grant a plan by hand (``free``: revoke every grant by hand)."""

    plan: PlanName
    until: AwareDatetime | None = Field(
        default=None, description="The grant ends then (absent: until revoked)"
    )
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class UserPlan(ReplyModel):
    """The user's effective plan after the change."""

    user_id: UuidStr
    plan: str = Field(description="The effective plan (a paid subscription may be above a grant)")
    status: str | None
    provider: str | None = Field(description="Where the effective plan comes from")
    until: DateTimeStr | None = Field(description="When it changes by time alone, if it does")
    next: str
    sessions_ended: int = Field(description="Live playback sessions above the new plan, ended")


class RevenueRow(ReplyModel):
    """Payments of one day, plan and currency."""

    day: DateStr
    plan: str | None
    currency: str
    payments: int
    amount_minor: int = Field(description="In minor units of the currency (cents for USD)")


class RevenueTotal(ReplyModel):
    """All payments of the range in one currency."""

    currency: str
    payments: int
    amount_minor: int


class RevenueReport(DayRangeReply):
    """Paid invoices per day, plan and currency, and totals per currency."""

    items: list[RevenueRow]
    totals: list[RevenueTotal]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _subscription(r: Any) -> Subscription:
    return Subscription(
        id=str(r["id"]),
        user_id=str(r["user_id"]),
        email=r["email"],
        plan=r["plan_id"],
        status=r["status"],
        provider=r["provider"],
        provider_subscription_id=r["provider_subscription_id"],
        provider_customer_id=r["provider_customer_id"],
        current_period_end=_iso(r["current_period_end"]),
        cancel_at_period_end=r["cancel_at_period_end"],
        past_due_since=_iso(r["past_due_since"]),
        ends_at=_iso(r["ends_at"]),
        reason=r["reason"],
        updated_at=r["updated_at"].isoformat(),
    )


@routes.get(
    "/admin/v1/subscriptions",
    summary="List subscriptions and grants, by status (admin, moderator)",
    query=SubscriptionQuery,
    replies={200: SubscriptionList},
    auth=SIGNED_IN,
    errors=ROLE_ERRORS,
)
async def list_subscriptions(request: web.Request) -> web.Response:
    """GET /admin/v1/subscriptions?status=&provider=&limit= -> {items}."""
    await require_role(request, READERS)
    query = parse_query(request, SubscriptionQuery)
    rows = await request.app[pg_key].fetch(
        """SELECT s.*, u.email FROM subscriptions s JOIN users u ON u.id = s.user_id
            WHERE ($1::text IS NULL OR s.status = $1)
              AND ($2::text IS NULL OR s.provider = $2)
            ORDER BY s.updated_at DESC, s.id LIMIT $3""",
        query.status,
        query.provider,
        query.limit,
    )
    return json_response(SubscriptionList(items=[_subscription(r) for r in rows]))


def _user_key(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound("No such user", code="user_not_found") from None


@routes.post(
    "/admin/v1/users/{user_id}/plan",
    summary="Grant a plan by hand, or revoke grants with plan=free (admin; audited)",
    body=PlanGrant,
    replies={200: UserPlan},
    auth=SIGNED_IN,
    errors={
        **ROLE_ERRORS,
        404: "No such user (`user_not_found`)",
        422: "A field does not fit (`invalid_request`), e.g. `until` in the past",
    },
    path_params={"user_id": PathParam("The account's id", "uuid")},
)
async def grant_plan(request: web.Request) -> web.Response:
    """POST /admin/v1/users/{id}/plan {plan, until?, reason} -> the effective plan."""
    claims = await require_role(request, ADMIN)
    key = _user_key(request.match_info["user_id"])
    grant = await parse_body(request, PlanGrant)
    now = datetime.now(UTC)
    if grant.until is not None and grant.until <= now:
        message = "'until' must be in the future"
        raise InvalidRequest(message, details={"fields": [{"path": "until", "message": message}]})
    app = request.app
    grace = grace_of(app[settings_key])
    pool = app[pg_key]
    user_id = str(key)
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval("SELECT id FROM users WHERE id = $1", key) is None:
            raise NotFound("No such user", code="user_not_found")
        await lock_user(conn, user_id)
        before = (await load_user_plan(conn, key, grace=grace)).plan
        # a grant by hand replaces every earlier one (manual, admin, demo)
        await conn.execute(
            """UPDATE subscriptions SET status = 'canceled', updated_at = now(),
                      ends_at = least(coalesce(ends_at, now()), now()), reason = $2
                WHERE user_id = $1 AND provider <> 'stripe' AND provider <> 'manual'
                  AND status <> 'canceled'""",
            key,
            grant.reason,
        )
        if grant.plan == "free":
            await conn.execute(
                """UPDATE subscriptions SET status = 'canceled', updated_at = now(),
                          ends_at = now(), reason = $2
                    WHERE user_id = $1 AND provider = 'manual'""",
                key,
                grant.reason,
            )
        else:
            await conn.execute(
                """INSERT INTO subscriptions (user_id, plan_id, status, provider, ends_at, reason)
                   VALUES ($1, $2, 'active', 'manual', $3, $4)
                   ON CONFLICT (user_id, provider) DO UPDATE
                      SET plan_id = EXCLUDED.plan_id, status = 'active',
                          ends_at = EXCLUDED.ends_at, reason = EXCLUDED.reason,
                          updated_at = now()""",
                key,
                grant.plan,
                grant.until,
                grant.reason,
            )
        change = await record_plan(conn, user_id, grace=grace)
        after = await load_user_plan(conn, key, grace=grace)
        details = {
            "plan": grant.plan,
            "until": _iso(grant.until),
            "reason": grant.reason,
            "effective_before": before,
            "effective_after": after.plan,
        }
        await audit(
            conn,
            action="billing.plan_revoke" if grant.plan == "free" else "billing.plan_grant",
            actor_id=uuid.UUID(claims.sub),
            target_type="user",
            target_id=user_id,
            details=orjson.dumps(details).decode(),
            request_id=request.get(request_id_key),
        )
    ended: list[str] = []
    if change is not None:
        ended = await run_jobs(pool, app[admin_sessions_key], [change], grace=grace)
    source = after.effective.source
    return json_response(
        UserPlan(
            user_id=user_id,
            plan=after.plan,
            status=after.effective.status,
            provider=source.provider if source is not None else None,
            until=_iso(after.effective.recheck_at),
            next=describe_next(after.effective, {p: lim.name for p, lim in after.plans.items()}),
            sessions_ended=len(ended),
        )
    )


@routes.get(
    "/admin/v1/reports/revenue",
    summary="Paid invoices per day, plan and currency, with totals (admin, moderator)",
    query=DayRangeQuery,
    replies={200: RevenueReport},
    auth=SIGNED_IN,
    errors=ROLE_ERRORS,
)
async def revenue_report(request: web.Request) -> web.Response:
    """GET /admin/v1/reports/revenue?from=YYYY-MM-DD&to=YYYY-MM-DD."""
    await require_role(request, READERS)
    from_day, to_day = parse_query(request, DayRangeQuery).days()
    rows = await request.app[pg_key].fetch(
        """SELECT (paid_at AT TIME ZONE 'UTC')::date AS day, plan_id, currency,
                  count(*) AS payments, sum(amount_minor) AS amount
             FROM payments
            WHERE paid_at >= $1::date AND paid_at < $2::date + 1
            GROUP BY 1, 2, 3 ORDER BY 1, 3, 2""",
        from_day,
        to_day,
    )
    items = [
        RevenueRow(
            day=r["day"].isoformat(),
            plan=r["plan_id"],
            currency=r["currency"],
            payments=r["payments"],
            amount_minor=int(r["amount"]),
        )
        for r in rows
    ]
    totals: dict[str, list[int]] = {}
    for item in items:
        total = totals.setdefault(item.currency, [0, 0])
        total[0] += item.payments
        total[1] += item.amount_minor
    report = RevenueReport.model_validate(
        {
            "from": from_day.isoformat(),
            "to": to_day.isoformat(),
            "items": items,
            "totals": [
                RevenueTotal(currency=c, payments=t[0], amount_minor=t[1])
                for c, t in sorted(totals.items())
            ],
        }
    )
    return json_response(report)


def setup_routes(app: web.Application) -> None:
    """Mount the billing admin routes."""
    routes.mount(app)

"""Mobile money payments in PostgreSQL: starting one, applying what the provider reports
(callback or polling), expiring stale ones, and what they buy.

Every write runs in one transaction under the user's billing lock and ends with
:func:`billing.entitlements.record_plan`, so a plan change (provisional access starting,
a pass confirmed, access ending) is noticed where it happens; the caller enforces the
returned changes after the commit (``admin.billing.enforce.run_jobs``).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from billing import mail
from billing.entitlements import PlanChange, lock_user, record_plan
from billing.mobile_money import (
    FINAL,
    Product,
    Report,
    advance,
    describe,
    provisional_allowed,
    stack,
)
from billing.store import utcnow
from runtime.settings import Settings

log = logging.getLogger(__name__)

#: the first status query waits this long for the callback; then it backs off
FIRST_CHECK_S = 30
MAX_CHECK_S = 300

_PRODUCT_SQL = """
SELECT id, name, kind, coalesce(grants_plan, id) AS plan, period_days, amount_ugx
  FROM plans WHERE amount_ugx IS NOT NULL AND period_days IS NOT NULL
"""


def _product(r: Any) -> Product:
    return Product(
        id=r["id"],
        name=r["name"],
        kind="pass" if r["kind"] == "pass" else "plan",
        plan=r["plan"],
        period_days=r["period_days"],
        amount_ugx=r["amount_ugx"],
    )


async def list_products(conn: asyncpg.Connection | asyncpg.Pool) -> list[Product]:
    """What mobile money sells: the monthly plans and the passes, cheapest first."""
    rows = await conn.fetch(_PRODUCT_SQL + " ORDER BY kind DESC, amount_ugx")
    return [_product(r) for r in rows]


async def load_product(conn: asyncpg.Connection | asyncpg.Pool, product_id: str) -> Product | None:
    row = await conn.fetchrow(_PRODUCT_SQL + " AND id = $1", product_id)
    return _product(row) if row is not None else None


@dataclass(slots=True)
class Applied:
    """What applying a report did: ``outcome`` is ``applied``, ``duplicate`` (same
    status again) or ``stale`` (a report that may not move a final status)."""

    outcome: str
    status: str
    changes: list[PlanChange] = field(default_factory=list)


def next_check_delay(checks: int) -> int:
    """Seconds until the next status query of a pending payment (after ``checks``)."""
    return int(min(MAX_CHECK_S, FIRST_CHECK_S * 2 ** max(0, checks)))


async def create_payment(
    conn: asyncpg.Connection,
    *,
    user_id: str,
    provider: str,
    product: Product,
    msisdn: str,
    settings: Settings,
    now: datetime | None = None,
) -> uuid.UUID:
    """Record a new pending payment (before the provider is asked); returns its id,
    which is the reference the provider gets."""
    at = now or utcnow()
    payment_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO mobile_money_payments (id, user_id, provider, product, plan_id,
               period_days, msisdn, amount_ugx, expires_at, next_check_at, created_at,
               updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)""",
        payment_id,
        uuid.UUID(user_id),
        provider,
        product.id,
        product.plan,
        product.period_days,
        msisdn,
        product.amount_ugx,
        at + timedelta(minutes=settings.mobile_money_expire_minutes),
        at + timedelta(seconds=FIRST_CHECK_S),
        at,
    )
    return payment_id


async def grant_provisional(
    conn: asyncpg.Connection,
    payment_id: uuid.UUID,
    user_id: str,
    *,
    settings: Settings,
    grace: timedelta,
    now: datetime | None = None,
) -> tuple[datetime | None, PlanChange | None]:
    """Once the provider accepted the request: provisional access to the product for
    ``KUSH_PROVISIONAL_MINUTES``, unless the account had a grant in the past 24 hours
    (or the payment is no longer pending). Runs in the caller's transaction."""
    at = now or utcnow()
    await lock_user(conn, user_id)
    if settings.provisional_minutes <= 0:
        return None, None
    last = await conn.fetchval(
        """SELECT max(created_at) FROM mobile_money_payments
            WHERE user_id = $1 AND provisional_until IS NOT NULL AND id <> $2""",
        uuid.UUID(user_id),
        payment_id,
    )
    if not provisional_allowed(last, now=at):
        return None, None
    until: datetime | None = await conn.fetchval(
        """UPDATE mobile_money_payments SET provisional_until = $2, updated_at = $3
            WHERE id = $1 AND status = 'pending' RETURNING provisional_until""",
        payment_id,
        at + timedelta(minutes=settings.provisional_minutes),
        at,
    )
    if until is None:
        return None, None
    change = await record_plan(conn, user_id, grace=grace, now=at)
    return until, change


async def refuse_payment(conn: asyncpg.Connection, payment_id: uuid.UUID, reason: str) -> None:
    """The provider refused the request outright: the payment failed (nothing charged)."""
    await conn.execute(
        """UPDATE mobile_money_payments SET status = 'failed', reason = $2,
                  settled_at = now(), updated_at = now()
            WHERE id = $1 AND status = 'pending'""",
        payment_id,
        reason,
    )


async def _grant_period(conn: asyncpg.Connection, payment: asyncpg.Record, at: datetime) -> None:
    """The period a confirmed payment buys, stacked after the user's paid periods; the
    receipt mail and the revenue row."""
    ends = await conn.fetch(
        "SELECT ends_at FROM access_periods WHERE user_id = $1 AND ends_at > $2",
        payment["user_id"],
        at,
    )
    starts_at, ends_at = stack([r["ends_at"] for r in ends], now=at, days=payment["period_days"])
    await conn.execute(
        """INSERT INTO access_periods (user_id, plan_id, product, payment_id, starts_at, ends_at)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (payment_id) DO NOTHING""",
        payment["user_id"],
        payment["plan_id"],
        payment["product"],
        payment["id"],
        starts_at,
        ends_at,
    )
    name = await conn.fetchval("SELECT name FROM plans WHERE id = $1", payment["product"])
    await mail.enqueue(
        conn,
        user_id=str(payment["user_id"]),
        template="payment_succeeded",
        data={"amount": f"{payment['amount_ugx']:,} UGX", "plan_name": name},
        dedup_key=f"payment_succeeded:{payment['provider']}:{payment['id']}",
    )
    await conn.execute(
        """INSERT INTO payments (provider, provider_invoice_id, user_id, plan_id, amount_minor,
               currency, paid_at) VALUES ($1, $2, $3, $4, $5, 'ugx', $6)
           ON CONFLICT (provider_invoice_id) DO NOTHING""",
        payment["provider"],
        f"{payment['provider']}:{payment['id']}",
        payment["user_id"],
        payment["plan_id"],
        payment["amount_ugx"],
        at,
    )


async def apply_report(
    conn: asyncpg.Connection,
    payment_id: uuid.UUID,
    report: Report,
    *,
    grace: timedelta,
    via: str,
    now: datetime | None = None,
) -> Applied | None:
    """Apply what the provider says of a payment, in the caller's transaction (None: no
    such payment). Idempotent and safe out of order (``billing.mobile_money.advance``)."""
    at = now or utcnow()
    user_id = await conn.fetchval(
        "SELECT user_id FROM mobile_money_payments WHERE id = $1", payment_id
    )
    if user_id is None:
        return None
    await lock_user(conn, str(user_id))
    payment = await conn.fetchrow(
        "SELECT * FROM mobile_money_payments WHERE id = $1 FOR UPDATE", payment_id
    )
    assert payment is not None
    counter = "callbacks" if via == "callback" else "checks"
    new = advance(payment["status"], report.status)
    if new is None:
        await conn.execute(
            f"UPDATE mobile_money_payments SET {counter} = {counter} + 1 WHERE id = $1",  # noqa: S608
            payment_id,
        )
        same = report.status == payment["status"]
        return Applied("duplicate" if same else "stale", payment["status"])
    await conn.execute(
        f"""UPDATE mobile_money_payments
               SET status = $2, reason = $3,
                   provider_transaction_id = coalesce($4, provider_transaction_id),
                   settled_at = $5, updated_at = $5, {counter} = {counter} + 1
             WHERE id = $1""",  # noqa: S608 (a fixed column name)
        payment_id,
        new,
        report.reason if new != "successful" else None,
        report.transaction_id,
        at,
    )
    if new == "successful":
        await _grant_period(conn, payment, at)
    log.info("mobile money payment %s (%s): %s -> %s", payment_id, via, payment["status"], new)
    result = Applied("applied", new)
    change = await record_plan(conn, str(user_id), grace=grace, now=at)
    if change is not None:
        result.changes.append(change)
    return result


async def expire_payment(
    conn: asyncpg.Connection,
    payment_id: uuid.UUID,
    *,
    grace: timedelta,
    now: datetime | None = None,
) -> list[PlanChange]:
    """A payment still pending past its ``expires_at``: expired (its provisional access,
    if any, is over). Runs in the caller's transaction."""
    at = now or utcnow()
    user_id = await conn.fetchval(
        """UPDATE mobile_money_payments SET status = 'expired', reason = 'EXPIRED',
                  settled_at = $2, updated_at = $2
            WHERE id = $1 AND status = 'pending' RETURNING user_id""",
        payment_id,
        at,
    )
    if user_id is None:
        return []
    await lock_user(conn, str(user_id))
    change = await record_plan(conn, str(user_id), grace=grace, now=at)
    return [change] if change is not None else []


async def user_payment(
    conn: asyncpg.Connection | asyncpg.Pool, payment_id: str, user_id: str
) -> asyncpg.Record | None:
    """One of the user's payments (None: unknown, or someone else's)."""
    try:
        key = uuid.UUID(payment_id)
    except ValueError:
        return None
    return await conn.fetchrow(
        """SELECT m.*, p.name AS product_name FROM mobile_money_payments m
             JOIN plans p ON p.id = m.product
            WHERE m.id = $1 AND m.user_id = $2""",
        key,
        uuid.UUID(user_id),
    )


def payment_message(row: asyncpg.Record, now: datetime | None = None) -> str:
    """The sentence the watch page shows for a payment."""
    until = row["provisional_until"]
    if until is not None and until <= (now or utcnow()):
        until = None
    return describe(row["status"], row["product_name"], until)


__all__ = [
    "FINAL",
    "Applied",
    "apply_report",
    "create_payment",
    "expire_payment",
    "grant_provisional",
    "list_products",
    "load_product",
    "next_check_delay",
    "payment_message",
    "refuse_payment",
    "user_payment",
]

"""The subscription state machine: verified Stripe events in, subscription rows out.

:func:`process_event` runs in one transaction per event. It first stores the event id
(``stripe_events``, primary key): a duplicate delivery finds it taken and changes
nothing; two identical deliveries racing wait on each other's insert, and the second
sees a duplicate once the first commits. Then the event's effects (subscription row,
payment, mail in the outbox, plan change and its enforcement job) are written in that
same transaction.

Events arrive out of order. Every Stripe subscription row remembers the creation time
of the newest event applied to it (``provider_updated_at``); an older event is
recorded and ignored (``stale``). A subscription that ended (``canceled``,
``incomplete_expired``) never comes back, whatever arrives later. When two events carry
the same second, the later delivery is applied and, with Stripe configured, a job
re-reads the subscription from Stripe (the truth) after the commit. A user has one Stripe
row: an event for another of their subscriptions replaces it only if it is newer and
live, or the row's subscription has ended.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from admin.billing.enforce import PlanChange, lock_user, record_plan
from billing import mail
from billing.plans import LIVE_STATUSES, PAID_PLANS, STATUSES, TERMINAL_STATUSES
from billing.store import load_user_plan
from runtime.settings import Settings

log = logging.getLogger(__name__)

HANDLED = (
    "checkout.session.completed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.paid",
    "invoice.payment_failed",
)


@dataclass(slots=True)
class EventResult:
    """What one event did: ``outcome`` is stored with the event and logged."""

    duplicate: bool = False
    outcome: str = "applied"
    user_id: str | None = None
    changes: list[PlanChange] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class SubState:
    """What an event says about a Stripe subscription (None: the event does not say)."""

    id: str
    customer: str | None
    status: str | None
    plan: str | None = None
    current_period_end: datetime | None = None
    cancel_at_period_end: bool | None = None
    user_hint: str | None = None


@dataclass(frozen=True, slots=True)
class Applied:
    """The subscription row before and after an event (``before`` None: a new row)."""

    before: asyncpg.Record | None
    after: asyncpg.Record | None
    stale: bool = False
    doubt: bool = False


def _ts(value: Any) -> datetime | None:
    if isinstance(value, int | float) and value > 0:
        return datetime.fromtimestamp(value, tz=UTC)
    return None


def _id(value: Any) -> str | None:
    """An expandable Stripe field: an id, or the expanded object with its id."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def _items(obj: dict[str, Any]) -> list[dict[str, Any]]:
    items = obj.get("items")
    data = items.get("data") if isinstance(items, dict) else None
    return [i for i in data if isinstance(i, dict)] if isinstance(data, list) else []


def _plan_of(settings: Settings, price: Any, metadata: Any) -> str | None:
    """Our plan for a Stripe price id (settings), else the plan in the metadata."""
    price_id = _id(price)
    plan = settings.plan_of_price(price_id) if price_id else None
    if plan is None and isinstance(metadata, dict) and metadata.get("plan") in PAID_PLANS:
        plan = str(metadata["plan"])
    return plan


def subscription_state(settings: Settings, obj: dict[str, Any]) -> SubState:
    """A Stripe subscription object (any API version: the period end moved to items)."""
    items = _items(obj)
    price = items[0].get("price") if items else None
    period_end = _ts(obj.get("current_period_end"))
    if period_end is None and items:
        period_end = _ts(items[0].get("current_period_end"))
    metadata = obj.get("metadata")
    status = obj.get("status")
    return SubState(
        id=str(obj["id"]),
        customer=_id(obj.get("customer")),
        status=status if status in STATUSES else None,
        plan=_plan_of(settings, price, metadata),
        current_period_end=period_end,
        cancel_at_period_end=bool(obj.get("cancel_at_period_end"))
        or obj.get("cancel_at") is not None,
        user_hint=str(metadata["user_id"])
        if isinstance(metadata, dict) and metadata.get("user_id")
        else None,
    )


def _invoice_subscription(obj: dict[str, Any]) -> str | None:
    """The subscription an invoice bills (``subscription`` before API 2025-03, then
    ``parent.subscription_details.subscription``)."""
    sub = _id(obj.get("subscription"))
    if sub:
        return sub
    parent = obj.get("parent")
    details = parent.get("subscription_details") if isinstance(parent, dict) else None
    return _id(details.get("subscription")) if isinstance(details, dict) else None


def _invoice_line(obj: dict[str, Any]) -> dict[str, Any]:
    lines = obj.get("lines")
    data = lines.get("data") if isinstance(lines, dict) else None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return data[0]
    return {}


def _invoice_price(line: dict[str, Any]) -> Any:
    price = line.get("price")
    if price is None:
        pricing = line.get("pricing")
        details = pricing.get("price_details") if isinstance(pricing, dict) else None
        price = details.get("price") if isinstance(details, dict) else None
    return price


# ------------------------------------------------------------------ users


async def _user_exists(conn: asyncpg.Connection, user_id: str | None) -> str | None:
    if not user_id:
        return None
    try:
        key = uuid.UUID(user_id)
    except ValueError:
        return None
    found = await conn.fetchval("SELECT id FROM users WHERE id = $1", key)
    return str(found) if found else None


async def find_user(
    conn: asyncpg.Connection,
    *,
    hint: str | None = None,
    customer: str | None = None,
    subscription: str | None = None,
) -> str | None:
    """Our user behind a Stripe object: our id in its metadata, its customer (created
    by our checkout and stored on the user), or a subscription row we already have."""
    found = await _user_exists(conn, hint)
    if found:
        return found
    if customer:
        row = await conn.fetchval("SELECT id FROM users WHERE stripe_customer_id = $1", customer)
        if row:
            return str(row)
    if subscription:
        row = await conn.fetchval(
            "SELECT user_id FROM subscriptions WHERE provider_subscription_id = $1", subscription
        )
        if row:
            return str(row)
    return None


# ------------------------------------------------------------------ subscription rows

_STRIPE_ROW = "SELECT * FROM subscriptions WHERE user_id = $1 AND provider = 'stripe' FOR UPDATE"


async def apply_state(
    conn: asyncpg.Connection, user_id: str, state: SubState, at: datetime
) -> Applied:
    """Write what an event created at ``at`` says about a subscription, unless the row
    already holds newer news (see the module docstring). The user must be locked."""
    key = uuid.UUID(user_id)
    row = await conn.fetchrow(_STRIPE_ROW, key)
    if row is None:
        if state.status is None or state.plan is None:
            return Applied(None, None, stale=True)  # nothing to build a row from yet
        after = await conn.fetchrow(
            """INSERT INTO subscriptions (user_id, plan_id, status, provider,
                   provider_subscription_id, provider_customer_id, current_period_end,
                   cancel_at_period_end, provider_updated_at, past_due_since)
               VALUES ($1, $2, $3::text, 'stripe', $4, $5, $6, $7, $8::timestamptz,
                       CASE WHEN $3::text = 'past_due' THEN $8::timestamptz END)
               RETURNING *""",
            key,
            state.plan,
            state.status,
            state.id,
            state.customer,
            state.current_period_end,
            bool(state.cancel_at_period_end),
            at,
        )
        return Applied(None, after)
    last: datetime | None = row["provider_updated_at"]
    doubt = False
    if row["provider_subscription_id"] != state.id:
        row_live = row["status"] in LIVE_STATUSES
        newer_live = state.status in LIVE_STATUSES and (last is None or at > last)
        if row_live and not newer_live:
            return Applied(row, row, stale=True)  # an older or ended other subscription
        if state.status is None or state.plan is None:
            return Applied(row, row, stale=True)
        replace = True
    else:
        replace = False
        if row["status"] in TERMINAL_STATUSES and state.status not in TERMINAL_STATUSES:
            return Applied(row, row, stale=True)  # an ended subscription never comes back
        if last is not None and at < last:
            return Applied(row, row, stale=True)
        doubt = last is not None and at == last
    status = state.status or row["status"]
    was_past_due = row["status"] == "past_due" and not replace
    after = await conn.fetchrow(
        """UPDATE subscriptions
              SET plan_id = $2, status = $3::text, provider_subscription_id = $4,
                  provider_customer_id = coalesce($5, provider_customer_id),
                  current_period_end = $6, cancel_at_period_end = $7,
                  provider_updated_at = greatest(provider_updated_at, $8::timestamptz),
                  past_due_since = CASE WHEN $3::text <> 'past_due' THEN NULL
                                        WHEN $9::boolean THEN coalesce(past_due_since, $8)
                                        ELSE $8::timestamptz END,
                  ends_at = NULL, updated_at = now()
            WHERE id = $1 RETURNING *""",
        row["id"],
        state.plan or row["plan_id"],
        status,
        state.id,
        state.customer,
        state.current_period_end
        if state.current_period_end is not None or replace
        else row["current_period_end"],
        state.cancel_at_period_end
        if state.cancel_at_period_end is not None
        else (False if replace else row["cancel_at_period_end"]),
        at,
        was_past_due,
    )
    return Applied(row, after, doubt=doubt)


# ------------------------------------------------------------------ the machine


@dataclass(slots=True)
class _Ctx:
    conn: asyncpg.Connection
    settings: Settings
    event_id: str
    at: datetime
    result: EventResult


async def _plan_data(ctx: _Ctx, user_id: str, plan: str) -> dict[str, Any]:
    current = await load_user_plan(ctx.conn, user_id, grace=_grace(ctx.settings))
    limits = current.plans.get(plan, current.limits)
    return {
        "plan": plan,
        "plan_name": limits.name,
        "max_height": limits.max_height,
        "ads": limits.ads,
    }


def _grace(settings: Settings) -> timedelta:
    return timedelta(hours=settings.billing_grace_hours)


def _money(amount_minor: int, currency: str) -> str:
    zero_decimal = {"ugx", "jpy", "krw", "rwf", "xaf", "xof"}
    if currency.lower() in zero_decimal:
        return f"{amount_minor:,} {currency.upper()}"
    symbol = "$" if currency.lower() == "usd" else ""
    text = f"{amount_minor / 100:,.2f}"
    return f"{symbol}{text}" if symbol else f"{text} {currency.upper()}"


def _day(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at is not None else "-"


async def _subscription_event(ctx: _Ctx, obj: dict[str, Any], *, deleted: bool) -> None:
    state = subscription_state(ctx.settings, obj)
    if deleted and state.status not in TERMINAL_STATUSES:
        state = dataclasses.replace(state, status="canceled")
    user_id = await find_user(
        ctx.conn, hint=state.user_hint, customer=state.customer, subscription=state.id
    )
    if user_id is None:
        ctx.result.outcome = "unknown_customer"
        return
    ctx.result.user_id = user_id
    await lock_user(ctx.conn, user_id)
    applied = await apply_state(ctx.conn, user_id, state, ctx.at)
    await _after_apply(ctx, user_id, applied)


async def _after_apply(ctx: _Ctx, user_id: str, applied: Applied) -> None:
    if applied.stale:
        ctx.result.outcome = "stale"
        return
    if applied.doubt:
        ctx.result.outcome = "applied_same_second"
        if ctx.settings.billing_configured and applied.after is not None:
            await ctx.conn.execute(
                """INSERT INTO billing_jobs (kind, user_id, ref)
                   VALUES ('refresh_subscription', $1, $2)""",
                uuid.UUID(user_id),
                applied.after["provider_subscription_id"],
            )
    before, after = applied.before, applied.after
    if after is None:
        return
    plan = after["plan_id"]
    sub_id = after["provider_subscription_id"]
    ending_now = bool(after["cancel_at_period_end"]) and after["status"] in LIVE_STATUSES
    was_ending = before is not None and bool(before["cancel_at_period_end"])
    if ending_now and not was_ending:
        data = await _plan_data(ctx, user_id, plan)
        data["period_end"] = _day(after["current_period_end"])
        await mail.enqueue(
            ctx.conn,
            user_id=user_id,
            template="subscription_ending",
            data=data,
            dedup_key=f"subscription_ending:{sub_id}:{data['period_end']}",
        )
    ended = after["status"] in TERMINAL_STATUSES or after["status"] == "unpaid"
    was_ended = (
        before is not None
        and (before["status"] in TERMINAL_STATUSES or before["status"] == "unpaid")
        and before["provider_subscription_id"] == sub_id
    )
    if ended and not was_ended and before is not None and before["status"] in LIVE_STATUSES:
        await mail.enqueue(
            ctx.conn,
            user_id=user_id,
            template="subscription_ended",
            data=await _plan_data(ctx, user_id, plan),
            dedup_key=f"subscription_ended:{sub_id}",
        )


async def _checkout_completed(ctx: _Ctx, obj: dict[str, Any]) -> None:
    if obj.get("mode") != "subscription":
        ctx.result.outcome = "ignored_mode"
        return
    sub_id = _id(obj.get("subscription"))
    customer = _id(obj.get("customer"))
    metadata = obj.get("metadata")
    hint = obj.get("client_reference_id")
    user_id = await find_user(
        ctx.conn, hint=str(hint) if hint else None, customer=customer, subscription=sub_id
    )
    if user_id is None or sub_id is None:
        ctx.result.outcome = "unknown_customer"
        return
    ctx.result.user_id = user_id
    await lock_user(ctx.conn, user_id)
    if customer:
        await ctx.conn.execute(
            """UPDATE users SET stripe_customer_id = $2
                WHERE id = $1 AND stripe_customer_id IS NULL""",
            uuid.UUID(user_id),
            customer,
        )
    paid = obj.get("payment_status") in ("paid", "no_payment_required")
    plan = _plan_of(ctx.settings, None, metadata)
    state = SubState(
        id=sub_id, customer=customer, status="active" if paid else "incomplete", plan=plan
    )
    row = await ctx.conn.fetchrow(_STRIPE_ROW, uuid.UUID(user_id))
    if row is not None and row["provider_subscription_id"] == sub_id:
        # the subscription's own events already said more than "checkout completed"
        state = SubState(id=sub_id, customer=customer, status=None, plan=plan)
    applied = await apply_state(ctx.conn, user_id, state, ctx.at)
    await _after_apply(ctx, user_id, applied)
    if paid and plan:
        await mail.enqueue(
            ctx.conn,
            user_id=user_id,
            template="welcome",
            data=await _plan_data(ctx, user_id, plan),
            dedup_key=f"welcome:{sub_id}",
        )


async def _invoice(ctx: _Ctx, obj: dict[str, Any], *, paid: bool) -> None:
    sub_id = _invoice_subscription(obj)
    customer = _id(obj.get("customer"))
    line = _invoice_line(obj)
    metadata = obj.get("subscription_details") or line.get("metadata") or {}
    if isinstance(metadata, dict) and "metadata" in metadata:
        metadata = metadata["metadata"]
    user_id = await find_user(
        ctx.conn,
        hint=metadata.get("user_id") if isinstance(metadata, dict) else None,
        customer=customer,
        subscription=sub_id,
    )
    if user_id is None:
        ctx.result.outcome = "unknown_customer"
        return
    ctx.result.user_id = user_id
    await lock_user(ctx.conn, user_id)
    key = uuid.UUID(user_id)
    plan = _plan_of(ctx.settings, _invoice_price(line), metadata)
    row = await ctx.conn.fetchrow(_STRIPE_ROW, key)
    if plan is None and row is not None:
        plan = row["plan_id"]
    invoice_id = _id(obj.get("id")) or ""
    amount = int(obj.get("amount_paid") or 0)
    currency = str(obj.get("currency") or "usd").lower()
    if paid and invoice_id:
        transitions = obj.get("status_transitions")
        paid_at = _ts(transitions.get("paid_at")) if isinstance(transitions, dict) else None
        await ctx.conn.execute(
            """INSERT INTO payments (provider_invoice_id, user_id, plan_id, amount_minor,
                   currency, paid_at) VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (provider_invoice_id) DO NOTHING""",
            invoice_id,
            key,
            plan,
            amount,
            currency,
            paid_at or ctx.at,
        )
    if sub_id is None:
        ctx.result.outcome = "no_subscription"
        return
    current = (
        row["status"] if row is not None and row["provider_subscription_id"] == sub_id else None
    )
    status: str | None
    if paid:
        status = "active" if current in (None, "past_due", "unpaid", "incomplete") else None
    elif current in ("active", "trialing"):
        status = "past_due"
    elif current is None:
        first = obj.get("billing_reason") == "subscription_create"
        status = "incomplete" if first else "past_due"
    else:
        status = None  # already past_due/unpaid/incomplete: the subscription events say more
    period_end = _ts((line.get("period") or {}).get("end")) if paid else None
    state = SubState(
        id=sub_id, customer=customer, status=status, plan=plan, current_period_end=period_end
    )
    applied = await apply_state(ctx.conn, user_id, state, ctx.at)
    await _after_apply(ctx, user_id, applied)
    if applied.stale or plan is None:
        return
    data = await _plan_data(ctx, user_id, plan)
    data["amount"] = _money(amount if paid else int(obj.get("amount_due") or 0), currency)
    if paid and amount > 0:
        await mail.enqueue(
            ctx.conn,
            user_id=user_id,
            template="payment_succeeded",
            data=data,
            dedup_key=f"payment_succeeded:{invoice_id}",
        )
    elif not paid:
        after = applied.after
        since = after["past_due_since"] if after is not None else None
        data["grace_until"] = _day((since or ctx.at) + _grace(ctx.settings))
        attempt = obj.get("attempt_count") or 0
        await mail.enqueue(
            ctx.conn,
            user_id=user_id,
            template="payment_failed",
            data=data,
            dedup_key=f"payment_failed:{invoice_id}:{attempt}",
        )


async def process_event(
    conn: asyncpg.Connection, settings: Settings, event: dict[str, Any]
) -> EventResult:
    """Apply one verified event in the caller's transaction (see the module docstring)."""
    event_id = str(event.get("id") or "")
    etype = str(event.get("type") or "")
    result = EventResult()
    inserted = await conn.fetchval(
        """INSERT INTO stripe_events (id, type, payload) VALUES ($1, $2, $3::jsonb)
           ON CONFLICT (id) DO NOTHING RETURNING id""",
        event_id,
        etype,
        orjson.dumps(event).decode(),
    )
    if inserted is None:
        result.duplicate = True
        result.outcome = "duplicate"
        return result
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    at = _ts(event.get("created")) or datetime.now(UTC)
    ctx = _Ctx(conn, settings, event_id, at, result)
    if etype not in HANDLED or not isinstance(obj, dict):
        result.outcome = "unhandled"
    elif etype == "checkout.session.completed":
        await _checkout_completed(ctx, obj)
    elif etype.startswith("customer.subscription."):
        await _subscription_event(ctx, obj, deleted=etype.endswith(".deleted"))
    else:
        await _invoice(ctx, obj, paid=etype == "invoice.paid")
    if result.user_id is not None:
        change = await record_plan(conn, result.user_id, grace=_grace(settings), now=None)
        if change is not None:
            result.changes.append(change)
    await conn.execute(
        "UPDATE stripe_events SET processed_at = now(), outcome = $2 WHERE id = $1",
        event_id,
        result.outcome,
    )
    return result

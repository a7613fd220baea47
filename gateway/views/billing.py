"""Billing views for viewers: ``POST /v1/billing/checkout``, ``POST /v1/billing/portal``,
``GET /v1/billing/subscription``.

Checkout opens a Stripe Checkout Session in subscription mode for the plan's price, for
the viewer's Stripe customer (created once, with an idempotency key, and stored), with
our user id as ``client_reference_id``; the plan itself changes only when Stripe's
webhook says the subscription is paid (admin service). Without ``STRIPE_SECRET_KEY``
(demo mode) both POSTs answer 503 ``billing_not_configured`` saying how to configure it;
Stripe slow or failing answers 503 ``billing_unavailable`` with ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import Field

from billing.plans import LIVE_STATUSES, Next, describe_next
from billing.provider import (
    BillingError,
    BillingNotConfigured,
    BillingProvider,
    ProviderRefused,
    ProviderUnavailable,
    create_provider,
)
from billing.store import grace_of, load_user_plan
from runtime import ratelimit
from runtime.api import BodyModel, DateTimeStr, ReplyModel, Routes, parse_body
from runtime.errors import ApiError, Conflict, ServiceUnavailable
from runtime.web import error_mappers_key, json_response, pg_key, redis_key, rkeys_key, settings_key
from tokens.service.views import SIGNED_IN, authenticate

routes = Routes(tags=("billing",))

CHECKOUTS_PER_MINUTE = 10
#: Checkout sessions asked for again within this window (a double click, a retry after a
#: 503) reuse one idempotency key, so Stripe answers with the same session.
IDEMPOTENCY_WINDOW_S = 600


@dataclass(slots=True)
class Billing:
    """The payment provider (None: billing not configured)."""

    provider: BillingProvider | None


billing_key = web.AppKey("billing", Billing)


# ------------------------------------------------------------------ models


class CheckoutRequest(BodyModel):
    """The paid plan to subscribe to."""

    plan: Literal["basic", "premium"]


class RedirectUrl(ReplyModel):
    """Send the browser here (a page hosted by Stripe)."""

    url: str


class NextChange(ReplyModel):
    """What happens next to the plan."""

    kind: Literal[
        "none", "renews", "ends", "grace_ends", "grant_ends", "pass_ends", "provisional_ends"
    ]
    at: DateTimeStr | None
    plan: str | None = Field(description="The plan from then on")


class PlanOffer(ReplyModel):
    """A plan and its price."""

    id: str
    name: str
    amount_minor: int = Field(description="Price per interval in minor units (cents for USD)")
    currency: str
    interval: str
    max_height: int
    max_streams: int
    ads: bool
    purchasable: bool = Field(description="Checkout can sell it (billing and its price set)")


class SubscriptionState(ReplyModel):
    """The viewer's effective plan, its subscription and what happens next."""

    plan: str = Field(description="The plan in force now (what playback allows)")
    plan_name: str
    status: str | None = Field(description="Status of the subscription giving the plan")
    provider: str | None = Field(
        description="`stripe`, `mobile_money` (a pass or 30 days paid by mobile money), "
        "`provisional` (a mobile money payment pending), or a grant by hand (`manual`…)"
    )
    current_period_end: DateTimeStr | None
    cancel_at_period_end: bool
    grace_until: DateTimeStr | None = Field(
        description="After a failed payment: the plan is kept until then"
    )
    next: NextChange
    message: str = Field(description="What happens next, in one sentence")
    billing_configured: bool
    can_manage: bool = Field(description="A Stripe customer exists: the portal can open")
    plans: list[PlanOffer]


# ------------------------------------------------------------------ helpers


def map_billing_error(exc: Exception) -> ApiError | None:
    """Billing domain errors as JSON errors."""
    if not isinstance(exc, BillingError):
        return None
    if isinstance(exc, ProviderUnavailable):
        return ServiceUnavailable(exc.message, code=exc.code, retry_after=exc.retry_after)
    if isinstance(exc, BillingNotConfigured):
        return ServiceUnavailable(exc.message, code=exc.code)
    if isinstance(exc, ProviderRefused):
        return ApiError(exc.message, code=exc.code, status=502)
    return ApiError(exc.message, code=exc.code, status=502)


def _provider(request: web.Request, plan: str | None = None) -> BillingProvider:
    provider = request.app[billing_key].provider
    if provider is None:
        raise BillingNotConfigured()
    if plan is not None and not request.app[settings_key].stripe_price(plan):
        variable = f"STRIPE_PRICE_{plan.upper()}"
        raise BillingNotConfigured(
            f"Billing is not configured for this plan: set {variable} to the Stripe price "
            f"id of the {plan.capitalize()} plan, then restart. Nothing has been charged."
        )
    return provider


def _key(*parts: str) -> str:
    """An idempotency key (Stripe allows 255 characters)."""
    return "kush-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:48]


async def _customer(request: web.Request, provider: BillingProvider, user_id: str) -> str:
    """The viewer's Stripe customer, created once and stored."""
    pool = request.app[pg_key]
    row = await pool.fetchrow(
        "SELECT email, stripe_customer_id FROM users WHERE id = $1 AND disabled_at IS NULL",
        uuid.UUID(user_id),
    )
    if row is None:
        raise ApiError("Account not found or disabled", code="account_disabled", status=403)
    if row["stripe_customer_id"]:
        return str(row["stripe_customer_id"])
    # the same key for every attempt: two checkouts racing get the same customer back
    created = await provider.create_customer(
        user_id=user_id, email=row["email"], idempotency_key=_key("customer", user_id)
    )
    stored = await pool.fetchval(
        """UPDATE users SET stripe_customer_id = coalesce(stripe_customer_id, $2)
            WHERE id = $1 RETURNING stripe_customer_id""",
        uuid.UUID(user_id),
        created,
    )
    return str(stored or created)


# ------------------------------------------------------------------ views

BILLING_ERRORS = {
    403: "A cookie without the CSRF header (`csrf_failed`), or a disabled account",
    429: "Too many attempts (`rate_limited`; see Retry-After)",
    502: "Stripe refused the request (`billing_provider_error`): a configuration problem",
    503: "Billing is not configured (`billing_not_configured`: the message says how), or "
    "Stripe is not answering (`billing_unavailable`, with Retry-After)",
}


@routes.post(
    "/v1/billing/checkout",
    summary="Start Stripe Checkout for a paid plan: the page to send the browser to",
    body=CheckoutRequest,
    replies={200: RedirectUrl},
    auth=SIGNED_IN,
    errors={
        **BILLING_ERRORS,
        409: "Already subscribed through Stripe (`already_subscribed`): change or cancel "
        "the plan in the portal",
    },
)
async def checkout(request: web.Request) -> web.Response:
    """POST /v1/billing/checkout {plan} -> {url} (Stripe Checkout, subscription mode)."""
    claims = await authenticate(request)
    choice = await parse_body(request, CheckoutRequest)
    app = request.app
    settings = app[settings_key]
    provider = _provider(request, choice.plan)
    await ratelimit.hit(
        app[redis_key],
        app[rkeys_key],
        "billing",
        claims.sub,
        limit=CHECKOUTS_PER_MINUTE,
        window_s=60,
    )
    live = await app[pg_key].fetchval(
        """SELECT status FROM subscriptions
            WHERE user_id = $1 AND provider = 'stripe' AND status = ANY($2::text[])""",
        uuid.UUID(claims.sub),
        sorted(LIVE_STATUSES),
    )
    if live is not None:  # a second subscription would bill twice: the portal changes plans
        raise Conflict(
            "You already have a subscription: change or cancel it from Manage subscription",
            code="already_subscribed",
        )
    price = settings.stripe_price(choice.plan) or ""
    customer = await _customer(request, provider, claims.sub)
    window = str(int(time.time() // IDEMPOTENCY_WINDOW_S))
    url = await provider.create_checkout(
        customer_id=customer,
        price_id=price,
        user_id=claims.sub,
        plan=choice.plan,
        success_url=settings.billing_return_url("success"),
        cancel_url=settings.billing_return_url("cancel"),
        idempotency_key=_key("checkout", claims.sub, choice.plan, price, customer, window),
    )
    return json_response(RedirectUrl(url=url), headers={"Cache-Control": "no-store"})


@routes.post(
    "/v1/billing/portal",
    summary="Open the Stripe Customer Portal (change plan, payment method, cancel)",
    replies={200: RedirectUrl},
    auth=SIGNED_IN,
    errors={
        **BILLING_ERRORS,
        409: "No Stripe customer yet (`no_billing_account`): subscribe first",
    },
)
async def portal(request: web.Request) -> web.Response:
    """POST /v1/billing/portal -> {url}."""
    claims = await authenticate(request)
    app = request.app
    provider = _provider(request)
    customer = await app[pg_key].fetchval(
        "SELECT stripe_customer_id FROM users WHERE id = $1", uuid.UUID(claims.sub)
    )
    if not customer:
        raise Conflict("There is no subscription to manage yet", code="no_billing_account")
    url = await provider.create_portal(
        customer_id=str(customer), return_url=app[settings_key].billing_return_url("portal")
    )
    return json_response(RedirectUrl(url=url), headers={"Cache-Control": "no-store"})


def _iso(value: object) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def _next(nxt: Next) -> NextChange:
    return NextChange(kind=nxt.kind, at=_iso(nxt.at), plan=nxt.plan)


@routes.get(
    "/v1/billing/subscription",
    summary="Your plan, its subscription status, period end and what happens next",
    replies={200: SubscriptionState},
    auth=SIGNED_IN,
)
async def subscription(request: web.Request) -> web.Response:
    """GET /v1/billing/subscription -> the effective plan, read fresh."""
    claims = await authenticate(request)
    app = request.app
    settings = app[settings_key]
    pool = app[pg_key]
    current = await load_user_plan(pool, claims.sub, grace=grace_of(settings))
    customer = await pool.fetchval(
        "SELECT stripe_customer_id FROM users WHERE id = $1", uuid.UUID(claims.sub)
    )
    effective = current.effective
    source = effective.source
    names = {p: limits.name for p, limits in current.plans.items()}
    configured = settings.billing_configured
    offers = [
        PlanOffer(
            id=p.id,
            name=p.name,
            amount_minor=p.amount_minor,
            currency=p.currency,
            interval=p.interval,
            max_height=p.max_height,
            max_streams=p.max_streams,
            ads=p.ads,
            purchasable=configured and bool(settings.stripe_price(p.id)),
        )
        for p in sorted(current.plans.values(), key=lambda p: p.rank)
    ]
    state = SubscriptionState(
        plan=effective.plan,
        plan_name=current.limits.name,
        status=effective.status,
        provider=source.provider if source is not None else None,
        current_period_end=_iso(source.current_period_end) if source is not None else None,
        cancel_at_period_end=bool(source and source.cancel_at_period_end),
        grace_until=_iso(effective.grace_until),
        next=_next(effective.next),
        message=describe_next(effective, names),
        billing_configured=configured,
        can_manage=configured and bool(customer),
        plans=offers,
    )
    return json_response(state, headers={"Cache-Control": "no-store"})


async def billing_ctx(app: web.Application) -> AsyncIterator[None]:
    """The Stripe client (one HTTP session per process), when configured."""
    provider = create_provider(app[settings_key])
    app[billing_key] = Billing(provider)
    yield
    if provider is not None:
        await provider.close()


def setup_routes(app: web.Application) -> None:
    """Mount the billing views, their error mapping and the provider's lifetime."""
    app.cleanup_ctx.append(billing_ctx)
    app[error_mappers_key].append(map_billing_error)
    routes.mount(app)

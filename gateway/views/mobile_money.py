"""Mobile money views for viewers: ``POST /v1/billing/mobile-money`` (pay for a plan or
a pass with MTN MoMo or Airtel Money), ``GET /v1/billing/payments/{payment_id}``.

The viewer's number is validated and normalised (``billing.msisdn``), the payment
recorded as pending, the provider asked to push the USSD prompt; once it accepted,
the viewer gets provisional access to the product for ``KUSH_PROVISIONAL_MINUTES``
(at most once a day per account) and the reply is 202. The provider's callback (admin
service) or the worker's polling settles the payment.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Literal

import asyncpg
from aiohttp import web
from pydantic import Field

from billing.collections import CollectionProvider, callback_url, create_collection_providers
from billing.msisdn import InvalidMsisdn, for_provider
from billing.payments import (
    create_payment,
    grant_provisional,
    list_products,
    load_product,
    payment_message,
    refuse_payment,
    user_payment,
)
from billing.provider import BillingNotConfigured, ProviderRefused, ProviderUnavailable
from billing.store import grace_of, utcnow
from runtime import ratelimit
from runtime.api import BodyModel, DateTimeStr, PathParam, ReplyModel, Routes, UuidStr, parse_body
from runtime.errors import ApiError, NotFound
from runtime.web import json_response, pg_key, redis_key, rkeys_key, settings_key
from tokens.service.views import SIGNED_IN, authenticate

routes = Routes(tags=("billing",))

PAYMENTS_PER_MINUTE = 5
#: a second request for the same product and number within this window (a double tap)
#: answers with the pending payment instead of pushing a second USSD prompt
REPEAT_WINDOW = timedelta(minutes=2)

providers_key = web.AppKey("mobile_money_providers", dict[str, CollectionProvider])


class MobileMoneyRequest(BodyModel):
    """Pay for a plan (30 days) or a pass by mobile money."""

    product: str = Field(
        pattern=r"^[a-z][a-z0-9_]{0,31}$",
        description="A plan (`basic`, `premium`) or a pass (`day_pass`, `week_pass`)",
    )
    msisdn: str = Field(
        max_length=32, description="The paying number: `0772 123456`, `+256772123456`…"
    )
    provider: Literal["mtn", "airtel"] | None = Field(
        default=None, description="`mtn` or `airtel`; by default the number's operator"
    )


class PaymentState(ReplyModel):
    """A mobile money payment and what it gives while it is pending."""

    payment_id: UuidStr
    status: Literal["pending", "successful", "failed", "expired"]
    provisional_until: DateTimeStr | None = Field(
        description="The product is yours until then while the payment is pending "
        "(null: no provisional access, at most one grant a day)"
    )
    provider: Literal["mtn", "airtel"]
    product: str
    product_name: str
    msisdn: str | None = Field(description="The paying number in E.164 (+256…)")
    amount_ugx: int = Field(description="Whole Uganda shillings")
    currency: Literal["UGX"]
    reason: str | None = Field(description="Why it failed, as the provider said")
    message: str = Field(description="What to do or what happened, in one sentence")
    created_at: DateTimeStr


class Product(ReplyModel):
    """Something mobile money sells."""

    id: str
    name: str
    kind: Literal["plan", "pass"]
    plan: str = Field(description="The plan it gives")
    period_days: int
    amount_ugx: int


class ProductList(ReplyModel):
    """What can be bought by mobile money, and with which providers."""

    products: list[Product]
    providers: list[str] = Field(description="Configured providers (`mtn`, `airtel`)")
    provisional_minutes: int


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _state(row: asyncpg.Record | None) -> PaymentState:
    assert row is not None  # the caller's own payment, just written
    until = row["provisional_until"]
    return PaymentState(
        payment_id=str(row["id"]),
        status=row["status"],
        provisional_until=_iso(until) if row["status"] == "pending" else None,
        provider=row["provider"],
        product=row["product"],
        product_name=row["product_name"],
        msisdn=row["msisdn"],
        amount_ugx=row["amount_ugx"],
        currency="UGX",
        reason=row["reason"],
        message=payment_message(row),
        created_at=row["created_at"].isoformat(),
    )


def _invalid(code: str, message: str) -> ApiError:
    return ApiError(message, code=code, status=422)


@routes.post(
    "/v1/billing/mobile-money",
    summary="Pay for a plan or a pass with MTN MoMo or Airtel Money (USSD prompt)",
    description="Records a pending payment and asks the provider to push a USSD prompt to "
    "the number; answers 202 once the provider accepted. While the payment is pending "
    "the viewer has the product for `KUSH_PROVISIONAL_MINUTES` (at most one such grant "
    "a day). Poll `GET /v1/billing/payments/{payment_id}` for the outcome.",
    body=MobileMoneyRequest,
    replies={202: PaymentState},
    auth=SIGNED_IN,
    errors={
        422: "Unknown product (`unknown_product`), not a Ugandan mobile money number "
        "(`invalid_msisdn`) or a number of the other operator (`wrong_operator`); the "
        "message says why",
        429: "Too many attempts (`rate_limited`; see Retry-After)",
        502: "The provider refused the request (`billing_provider_error`)",
        503: "Mobile money is not configured (`billing_not_configured`) or the provider "
        "is not answering (`billing_unavailable`, with Retry-After)",
    },
)
async def pay_mobile_money(request: web.Request) -> web.Response:
    """POST /v1/billing/mobile-money {product, msisdn, provider?} -> 202 {payment_id…}."""
    claims = await authenticate(request)
    body = await parse_body(request, MobileMoneyRequest)
    app = request.app
    settings = app[settings_key]
    pool = app[pg_key]
    product = await load_product(pool, body.product)
    if product is None:
        names = ", ".join(p.id for p in await list_products(pool))
        raise _invalid("unknown_product", f"No such product; mobile money sells: {names}")
    try:
        number = for_provider(body.msisdn, body.provider)
    except InvalidMsisdn as err:
        raise _invalid(err.code, str(err)) from None
    name = body.provider or number.operator
    provider = app[providers_key].get(name)
    if provider is None:
        variables = "KUSH_MTN_MOMO_*" if name == "mtn" else "KUSH_AIRTEL_*"
        raise BillingNotConfigured(
            f"Mobile money with {name.upper()} is not configured on this server: set "
            f'{variables} (README "Mobile money"). Nothing has been charged.'
        )
    await ratelimit.hit(
        app[redis_key],
        app[rkeys_key],
        "mobile-money",
        claims.sub,
        limit=PAYMENTS_PER_MINUTE,
        window_s=60,
    )
    now = utcnow()
    repeat = await pool.fetchval(
        """SELECT id FROM mobile_money_payments
            WHERE user_id = $1 AND product = $2 AND msisdn = $3 AND status = 'pending'
              AND created_at > $4 ORDER BY created_at DESC LIMIT 1""",
        uuid.UUID(claims.sub),
        product.id,
        number.e164,
        now - REPEAT_WINDOW,
    )
    if repeat is not None:
        row = await user_payment(pool, str(repeat), claims.sub)
        return json_response(_state(row), status=202, headers={"Cache-Control": "no-store"})
    async with pool.acquire() as conn, conn.transaction():
        payment_id = await create_payment(
            conn,
            user_id=claims.sub,
            provider=name,
            product=product,
            msisdn=number.e164,
            settings=settings,
            now=now,
        )
    reference = str(payment_id)
    try:
        await provider.request_to_pay(
            reference=reference,
            msisdn=number,
            amount_ugx=product.amount_ugx,
            description=f"Kush Films {product.name}",
            callback_url=callback_url(settings, name, reference),
        )
    except ProviderRefused:
        await refuse_payment(pool, payment_id, "REQUEST_REFUSED")
        raise
    except ProviderUnavailable:
        # the request may have reached the provider: the payment stays pending (without
        # provisional access) and the worker's status queries settle it
        raise
    async with pool.acquire() as conn, conn.transaction():
        _, change = await grant_provisional(
            conn, payment_id, claims.sub, settings=settings, grace=grace_of(settings)
        )
        if change is not None:
            # provisional access only raises the plan: nothing to end on live sessions
            await conn.execute(
                "UPDATE billing_jobs SET done_at = now() WHERE id = $1", change.job_id
            )
    row = await user_payment(pool, reference, claims.sub)
    return json_response(_state(row), status=202, headers={"Cache-Control": "no-store"})


@routes.get(
    "/v1/billing/payments/{payment_id}",
    summary="One of your mobile money payments: pending, successful, failed or expired",
    replies={200: PaymentState},
    auth=SIGNED_IN,
    path_params={"payment_id": PathParam("The payment id from the 202", format="uuid")},
    errors={404: "No such payment among yours (`not_found`)"},
)
async def get_payment(request: web.Request) -> web.Response:
    """GET /v1/billing/payments/{payment_id} -> the payment (own payments only)."""
    claims = await authenticate(request)
    row = await user_payment(request.app[pg_key], request.match_info["payment_id"], claims.sub)
    if row is None:
        raise NotFound("No such payment", code="not_found")
    return json_response(_state(row), headers={"Cache-Control": "no-store"})


@routes.get(
    "/v1/billing/mobile-money/products",
    summary="What mobile money sells (plans for 30 days, day and week passes), in UGX",
    replies={200: ProductList},
)
async def mobile_money_products(request: web.Request) -> web.Response:
    """GET /v1/billing/mobile-money/products -> {products, providers}."""
    app = request.app
    products = await list_products(app[pg_key])
    return json_response(
        ProductList(
            products=[
                Product(
                    id=p.id,
                    name=p.name,
                    kind=p.kind,
                    plan=p.plan,
                    period_days=p.period_days,
                    amount_ugx=p.amount_ugx,
                )
                for p in products
            ],
            providers=sorted(app[providers_key].keys()),
            provisional_minutes=app[settings_key].provisional_minutes,
        )
    )


async def providers_ctx(app: web.Application) -> AsyncIterator[None]:
    """The configured collection providers (one HTTP session each per process)."""
    providers = create_collection_providers(app[settings_key])
    app[providers_key] = providers
    yield
    for provider in providers.values():
        await provider.close()


def setup_routes(app: web.Application) -> None:
    """Mount the mobile money views and the providers' lifetime."""
    app.cleanup_ctx.append(providers_ctx)
    routes.mount(app)

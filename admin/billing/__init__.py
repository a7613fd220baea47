"""Billing in the admin service: the Stripe webhook and its subscription state machine,
the mobile money callbacks,
plan changes enforced on live sessions, and the admin routes (subscriptions, grants by
hand, revenue). What both services share (the effective plan, the Stripe provider, the
mail outbox) is the ``billing`` package."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from admin.billing import mobile_money, views, webhook
from admin.billing.keys import admin_sessions_key
from runtime.web import pg_key, redis_key, rkeys_key
from tokens.service.sessions import SessionStore


async def billing_ctx(app: web.Application) -> AsyncIterator[None]:
    """The session store the webhook and grants end sessions through."""
    app[admin_sessions_key] = SessionStore(app[pg_key], app[redis_key], app[rkeys_key])
    yield


def setup_billing(app: web.Application) -> None:
    """Mount the webhook and the billing admin routes; open their resources."""
    app.cleanup_ctx.append(billing_ctx)
    webhook.setup_routes(app)
    mobile_money.setup_routes(app)
    views.setup_routes(app)

"""``create_app(settings)``: the admin application factory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from admin.ads import setup_routes as setup_ad_routes
from admin.billing import setup_billing
from admin.catalog.views import setup_routes as setup_catalogue_routes
from admin.jobs import setup_routes as setup_job_routes
from admin.keys import admin_origin_key, background_key, encode_slots_key
from admin.people.views import setup_routes as setup_people_routes
from admin.reports import setup_routes as setup_report_routes
from admin.uploads import UPLOAD_SECURITY_SCHEMES
from admin.uploads import setup_routes as setup_upload_routes
from origin.factory import create_origin
from runtime.api import add_openapi
from runtime.settings import Settings
from runtime.web import base_app, settings_key
from tokens.service.views import SECURITY_SCHEMES, auth_ctx

API_DESCRIPTION = """The admin API of Kush Films: the catalogue (films, publishing,
takedowns, categories), uploads and ingest jobs, accounts and data requests (export,
erasure), the audit log, ad creatives, campaigns, break policies, subscriptions, plans
granted by hand and reports. Every route needs the token of an `admin`; a `moderator` may
read everything and unpublish films. The upload data URL carries its own token, the
Stripe webhook (`POST /billing/stripe/webhook`) is authenticated by Stripe's signature and
the mobile money callbacks (`/billing/mobile-money/{provider}/callback`) by the signed
reference in their URL.
Sign in with `POST /v1/auth/login` on the gateway. Every change writes an audit line.
Errors are `{"error": {"code", "message"}}`; a body or query that does not fit its schema
is 422 `invalid_request` with `fields` listing each path at fault."""


async def _resources_ctx(app: web.Application) -> AsyncIterator[None]:
    """The origin store, the background tasks (cancelled on the way out) and the slots
    that bound concurrent encodes."""
    app[admin_origin_key] = create_origin(app[settings_key])
    running: set[asyncio.Task[None]] = set()
    app[background_key] = running
    app[encode_slots_key] = asyncio.Semaphore(app[settings_key].admin_max_encodes)
    yield
    tasks = list(running)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await app[admin_origin_key].close()


#: The admin's security schemes: the token service's, plus the upload URL's own token.
ADMIN_SECURITY_SCHEMES = {**SECURITY_SCHEMES, **UPLOAD_SECURITY_SCHEMES}


def create_app(settings: Settings) -> web.Application:
    """Build the admin app; resources open in ``cleanup_ctx``, nothing at import time."""
    app = base_app(settings, "admin")
    app.cleanup_ctx.append(auth_ctx)
    app.cleanup_ctx.append(_resources_ctx)
    setup_catalogue_routes(app)
    setup_people_routes(app)
    setup_ad_routes(app)
    setup_report_routes(app)
    setup_upload_routes(app)
    setup_job_routes(app)
    setup_billing(app)
    add_openapi(
        app,
        "/admin/v1/openapi.json",
        title="Kush Films admin API",
        version="1",
        description=API_DESCRIPTION,
        security_schemes=ADMIN_SECURITY_SCHEMES,
    )
    return app

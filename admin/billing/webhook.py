"""``POST /billing/stripe/webhook``: Stripe's events, verified, applied once.

No bearer token: the ``Stripe-Signature`` header is the authentication. The raw body is
verified by the ``stripe`` library's own verifier (``stripe.Webhook.construct_event``)
against each secret of ``STRIPE_WEBHOOK_SECRET`` (comma-separated while one is rotated
out), with Stripe's 300 s tolerance. A missing or bad signature (tampered body, wrong
secret, an old timestamp, a garbage header) is 400 ``invalid_signature`` and nothing is
written. A verified event is applied in one transaction (``admin.billing.events``): a
duplicate answers 200 with ``"duplicate": true`` and changes nothing; an unknown type
answers 200 and is logged. Plan changes are enforced on live sessions right after the
commit; anything slow (re-reading a subscription from Stripe) is a job for ``kush
worker``. Stripe retries whatever does not get a 2xx (a 503 while PostgreSQL is down).
"""

from __future__ import annotations

import logging
from typing import Any

import stripe
from aiohttp import web
from pydantic import Field

from admin.billing.enforce import run_jobs
from admin.billing.events import process_event
from admin.billing.keys import admin_sessions_key
from billing.store import grace_of
from runtime.api import Param, ReplyModel, Routes
from runtime.errors import BadRequest
from runtime.web import json_response, pg_key, settings_key

log = logging.getLogger(__name__)

TOLERANCE_S = 300
SIGNATURE_HEADER = "Stripe-Signature"

routes = Routes(tags=("billing",))


class WebhookReceived(ReplyModel):
    """The event was accepted (applied, or recognised as already applied)."""

    received: bool
    duplicate: bool = Field(description="This event id was processed before: nothing changed")
    outcome: str = Field(
        description="`applied`, `stale` (older than what is stored), `duplicate`, "
        "`unhandled` (a type we do not act on), `unknown_customer`…"
    )


def verify(payload: bytes, header: str | None, secrets: tuple[str, ...]) -> dict[str, Any]:
    """The event, if ``header`` signs ``payload`` with one of ``secrets`` within the
    tolerance; else :class:`BadRequest` (400 ``invalid_signature``)."""
    if not header or not secrets:
        raise BadRequest("Missing or invalid Stripe signature", code="invalid_signature")
    for secret in secrets:
        try:
            event = stripe.Webhook.construct_event(payload, header, secret, TOLERANCE_S)
        except stripe.SignatureVerificationError:
            continue
        except ValueError:  # signed, but not a JSON event (or not UTF-8)
            break
        data = event.to_dict()
        if isinstance(data, dict) and data.get("id") and data.get("type"):
            return data
        break
    raise BadRequest("Missing or invalid Stripe signature", code="invalid_signature")


@routes.post(
    "/billing/stripe/webhook",
    summary="Stripe webhook: subscription, checkout and invoice events (Stripe-signed)",
    description="Authenticated by the `Stripe-Signature` header over the raw body "
    "(`t=<unix time>,v1=<HMAC-SHA256>`, 300 s tolerance), not by a bearer token. Each "
    "event id is applied once; duplicates and unknown types answer 200.",
    replies={200: WebhookReceived},
    params=(
        Param(SIGNATURE_HEADER, "header", "Stripe's signature of the raw body", required=True),
    ),
    errors={400: "Missing or invalid signature (`invalid_signature`): nothing was written"},
)
async def stripe_webhook(request: web.Request) -> web.Response:
    """POST /billing/stripe/webhook -> 200 {received, duplicate, outcome}."""
    app = request.app
    settings = app[settings_key]
    payload = await request.read()
    event = verify(payload, request.headers.get(SIGNATURE_HEADER), settings.webhook_secrets)
    pool = app[pg_key]
    async with pool.acquire() as conn, conn.transaction():
        result = await process_event(conn, settings, event)
    log.info("stripe event %s (%s): %s", event.get("id"), event.get("type"), result.outcome)
    if result.changes:
        await run_jobs(pool, app[admin_sessions_key], result.changes, grace=grace_of(settings))
    return json_response(
        WebhookReceived(received=True, duplicate=result.duplicate, outcome=result.outcome)
    )


def setup_routes(app: web.Application) -> None:
    """Mount the webhook."""
    routes.mount(app)

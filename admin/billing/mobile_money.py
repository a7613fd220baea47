"""Mobile money in the admin service: the providers' callbacks, and the ``kush worker``
job that settles payments whose callback never came.

``POST /billing/mobile-money/{provider}/callback`` (``PUT`` too: MTN sends either) has no
bearer token. It is verified by the shared secret: the URL carries ``sig``, an HMAC of
the provider and the reference we issued under ``KUSH_MOBILE_MONEY_CALLBACK_SECRET``
(MTN gets one such URL per request in ``X-Callback-Url``; Airtel's one registered URL
signs ``airtel:``), and the body must name a payment we issued to that provider (for
MTN, the same reference as the URL). Anything else is 400 ``invalid_signature`` or 404
and nothing is written. A verified report is applied in one transaction
(``billing.payments.apply_report``): a duplicate answers 200 ``duplicate``, a late
``pending`` after a final status answers 200 ``stale`` and changes nothing.

MTN sends each callback once and never retries, so :func:`reconcile` asks the provider
for the status of every payment still pending (first after 30 s, then backing off to
every 5 minutes) and expires those past ``KUSH_MOBILE_MONEY_EXPIRE_MINUTES``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import uuid
from datetime import datetime

import asyncpg
import orjson
from aiohttp import web
from pydantic import Field

from admin.billing.enforce import PlanChange, run_jobs
from admin.billing.keys import admin_sessions_key
from billing.collections import (
    CALLBACK_PARSERS,
    CollectionProvider,
    callback_signature,
    create_collection_providers,
)
from billing.mobile_money import Report
from billing.payments import apply_report, expire_payment, next_check_delay
from billing.provider import BillingError
from billing.store import grace_of, utcnow
from runtime.api import Param, PathParam, ReplyModel, Routes
from runtime.errors import BadRequest, NotFound
from runtime.jobs import WorkerContext
from runtime.settings import Settings
from runtime.web import json_response, pg_key, settings_key
from tokens.service.sessions import SessionStore

log = logging.getLogger(__name__)

POLL_S = 5.0
BATCH = 50

routes = Routes(tags=("billing",))


class CallbackReceived(ReplyModel):
    """The report was accepted (applied, or recognised as changing nothing)."""

    received: bool
    outcome: str = Field(
        description="`applied`, `duplicate` (same status again), `stale` "
        "(a report that may not undo a final status)"
    )
    status: str = Field(description="The payment's status now")


def _verify(settings: Settings, provider: str, request: web.Request, reference: str) -> None:
    secret = settings.callback_secret
    signed = reference if provider == "mtn" else ""
    if provider == "mtn" and request.query.get("ref") != reference:
        raise BadRequest(
            "The callback does not name the reference it was issued for", code="invalid_signature"
        )
    sig = request.query.get("sig", "").encode()
    expected = callback_signature(secret, provider, signed).encode() if secret else b""
    if not secret or not hmac.compare_digest(sig, expected):
        raise BadRequest("Missing or invalid callback signature", code="invalid_signature")


async def _callback(request: web.Request) -> web.Response:
    app = request.app
    settings = app[settings_key]
    provider = request.match_info["provider"]
    parse = CALLBACK_PARSERS.get(provider)
    if parse is None:
        raise NotFound("No such mobile money provider", code="not_found")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise BadRequest("The body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object", code="invalid_json")
    reference, report = parse(body)
    if reference is None or report is None:
        raise BadRequest("The callback carries no reference or status", code="invalid_callback")
    _verify(settings, provider, request, reference)
    try:
        payment_id = uuid.UUID(reference)
    except ValueError:
        raise NotFound("No such payment", code="unknown_payment") from None
    pool = app[pg_key]
    async with pool.acquire() as conn, conn.transaction():
        issued = await conn.fetchval(
            "SELECT provider FROM mobile_money_payments WHERE id = $1", payment_id
        )
        if issued != provider:
            raise NotFound("No such payment", code="unknown_payment")
        applied = await apply_report(
            conn, payment_id, report, grace=grace_of(settings), via="callback"
        )
    assert applied is not None
    log.info("mobile money callback %s %s: %s", provider, reference, applied.outcome)
    if applied.changes:
        await run_jobs(pool, app[admin_sessions_key], applied.changes, grace=grace_of(settings))
    return json_response(
        CallbackReceived(received=True, outcome=applied.outcome, status=applied.status)
    )


_SPEC = {
    "summary": "Mobile money provider callback: a payment's outcome (shared-secret signed)",
    "description": "Authenticated by `sig` in the URL (HMAC-SHA256 of `provider:reference` "
    "under KUSH_MOBILE_MONEY_CALLBACK_SECRET) and by the reference we issued, not by a "
    "bearer token. Idempotent; a late `pending` never undoes a final status.",
    "replies": {200: CallbackReceived},
    "path_params": {"provider": PathParam("`mtn` or `airtel`")},
    "params": (
        Param("sig", "query", "HMAC of the provider and reference", required=True),
        Param("ref", "query", "The reference we issued (MTN)"),
    ),
    "errors": {
        400: "Bad signature or reference (`invalid_signature`), or a body that is not a "
        "provider's callback (`invalid_json`, `invalid_callback`): nothing was written",
        404: "No such provider, or no payment we issued with this reference (`unknown_payment`)",
    },
}


@routes.post("/billing/mobile-money/{provider}/callback", **_SPEC)  # type: ignore[arg-type]
async def mobile_money_callback(request: web.Request) -> web.Response:
    """POST /billing/mobile-money/{provider}/callback -> 200 {received, outcome, status}."""
    return await _callback(request)


@routes.put("/billing/mobile-money/{provider}/callback", **_SPEC)  # type: ignore[arg-type]
async def mobile_money_callback_put(request: web.Request) -> web.Response:
    """PUT /billing/mobile-money/{provider}/callback: MTN may call back with PUT."""
    return await _callback(request)


def setup_routes(app: web.Application) -> None:
    """Mount the callbacks."""
    routes.mount(app)


# ------------------------------------------------------------------ reconciliation

_CLAIM_SQL = """
UPDATE mobile_money_payments m SET next_check_at = $1::timestamptz + make_interval(secs => 60)
 WHERE id IN (SELECT id FROM mobile_money_payments
               WHERE status = 'pending' AND next_check_at <= $1::timestamptz
                 AND ($3::uuid IS NULL OR user_id = $3)
               ORDER BY next_check_at FOR UPDATE SKIP LOCKED LIMIT $2)
RETURNING id, provider, expires_at, checks
"""


async def reconcile(
    pool: asyncpg.Pool,
    sessions: SessionStore,
    settings: Settings,
    providers: dict[str, CollectionProvider],
    *,
    now: datetime | None = None,
    user_id: str | None = None,
) -> dict[str, int]:
    """Ask the provider about every pending payment due for a check (of one user, when
    ``user_id`` is given), apply its answer, expire those past their time; enforce what
    changed. Returns counts per outcome."""
    at = now or utcnow()
    grace = grace_of(settings)
    counts: dict[str, int] = {}
    changes: list[PlanChange] = []
    claimed = await pool.fetch(_CLAIM_SQL, at, BATCH, uuid.UUID(user_id) if user_id else None)
    for row in claimed:
        payment_id = row["id"]
        provider = providers.get(row["provider"])
        report: Report | None = None
        if provider is not None:
            try:
                report = await provider.payment_status(str(payment_id))
            except BillingError as err:
                log.info("status of payment %s not known: %s", payment_id, err.code)
        outcome = "pending"
        async with pool.acquire() as conn, conn.transaction():
            if report is not None and report.status != "pending":
                applied = await apply_report(
                    conn, payment_id, report, grace=grace, via="poll", now=at
                )
                if applied is not None:
                    outcome = applied.status
                    changes += applied.changes
            elif row["expires_at"] <= at:
                changes += await expire_payment(conn, payment_id, grace=grace, now=at)
                outcome = "expired"
            else:
                await conn.execute(
                    """UPDATE mobile_money_payments SET checks = checks + 1,
                              next_check_at = $2::timestamptz + make_interval(secs => $3)
                        WHERE id = $1""",
                    payment_id,
                    at,
                    next_check_delay(row["checks"] + 1),
                )
        counts[outcome] = counts.get(outcome, 0) + 1
    if changes:
        await run_jobs(pool, sessions, changes, grace=grace)
    return counts


async def mobile_money_job(ctx: WorkerContext, stop: asyncio.Event) -> None:
    """``kush worker`` job: settle pending mobile money payments, until stopped."""
    sessions = SessionStore(ctx.pool, ctx.redis, ctx.keys)
    providers = create_collection_providers(ctx.settings)
    try:
        while not stop.is_set():
            try:
                await reconcile(ctx.pool, sessions, ctx.settings, providers)
            except Exception as exc:  # PostgreSQL or Redis away: try again next round
                log.warning("mobile money reconciliation skipped: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=POLL_S)
    finally:
        for provider in providers.values():
            await provider.close()

"""Admin API for ad inventory: creatives, campaigns, break policies and the ad report.

Every route is role-checked (``admin``; reports also ``moderator``). Each change bumps
``ads:version`` in Redis so gateways reload their cached inventory at once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import date, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web

from admin.publish import build_ad, record_ad_package
from origin import OriginStore
from runtime.db import audit
from runtime.errors import BadRequest, NotFound, Unprocessable
from runtime.signals import bump_ad_inventory
from runtime.web import (
    json_response,
    pg_key,
    read_json,
    redis_key,
    request_id_key,
    rkeys_key,
    settings_key,
)
from tokens.service.views import require_role

log = logging.getLogger(__name__)

admin_origin_key = web.AppKey("admin_origin", OriginStore)
background_key = web.AppKey("background", set[asyncio.Task[None]])
encode_slots_key = web.AppKey("encode_slots", asyncio.Semaphore)

ADMIN = frozenset({"admin"})
READERS = frozenset({"admin", "moderator"})
MAX_LIST = 200


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError):
        raise NotFound(f"No such {what}", code=f"{what}_not_found") from None


def _text(
    body: dict[str, Any], name: str, *, required: bool = True, max_len: int = 200
) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise BadRequest(
            f"'{name}' must be a non-empty string of at most {max_len} characters",
            code="invalid_request",
        )
    return value.strip()


def _int(
    body: dict[str, Any], name: str, *, low: int, high: int, default: int | None = None
) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BadRequest(
            f"'{name}' must be an integer between {low} and {high}", code="invalid_request"
        )
    return value


def _codes(body: dict[str, Any], name: str, *, upper: bool = False) -> list[str] | None:
    value = body.get(name)
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) > 300
        or not all(isinstance(v, str) and 0 < len(v) <= 64 for v in value)
    ):
        raise BadRequest(f"'{name}' must be a list of short strings", code="invalid_request")
    return [v.upper() if upper else v for v in value]


def _when(body: dict[str, Any], name: str) -> datetime:
    value = body.get(name)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"'{name}' must be an ISO 8601 date-time", code="invalid_request"
        ) from None
    if parsed.tzinfo is None:
        raise BadRequest(f"'{name}' needs a time zone (e.g. Z)", code="invalid_request")
    return parsed


async def _changed(
    request: web.Request,
    action: str,
    target_type: str,
    target_id: str,
    claims_sub: str,
    details: dict[str, Any] | None = None,
) -> None:
    app = request.app
    await bump_ad_inventory(app[redis_key], app[rkeys_key])
    await audit(
        app[pg_key],
        action=action,
        actor_id=uuid.UUID(claims_sub),
        target_type=target_type,
        target_id=target_id,
        details=orjson.dumps(details or {}).decode(),
        request_id=request.get(request_id_key),
    )


def _ad_json(r: Any) -> dict[str, Any]:
    return {
        "id": str(r["id"]),
        "name": r["name"],
        "advertiser": r["advertiser"],
        "status": r["status"],
        "duration_s": r["duration_s"],
        "click_url": r["click_url"],
        "created_at": r["created_at"].isoformat(),
    }


async def create_ad(request: web.Request) -> web.Response:
    """POST /admin/v1/ads {name, advertiser?, click_url?, generate_seconds?} -> 201.

    With ``generate_seconds`` (5-60) a synthetic video ad is generated with ffmpeg in the
    film ladder in the background (status ``processing`` then ``ready``); uploads of real
    creatives go through the ingest pipeline.
    """
    claims = await require_role(request, ADMIN)
    body = await read_json(request)
    name = _text(body, "name")
    advertiser = _text(body, "advertiser", required=False) or ""
    click_url = _text(body, "click_url", required=False, max_len=2000)
    if click_url is not None and not click_url.startswith(("https://", "http://")):
        raise Unprocessable("'click_url' must be an http(s) URL", code="invalid_click_url")
    seconds = _int(body, "generate_seconds", low=5, high=60)
    pool = request.app[pg_key]
    row = await pool.fetchrow(
        """INSERT INTO ads (name, advertiser, click_url, status)
           VALUES ($1, $2, $3, $4) RETURNING *""",
        name,
        advertiser,
        click_url,
        "processing" if seconds else "draft",
    )
    ad_id = str(row["id"])
    if seconds:
        task = asyncio.create_task(_generate(request.app, ad_id, float(seconds)))
        tasks = request.app[background_key]
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await _changed(request, "ad.create", "ad", ad_id, claims.sub, {"name": name})
    return json_response(_ad_json(row), status=201)


async def _generate(app: web.Application, ad_id: str, seconds: float) -> None:
    """Encode in the background, at most ``KUSH_ADMIN_MAX_ENCODES`` at a time, holding a
    database connection only for the final write (ten requests must not drain the pool)."""
    try:
        async with app[encode_slots_key]:
            package = await build_ad(
                app[admin_origin_key],
                ad_id,
                duration_s=seconds,
                work_dir=app[settings_key].data_dir / "work",
            )
        async with app[pg_key].acquire() as conn:
            await record_ad_package(conn, ad_id, package)
        await bump_ad_inventory(app[redis_key], app[rkeys_key])
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("generating ad %s failed", ad_id)
        await app[pg_key].execute("UPDATE ads SET status = 'draft' WHERE id = $1", uuid.UUID(ad_id))


async def list_ads(request: web.Request) -> web.Response:
    """GET /admin/v1/ads -> {items}."""
    await require_role(request, READERS)
    rows = await request.app[pg_key].fetch(
        "SELECT * FROM ads ORDER BY created_at DESC LIMIT $1", MAX_LIST
    )
    return json_response({"items": [_ad_json(r) for r in rows]})


async def get_ad(request: web.Request) -> web.Response:
    """GET /admin/v1/ads/{ad_id}."""
    await require_role(request, READERS)
    row = await request.app[pg_key].fetchrow(
        "SELECT * FROM ads WHERE id = $1", _uuid(request.match_info["ad_id"], "ad")
    )
    if row is None:
        raise NotFound("No such ad", code="ad_not_found")
    return json_response(_ad_json(row))


def _campaign_json(r: Any) -> dict[str, Any]:
    return {
        "id": str(r["id"]),
        "name": r["name"],
        "advertiser": r["advertiser"],
        "starts_at": r["starts_at"].isoformat(),
        "ends_at": r["ends_at"].isoformat(),
        "weight": r["weight"],
        "target_countries": r["target_countries"],
        "target_categories": r["target_categories"],
        "target_regions": r["target_regions"],
        "target_plans": r["target_plans"],
        "daily_cap": r["daily_cap"],
        "total_cap": r["total_cap"],
        "frequency_cap_per_day": r["frequency_cap_per_day"],
        "status": r["status"],
        "ad_ids": [str(a) for a in r["ad_ids"]],
    }


_CAMPAIGN_SQL = """SELECT c.*, coalesce(array_agg(ca.ad_id) FILTER (WHERE ca.ad_id IS NOT NULL),
                   '{}') AS ad_ids
                   FROM campaigns c LEFT JOIN campaign_ads ca ON ca.campaign_id = c.id"""


async def create_campaign(request: web.Request) -> web.Response:
    """POST /admin/v1/campaigns -> 201 (flight, weight, targeting, caps, creatives)."""
    claims = await require_role(request, ADMIN)
    body = await read_json(request)
    name = _text(body, "name")
    starts, ends = _when(body, "starts_at"), _when(body, "ends_at")
    if ends <= starts:
        raise Unprocessable("'ends_at' must be after 'starts_at'", code="invalid_flight")
    plans = _codes(body, "target_plans")
    if plans is not None and not set(plans) <= {"free", "basic", "premium"}:
        raise Unprocessable("'target_plans' holds an unknown plan", code="invalid_request")
    ad_ids = body.get("ad_ids", [])
    if not isinstance(ad_ids, list) or len(ad_ids) > 50:
        raise BadRequest("'ad_ids' must be a list (at most 50)", code="invalid_request")
    ids = [_uuid(a, "ad") for a in ad_ids]
    pool = request.app[pg_key]
    async with pool.acquire() as conn, conn.transaction():
        found = await conn.fetchval("SELECT count(*) FROM ads WHERE id = ANY($1)", ids)
        if found != len(set(ids)):
            raise Unprocessable("Some 'ad_ids' do not exist", code="unknown_ad")
        campaign_id = await conn.fetchval(
            """INSERT INTO campaigns (name, advertiser, starts_at, ends_at, weight,
                   target_countries, target_categories, target_plans, daily_cap, total_cap,
                   frequency_cap_per_day, target_regions)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id""",
            name,
            _text(body, "advertiser", required=False) or "",
            starts,
            ends,
            _int(body, "weight", low=1, high=1000, default=1),
            _codes(body, "target_countries", upper=True),
            _codes(body, "target_categories"),
            plans,
            _int(body, "daily_cap", low=1, high=10**9),
            _int(body, "total_cap", low=1, high=10**10),
            _int(body, "frequency_cap_per_day", low=1, high=1000),
            _codes(body, "target_regions"),
        )
        for ad in set(ids):
            await conn.execute("INSERT INTO campaign_ads VALUES ($1, $2)", campaign_id, ad)
        row = await conn.fetchrow(_CAMPAIGN_SQL + " WHERE c.id = $1 GROUP BY c.id", campaign_id)
    await _changed(request, "campaign.create", "campaign", str(campaign_id), claims.sub)
    return json_response(_campaign_json(row), status=201)


async def list_campaigns(request: web.Request) -> web.Response:
    """GET /admin/v1/campaigns -> {items}."""
    await require_role(request, READERS)
    rows = await request.app[pg_key].fetch(
        _CAMPAIGN_SQL + " GROUP BY c.id ORDER BY c.created_at DESC LIMIT $1", MAX_LIST
    )
    return json_response({"items": [_campaign_json(r) for r in rows]})


async def update_campaign(request: web.Request) -> web.Response:
    """PATCH /admin/v1/campaigns/{id} {status?, weight?} -> the campaign."""
    claims = await require_role(request, ADMIN)
    cid = _uuid(request.match_info["campaign_id"], "campaign")
    body = await read_json(request)
    status = body.get("status")
    if status is not None and status not in {"active", "paused", "ended"}:
        raise BadRequest("'status' must be active, paused or ended", code="invalid_request")
    weight = _int(body, "weight", low=1, high=1000)
    pool = request.app[pg_key]
    updated = await pool.fetchval(
        """UPDATE campaigns SET status = coalesce($2, status), weight = coalesce($3, weight)
            WHERE id = $1 RETURNING id""",
        cid,
        status,
        weight,
    )
    if updated is None:
        raise NotFound("No such campaign", code="campaign_not_found")
    row = await pool.fetchrow(_CAMPAIGN_SQL + " WHERE c.id = $1 GROUP BY c.id", cid)
    await _changed(request, "campaign.update", "campaign", str(cid), claims.sub, body)
    return json_response(_campaign_json(row))


async def put_break_policy(request: web.Request) -> web.Response:
    """PUT /admin/v1/break-policies/{default|movie_id} -> the policy."""
    claims = await require_role(request, ADMIN)
    target = request.match_info["target"]
    movie_id = None if target == "default" else _uuid(target, "movie")
    body = await read_json(request)
    flags = {}
    for name in ("preroll", "use_cue_points", "postroll"):
        value = body.get(name, name != "postroll")
        if not isinstance(value, bool):
            raise BadRequest(f"'{name}' must be true or false", code="invalid_request")
        flags[name] = value
    every = _int(body, "midroll_every_s", low=60, high=86400)
    max_pod = _int(body, "max_pod_s", low=5, high=600, default=60)
    max_ads = _int(body, "max_ads_per_pod", low=1, high=10, default=2)
    pool = request.app[pg_key]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "DELETE FROM break_policies WHERE movie_id IS NOT DISTINCT FROM $1", movie_id
        )
        await conn.execute(
            """INSERT INTO break_policies (movie_id, preroll, midroll_every_s, use_cue_points,
                   postroll, max_pod_s, max_ads_per_pod) VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            movie_id,
            flags["preroll"],
            every,
            flags["use_cue_points"],
            flags["postroll"],
            max_pod,
            max_ads,
        )
    await _changed(request, "break_policy.put", "break_policy", target, claims.sub, body)
    return json_response(
        {
            "target": target,
            **flags,
            "midroll_every_s": every,
            "max_pod_s": max_pod,
            "max_ads_per_pod": max_ads,
        }
    )


async def ads_report(request: web.Request) -> web.Response:
    """GET /admin/v1/reports/ads?from=YYYY-MM-DD&to=YYYY-MM-DD -> per campaign, creative
    and day: requested and confirmed impressions, quartiles, completes."""
    await require_role(request, READERS)
    try:
        to_day = date.fromisoformat(request.query.get("to", date.today().isoformat()))
        from_day = date.fromisoformat(
            request.query.get("from", (to_day - timedelta(days=30)).isoformat())
        )
    except ValueError:
        raise BadRequest(
            "'from' and 'to' must be YYYY-MM-DD dates", code="invalid_request"
        ) from None
    if from_day > to_day or (to_day - from_day).days > 366:
        raise BadRequest("The range must be at most a year, from <= to", code="invalid_request")
    rows = await request.app[pg_key].fetch(
        """SELECT e.campaign_id, e.ad_id, (e.occurred_at AT TIME ZONE 'UTC')::date AS day,
                  count(*) FILTER (WHERE event = 'impression') AS impressions,
                  count(*) FILTER (WHERE event = 'confirmed_impression') AS confirmed,
                  count(*) FILTER (WHERE event = 'first_quartile') AS first_quartile,
                  count(*) FILTER (WHERE event = 'midpoint') AS midpoint,
                  count(*) FILTER (WHERE event = 'third_quartile') AS third_quartile,
                  count(*) FILTER (WHERE event = 'complete') AS completes
             FROM ad_events e
            WHERE e.occurred_at >= $1::date AND e.occurred_at < $2::date + 1
            GROUP BY 1, 2, 3 ORDER BY 3, 1, 2""",
        from_day,
        to_day,
    )
    items = [
        {
            "campaign_id": str(r["campaign_id"]) if r["campaign_id"] else None,
            "ad_id": str(r["ad_id"]),
            "day": r["day"].isoformat(),
            "impressions": r["impressions"],
            "confirmed_impressions": r["confirmed"],
            "first_quartile": r["first_quartile"],
            "midpoint": r["midpoint"],
            "third_quartile": r["third_quartile"],
            "completes": r["completes"],
        }
        for r in rows
    ]
    return json_response({"from": from_day.isoformat(), "to": to_day.isoformat(), "items": items})


def setup_routes(app: web.Application) -> None:
    """Mount the ad inventory API."""
    r = app.router
    r.add_post("/admin/v1/ads", create_ad)
    r.add_get("/admin/v1/ads", list_ads)
    r.add_get("/admin/v1/ads/{ad_id}", get_ad)
    r.add_post("/admin/v1/campaigns", create_campaign)
    r.add_get("/admin/v1/campaigns", list_campaigns)
    r.add_patch("/admin/v1/campaigns/{campaign_id}", update_campaign)
    r.add_put("/admin/v1/break-policies/{target}", put_break_policy)
    r.add_get("/admin/v1/reports/ads", ads_report)

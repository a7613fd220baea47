"""Admin API for ad inventory: creatives, campaigns, break policies and the ad report.

Every route is role-checked (``admin``; reports also ``moderator``). Each change bumps
``ads:version`` in Redis so gateways reload their cached inventory at once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Annotated, Any, Literal

import orjson
from aiohttp import web
from pydantic import AwareDatetime, Field, StringConstraints

from admin.jobs import create_job
from admin.keys import admin_origin_key, background_key, encode_slots_key
from admin.publish import build_ad, record_ad_package
from admin.uploads import ready_upload
from runtime.api import (
    BodyModel,
    DateStr,
    DateTimeStr,
    InvalidRequest,
    PathParam,
    ReplyModel,
    Routes,
    UuidStr,
    parse_body,
    parse_query,
)
from runtime.dayrange import DayRangeQuery, DayRangeReply
from runtime.db import audit
from runtime.errors import NotFound, Unprocessable
from runtime.signals import bump_ad_inventory
from runtime.web import (
    json_response,
    pg_key,
    redis_key,
    request_id_key,
    rkeys_key,
    settings_key,
)
from tokens.service.views import SIGNED_IN, require_role

log = logging.getLogger(__name__)


ADMIN = frozenset({"admin"})
READERS = frozenset({"admin", "moderator"})
MAX_LIST = 200
INT4_MAX = 2**31 - 1  # the caps are PostgreSQL integers

routes = Routes(tags=("ads",))
ROLE_ERRORS = {403: "Your role may not do this (`forbidden_role`)"}
AD_ID = PathParam("The creative's id", "uuid")
CAMPAIGN_ID = PathParam("The campaign's id", "uuid")

# ------------------------------------------------------------------ models

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Code = Annotated[str, Field(min_length=1, max_length=64)]
Codes = Annotated[list[Code], Field(max_length=300)]
Weight = Annotated[int, Field(ge=1, le=1000, description="Relative share among eligible ads")]
PlanName = Literal["free", "basic", "premium"]
AdStatus = Literal["draft", "processing", "ready", "archived"]
CampaignStatus = Literal["active", "paused", "ended"]


class NewAd(BodyModel):
    """A creative. With ``generate_seconds`` a synthetic video ad is generated."""

    name: Name
    advertiser: Name | None = None
    click_url: (
        Annotated[
            str,
            StringConstraints(
                strip_whitespace=True, min_length=1, max_length=2000, pattern=r"^https?://"
            ),
        ]
        | None
    ) = Field(default=None, description="An http(s) URL")
    generate_seconds: Annotated[int, Field(ge=5, le=60)] | None = Field(
        default=None,
        description="Generate a video ad this long with ffmpeg, in the film ladder, in the "
        "background (status `processing`, then `ready`)",
    )
    upload_id: uuid.UUID | None = Field(
        default=None,
        description="A real creative: an upload (`POST /admin/v1/uploads`) that goes through "
        "the film ingest pipeline and ladder, audio-only included, as a job (`job_id`)",
    )


class NewCampaign(BodyModel):
    """A campaign: flight, weight, targeting (null: everyone), caps and creatives."""

    name: Name
    advertiser: Name | None = None
    starts_at: AwareDatetime
    ends_at: AwareDatetime = Field(description="After `starts_at`")
    weight: Weight = 1
    target_countries: Codes | None = Field(default=None, description="ISO country codes")
    target_regions: Codes | None = None
    target_categories: Codes | None = Field(default=None, description="Category slugs")
    target_plans: Annotated[list[PlanName], Field(max_length=3)] | None = None
    daily_cap: Annotated[int, Field(ge=1, le=10**9)] | None = None
    total_cap: Annotated[int, Field(ge=1, le=INT4_MAX)] | None = None
    frequency_cap_per_day: Annotated[int, Field(ge=1, le=1000)] | None = Field(
        default=None, description="Impressions per viewer and day"
    )
    ad_ids: Annotated[list[uuid.UUID], Field(max_length=50)] = Field(
        default_factory=list, description="Existing creatives"
    )


class CampaignChange(BodyModel):
    """Pause, resume, end or re-weight a campaign (absent or null: unchanged)."""

    status: CampaignStatus | None = None
    weight: Weight | None = None


class BreakPolicyIn(BodyModel):
    """Where ad breaks go in a film (or by default)."""

    preroll: bool = True
    midroll_every_s: Annotated[int, Field(ge=60, le=86400)] | None = Field(
        default=None, description="A mid-roll every this many seconds (null: none)"
    )
    use_cue_points: bool = Field(default=True, description="Mid-rolls at the film's cues")
    postroll: bool = False
    max_pod_s: Annotated[int, Field(ge=5, le=600)] = 60
    max_ads_per_pod: Annotated[int, Field(ge=1, le=10)] = 2


class Ad(ReplyModel):
    """An ad creative."""

    id: UuidStr
    name: str
    advertiser: str
    status: AdStatus
    duration_s: float
    click_url: str | None
    created_at: DateTimeStr
    job_id: UuidStr | None = Field(
        default=None, description="The ingest job of a creative made from an upload"
    )


class AdList(ReplyModel):
    """The newest creatives (at most 200)."""

    items: list[Ad]


class Campaign(ReplyModel):
    """A campaign."""

    id: UuidStr
    name: str
    advertiser: str
    starts_at: DateTimeStr
    ends_at: DateTimeStr
    weight: int
    target_countries: list[str] | None
    target_categories: list[str] | None
    target_regions: list[str] | None
    target_plans: list[str] | None
    daily_cap: int | None
    total_cap: int | None
    frequency_cap_per_day: int | None
    status: CampaignStatus
    ad_ids: list[UuidStr]


class CampaignList(ReplyModel):
    """The newest campaigns (at most 200)."""

    items: list[Campaign]


class BreakPolicy(ReplyModel):
    """The break policy as stored."""

    target: str = Field(description="`default` or the film's id")
    preroll: bool
    use_cue_points: bool
    postroll: bool
    midroll_every_s: int | None
    max_pod_s: int
    max_ads_per_pod: int


class ReportRow(ReplyModel):
    """One campaign, creative and day."""

    campaign_id: UuidStr | None
    ad_id: UuidStr
    day: DateStr
    impressions: int = Field(description="Ads handed out in playlists")
    confirmed_impressions: int = Field(description="Ads the player fetched past")
    first_quartile: int
    midpoint: int
    third_quartile: int
    completes: int


class AdReport(DayRangeReply):
    """Requested and confirmed impressions, quartiles and completes."""

    items: list[ReportRow]


# ------------------------------------------------------------------ handlers


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError):
        raise NotFound(f"No such {what}", code=f"{what}_not_found") from None


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


def _ad(r: Any, job_id: uuid.UUID | None = None) -> Ad:
    return Ad(
        job_id=str(job_id) if job_id else None,
        id=str(r["id"]),
        name=r["name"],
        advertiser=r["advertiser"],
        status=r["status"],
        duration_s=r["duration_s"],
        click_url=r["click_url"],
        created_at=r["created_at"].isoformat(),
    )


@routes.post(
    "/admin/v1/ads",
    summary="Create an ad creative: from an upload (upload_id, ingested as a job) or a "
    "synthetic one (generate_seconds) (admin)",
    body=NewAd,
    replies={201: Ad},
    auth=SIGNED_IN,
    errors={
        **ROLE_ERRORS,
        404: "No such upload (`upload_not_found`)",
        409: "The upload's bytes have not arrived (`upload_incomplete`)",
    },
)
async def create_ad(request: web.Request) -> web.Response:
    """POST /admin/v1/ads {name, advertiser?, click_url?, generate_seconds? | upload_id?}
    -> 201.

    With ``upload_id`` the creative goes through the film ingest pipeline (the same
    ladder, audio-only included) as a job of ``kush worker``; with ``generate_seconds``
    (5-60) a synthetic video ad is generated with ffmpeg in the background. Either way
    the status is ``processing``, then ``ready``.
    """
    claims = await require_role(request, ADMIN)
    new = await parse_body(request, NewAd)
    seconds = new.generate_seconds
    if seconds and new.upload_id:
        message = "Give either 'generate_seconds' or 'upload_id'"
        raise InvalidRequest(
            message, details={"fields": [{"path": "upload_id", "message": message}]}
        )
    pool = request.app[pg_key]
    upload = None
    if new.upload_id is not None:
        upload = await ready_upload(pool, request.app[admin_origin_key], new.upload_id)
    job_id: uuid.UUID | None = None
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """INSERT INTO ads (name, advertiser, click_url, status)
               VALUES ($1, $2, $3, $4) RETURNING *""",
            new.name,
            new.advertiser or "",
            new.click_url,
            "processing" if seconds or upload else "draft",
        )
        if upload is not None:
            job_id = await create_job(
                conn,
                kind="ingest_ad",
                ad_id=row["id"],
                upload_id=upload.id,
                max_attempts=request.app[settings_key].job_max_attempts,
                created_by=uuid.UUID(claims.sub),
            )
    ad_id = str(row["id"])
    if seconds:
        task = asyncio.create_task(_generate(request.app, ad_id, float(seconds)))
        tasks = request.app[background_key]
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    details: dict[str, Any] = {"name": new.name}
    if job_id is not None:
        details["job_id"] = str(job_id)
    await _changed(request, "ad.create", "ad", ad_id, claims.sub, details)
    return json_response(_ad(row, job_id), status=201)


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


@routes.get(
    "/admin/v1/ads",
    summary="List ad creatives (admin, moderator)",
    replies={200: AdList},
    auth=SIGNED_IN,
    errors=ROLE_ERRORS,
)
async def list_ads(request: web.Request) -> web.Response:
    """GET /admin/v1/ads -> {items}."""
    await require_role(request, READERS)
    rows = await request.app[pg_key].fetch(
        "SELECT * FROM ads ORDER BY created_at DESC LIMIT $1", MAX_LIST
    )
    return json_response(AdList(items=[_ad(r) for r in rows]))


@routes.get(
    "/admin/v1/ads/{ad_id}",
    summary="One ad creative (admin, moderator)",
    replies={200: Ad},
    auth=SIGNED_IN,
    errors={**ROLE_ERRORS, 404: "No such creative (`ad_not_found`)"},
    path_params={"ad_id": AD_ID},
)
async def get_ad(request: web.Request) -> web.Response:
    """GET /admin/v1/ads/{ad_id}."""
    await require_role(request, READERS)
    row = await request.app[pg_key].fetchrow(
        "SELECT * FROM ads WHERE id = $1", _uuid(request.match_info["ad_id"], "ad")
    )
    if row is None:
        raise NotFound("No such ad", code="ad_not_found")
    return json_response(_ad(row))


def _campaign(r: Any) -> Campaign:
    return Campaign(
        id=str(r["id"]),
        name=r["name"],
        advertiser=r["advertiser"],
        starts_at=r["starts_at"].isoformat(),
        ends_at=r["ends_at"].isoformat(),
        weight=r["weight"],
        target_countries=r["target_countries"],
        target_categories=r["target_categories"],
        target_regions=r["target_regions"],
        target_plans=r["target_plans"],
        daily_cap=r["daily_cap"],
        total_cap=r["total_cap"],
        frequency_cap_per_day=r["frequency_cap_per_day"],
        status=r["status"],
        ad_ids=[str(a) for a in r["ad_ids"]],
    )


_CAMPAIGN_SQL = """SELECT c.*, coalesce(array_agg(ca.ad_id) FILTER (WHERE ca.ad_id IS NOT NULL),
                   '{}') AS ad_ids
                   FROM campaigns c LEFT JOIN campaign_ads ca ON ca.campaign_id = c.id"""


@routes.post(
    "/admin/v1/campaigns",
    summary="Create a campaign (admin)",
    body=NewCampaign,
    replies={201: Campaign},
    auth=SIGNED_IN,
    errors={
        **ROLE_ERRORS,
        422: "A field does not fit (`invalid_request`), `ends_at` is not after "
        "`starts_at` (`invalid_flight`) or an ad does not exist (`unknown_ad`)",
    },
)
async def create_campaign(request: web.Request) -> web.Response:
    """POST /admin/v1/campaigns -> 201 (flight, weight, targeting, caps, creatives)."""
    claims = await require_role(request, ADMIN)
    new = await parse_body(request, NewCampaign)
    if new.ends_at <= new.starts_at:
        raise Unprocessable("'ends_at' must be after 'starts_at'", code="invalid_flight")
    ids = list(dict.fromkeys(new.ad_ids))
    countries = new.target_countries
    if countries is not None:
        countries = [c.upper() for c in countries]
    pool = request.app[pg_key]
    async with pool.acquire() as conn, conn.transaction():
        found = await conn.fetchval("SELECT count(*) FROM ads WHERE id = ANY($1)", ids)
        if found != len(ids):
            raise Unprocessable("Some 'ad_ids' do not exist", code="unknown_ad")
        campaign_id = await conn.fetchval(
            """INSERT INTO campaigns (name, advertiser, starts_at, ends_at, weight,
                   target_countries, target_categories, target_plans, daily_cap, total_cap,
                   frequency_cap_per_day, target_regions)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id""",
            new.name,
            new.advertiser or "",
            new.starts_at,
            new.ends_at,
            new.weight,
            countries,
            new.target_categories,
            new.target_plans,
            new.daily_cap,
            new.total_cap,
            new.frequency_cap_per_day,
            new.target_regions,
        )
        for ad in ids:
            await conn.execute("INSERT INTO campaign_ads VALUES ($1, $2)", campaign_id, ad)
        row = await conn.fetchrow(_CAMPAIGN_SQL + " WHERE c.id = $1 GROUP BY c.id", campaign_id)
    await _changed(request, "campaign.create", "campaign", str(campaign_id), claims.sub)
    return json_response(_campaign(row), status=201)


@routes.get(
    "/admin/v1/campaigns",
    summary="List campaigns (admin, moderator)",
    replies={200: CampaignList},
    auth=SIGNED_IN,
    errors=ROLE_ERRORS,
)
async def list_campaigns(request: web.Request) -> web.Response:
    """GET /admin/v1/campaigns -> {items}."""
    await require_role(request, READERS)
    rows = await request.app[pg_key].fetch(
        _CAMPAIGN_SQL + " GROUP BY c.id ORDER BY c.created_at DESC LIMIT $1", MAX_LIST
    )
    return json_response(CampaignList(items=[_campaign(r) for r in rows]))


@routes.patch(
    "/admin/v1/campaigns/{campaign_id}",
    summary="Pause, resume, end or re-weight a campaign (admin)",
    body=CampaignChange,
    replies={200: Campaign},
    auth=SIGNED_IN,
    errors={**ROLE_ERRORS, 404: "No such campaign (`campaign_not_found`)"},
    path_params={"campaign_id": CAMPAIGN_ID},
)
async def update_campaign(request: web.Request) -> web.Response:
    """PATCH /admin/v1/campaigns/{id} {status?, weight?} -> the campaign."""
    claims = await require_role(request, ADMIN)
    cid = _uuid(request.match_info["campaign_id"], "campaign")
    change = await parse_body(request, CampaignChange)
    pool = request.app[pg_key]
    updated = await pool.fetchval(
        """UPDATE campaigns SET status = coalesce($2, status), weight = coalesce($3, weight)
            WHERE id = $1 RETURNING id""",
        cid,
        change.status,
        change.weight,
    )
    if updated is None:
        raise NotFound("No such campaign", code="campaign_not_found")
    row = await pool.fetchrow(_CAMPAIGN_SQL + " WHERE c.id = $1 GROUP BY c.id", cid)
    details = change.model_dump(exclude_unset=True)
    await _changed(request, "campaign.update", "campaign", str(cid), claims.sub, details)
    return json_response(_campaign(row))


@routes.put(
    "/admin/v1/break-policies/{target}",
    summary="Set the default (target=default) or a film's ad break policy (admin)",
    body=BreakPolicyIn,
    replies={200: BreakPolicy},
    auth=SIGNED_IN,
    errors={**ROLE_ERRORS, 404: "`target` is neither `default` nor a film id"},
    path_params={"target": PathParam("`default`, or the id of the film it is for")},
)
async def put_break_policy(request: web.Request) -> web.Response:
    """PUT /admin/v1/break-policies/{default|movie_id} -> the policy."""
    claims = await require_role(request, ADMIN)
    target = request.match_info["target"]
    movie_id = None if target == "default" else _uuid(target, "movie")
    policy = await parse_body(request, BreakPolicyIn)
    pool = request.app[pg_key]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "DELETE FROM break_policies WHERE movie_id IS NOT DISTINCT FROM $1", movie_id
        )
        await conn.execute(
            """INSERT INTO break_policies (movie_id, preroll, midroll_every_s, use_cue_points,
                   postroll, max_pod_s, max_ads_per_pod) VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            movie_id,
            policy.preroll,
            policy.midroll_every_s,
            policy.use_cue_points,
            policy.postroll,
            policy.max_pod_s,
            policy.max_ads_per_pod,
        )
    details = policy.model_dump(exclude_unset=True)
    await _changed(request, "break_policy.put", "break_policy", target, claims.sub, details)
    return json_response(BreakPolicy(target=target, **policy.model_dump()))


_REPORT_SQL = """SELECT e.campaign_id, e.ad_id, (e.occurred_at AT TIME ZONE 'UTC')::date AS day,
                  count(*) FILTER (WHERE event = 'impression') AS impressions,
                  count(*) FILTER (WHERE event = 'confirmed_impression') AS confirmed,
                  count(*) FILTER (WHERE event = 'first_quartile') AS first_quartile,
                  count(*) FILTER (WHERE event = 'midpoint') AS midpoint,
                  count(*) FILTER (WHERE event = 'third_quartile') AS third_quartile,
                  count(*) FILTER (WHERE event = 'complete') AS completes
             FROM ad_events e
            WHERE e.occurred_at >= $1::date AND e.occurred_at < $2::date + 1
            GROUP BY 1, 2, 3 ORDER BY 3, 1, 2"""


@routes.get(
    "/admin/v1/reports/ads",
    summary="Impressions (requested, confirmed), quartiles and completes per campaign, "
    "creative and day (admin, moderator)",
    query=DayRangeQuery,
    replies={200: AdReport},
    auth=SIGNED_IN,
    errors=ROLE_ERRORS,
)
async def ads_report(request: web.Request) -> web.Response:
    """GET /admin/v1/reports/ads?from=YYYY-MM-DD&to=YYYY-MM-DD -> per campaign, creative
    and day: requested and confirmed impressions, quartiles, completes."""
    await require_role(request, READERS)
    from_day, to_day = parse_query(request, DayRangeQuery).days()
    rows = await request.app[pg_key].fetch(_REPORT_SQL, from_day, to_day)
    items = [
        ReportRow(
            campaign_id=str(r["campaign_id"]) if r["campaign_id"] else None,
            ad_id=str(r["ad_id"]),
            day=r["day"].isoformat(),
            impressions=r["impressions"],
            confirmed_impressions=r["confirmed"],
            first_quartile=r["first_quartile"],
            midpoint=r["midpoint"],
            third_quartile=r["third_quartile"],
            completes=r["completes"],
        )
        for r in rows
    ]
    report = AdReport.model_validate(
        {"from": from_day.isoformat(), "to": to_day.isoformat(), "items": items}
    )
    return json_response(report)


def setup_routes(app: web.Application) -> None:
    """Mount the ad inventory API."""
    routes.mount(app)

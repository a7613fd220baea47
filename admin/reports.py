"""Admin reports besides the ad report (``admin.ads``): views, and data delivered, per
film and day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from aiohttp import web
from pydantic import Field

from admin.access import READERS, ROLE_ERRORS
from admin.catalog.repository import usage_report, views_report
from runtime.api import (
    DateStr,
    InvalidRequest,
    QueryModel,
    ReplyModel,
    Routes,
    UuidStr,
    parse_query,
)
from runtime.web import json_response, pg_key
from tokens.service.views import SIGNED_IN, require_role

routes = Routes(tags=("reports",))
MAX_DAYS = 366


class ViewsQuery(QueryModel):
    """The days of the report (UTC), at most a year."""

    from_: date | None = Field(
        default=None, alias="from", description="First day, YYYY-MM-DD (default: `to` - 30)"
    )
    to: date | None = Field(default=None, description="Last day, YYYY-MM-DD (default: today)")


class ViewsRow(ReplyModel):
    """One film on one day."""

    movie_id: UuidStr
    title: str
    day: DateStr
    starts: int = Field(description="Playback sessions started")
    viewers: int = Field(description="Distinct accounts that started it")
    watch_time_s: float = Field(
        description="Seconds of the film the day's viewers reached after starting it "
        "(their saved position, at most the film's length; a resumed film counts from "
        "its start)"
    )


class ViewsReport(ReplyModel):
    """Starts, viewers and watch time per film and day."""

    from_: DateStr = Field(alias="from")
    to: DateStr
    items: list[ViewsRow]


@routes.get(
    "/admin/v1/reports/views",
    summary="Playback starts, distinct viewers and watch time per film and day (admin, moderator)",
    query=ViewsQuery,
    replies={200: ViewsReport},
    auth=SIGNED_IN,
    errors=ROLE_ERRORS,
)
async def report_views(request: web.Request) -> web.Response:
    """GET /admin/v1/reports/views?from=YYYY-MM-DD&to=YYYY-MM-DD."""
    await require_role(request, READERS)
    first, last = _days(parse_query(request, ViewsQuery))
    rows = await views_report(request.app[pg_key], first, last)
    report = ViewsReport.model_validate(
        {
            "from": first.isoformat(),
            "to": last.isoformat(),
            "items": [
                ViewsRow(
                    movie_id=r.movie_id,
                    title=r.title,
                    day=r.day.isoformat(),
                    starts=r.starts,
                    viewers=r.viewers,
                    watch_time_s=r.watch_time_s,
                )
                for r in rows
            ],
        }
    )
    return json_response(report)


def _days(query: ViewsQuery) -> tuple[date, date]:
    last = query.to or datetime.now(UTC).date()
    first = query.from_ or last - timedelta(days=30)
    if first > last or (last - first).days > MAX_DAYS:
        message = "The range must be at most a year, from <= to"
        raise InvalidRequest(message, details={"fields": [{"path": "from", "message": message}]})
    return first, last


class UsageRow(ReplyModel):
    """Data delivered for one film on one day."""

    movie_id: UuidStr
    title: str
    day: DateStr
    bytes: int = Field(description="Bytes delivered: playlists and segments, ads included")
    edge_bytes: int = Field(description="The part of `bytes` the nginx edge sent")
    sessions: int = Field(description="Playback sessions that used data")
    viewers: int = Field(description="Distinct accounts")


class UsageReport(ReplyModel):
    """Data delivered per film and day (UTC), with the range's totals."""

    from_: DateStr = Field(alias="from")
    to: DateStr
    total_bytes: int
    edge_bytes: int
    items: list[UsageRow]


@routes.get(
    "/admin/v1/reports/usage",
    summary="Data delivered (bytes) per film and day, sessions and viewers (admin, moderator)",
    query=ViewsQuery,
    replies={200: UsageReport},
    auth=SIGNED_IN,
    errors=ROLE_ERRORS,
)
async def report_usage(request: web.Request) -> web.Response:
    """GET /admin/v1/reports/usage?from=YYYY-MM-DD&to=YYYY-MM-DD."""
    await require_role(request, READERS)
    first, last = _days(parse_query(request, ViewsQuery))
    rows = await usage_report(request.app[pg_key], first, last)
    report = UsageReport.model_validate(
        {
            "from": first.isoformat(),
            "to": last.isoformat(),
            "total_bytes": sum(r.bytes for r in rows),
            "edge_bytes": sum(r.edge_bytes for r in rows),
            "items": [
                UsageRow(
                    movie_id=r.movie_id,
                    title=r.title,
                    day=r.day.isoformat(),
                    bytes=r.bytes,
                    edge_bytes=r.edge_bytes,
                    sessions=r.sessions,
                    viewers=r.viewers,
                )
                for r in rows
            ],
        }
    )
    return json_response(report)


def setup_routes(app: web.Application) -> None:
    """Mount the reports."""
    routes.mount(app)

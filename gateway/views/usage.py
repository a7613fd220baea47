"""The viewer's data usage: ``GET /v1/me/usage?from=&to=``.

Bytes the gateway and the edge delivered to the viewer's playback sessions (playlists and
segments, ads included), per film, summed per UTC day in PostgreSQL by the gateway's
usage writers (``gateway.metering``): fresh within ``KUSH_USAGE_FLUSH_S`` seconds.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from aiohttp import web
from pydantic import Field

from gateway import repository
from gateway.keys import playback_key
from gateway.playback import settle_usage
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
from tokens.service.views import SIGNED_IN, authenticate

routes = Routes(tags=("me",))
MAX_DAYS = 366


class UsageQuery(QueryModel):
    """The UTC days to sum, at most a year (default: this month so far)."""

    from_: date | None = Field(
        default=None,
        alias="from",
        description="First day, YYYY-MM-DD (default: the first day of `to`'s month)",
    )
    to: date | None = Field(default=None, description="Last day, YYYY-MM-DD (default: today)")


class FilmUsage(ReplyModel):
    """One film's bytes in the range."""

    movie_id: UuidStr
    title: str
    bytes: int = Field(description="Bytes delivered: playlists and segments, ads included")
    sessions: int = Field(description="Playback sessions that used them")


class Usage(ReplyModel):
    """Your data usage between two days (UTC, inclusive), most bytes first."""

    from_: DateStr = Field(alias="from")
    to: DateStr
    total_bytes: int
    items: list[FilmUsage]


def usage_range(first: date | None, last: date | None, *, today: date) -> tuple[date, date]:
    """The days a usage query covers: ``to`` defaults to today, ``from`` to the first
    of ``to``'s month; 422 when reversed or longer than a year."""
    end = last or today
    start = first or end.replace(day=1)
    if start > end or (end - start) > timedelta(days=MAX_DAYS):
        message = "The range must be at most a year, from <= to"
        raise InvalidRequest(message, details={"fields": [{"path": "from", "message": message}]})
    return start, end


@routes.get(
    "/v1/me/usage",
    summary="Data you used per film (bytes of playlists and segments), fresh within seconds",
    query=UsageQuery,
    replies={200: Usage},
    auth=SIGNED_IN,
)
async def my_usage(request: web.Request) -> web.Response:
    """GET /v1/me/usage?from=YYYY-MM-DD&to=YYYY-MM-DD -> {total_bytes, items}."""
    claims = await authenticate(request)
    query = parse_query(request, UsageQuery)
    first, last = usage_range(query.from_, query.to, today=datetime.now(UTC).date())
    await settle_usage(request.app[playback_key], claims.sub)
    films = await repository.usage_of(request.app[pg_key], claims.sub, first, last)
    body = Usage.model_validate(
        {
            "from": first.isoformat(),
            "to": last.isoformat(),
            "total_bytes": sum(f.bytes for f in films),
            "items": [
                FilmUsage(movie_id=f.movie_id, title=f.title, bytes=f.bytes, sessions=f.sessions)
                for f in films
            ],
        }
    )
    return json_response(body, headers={"Cache-Control": "no-store"})

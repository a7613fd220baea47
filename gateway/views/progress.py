"""Progress views: ``PUT /v1/me/progress/{movie_id}``, ``GET /v1/me/history``."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import Field

from gateway import repository
from gateway.keys import playback_key
from gateway.playback import save_progress, settle_progress
from runtime.api import (
    BodyModel,
    DateTimeStr,
    PathParam,
    ReplyModel,
    Routes,
    UuidStr,
    parse_body,
)
from runtime.web import json_response, pg_key
from tokens.service.views import SIGNED_IN, authenticate

MAX_POSITION_S = 86_400

routes = Routes(tags=("progress",))


class Progress(BodyModel):
    """Where the viewer is in the film."""

    position_s: Annotated[float, Field(ge=0, le=MAX_POSITION_S)] = Field(
        description="Seconds from the start of the film"
    )


class HistoryEntry(ReplyModel):
    """A film the viewer watched, with where they are in it."""

    movie_id: UuidStr
    title: str
    position_s: float
    duration_s: float | None
    completed: bool
    updated_at: DateTimeStr


class History(ReplyModel):
    """Recently watched films, newest first (at most 50)."""

    items: list[HistoryEntry]


@routes.put(
    "/v1/me/progress/{movie_id}",
    summary="Save where you are in a film (players also report it by fetching segments)",
    body=Progress,
    replies={204: None},
    auth=SIGNED_IN,
    errors={
        403: "A cookie without the CSRF header (`csrf_failed`)",
        404: "No such published film (`movie_not_found`)",
    },
    path_params={"movie_id": PathParam("The film's id", "uuid")},
)
async def put_progress(request: web.Request) -> web.Response:
    """PUT /v1/me/progress/{movie_id} {position_s} -> 204."""
    claims = await authenticate(request)
    pool = request.app[pg_key]
    movie = await repository.load_movie(pool, request.match_info["movie_id"])
    progress = await parse_body(request, Progress)
    await save_progress(pool, claims.sub, movie.id, progress.position_s, movie.duration_s)
    return web.Response(status=204)


@routes.get(
    "/v1/me/history",
    summary="Recently watched films with resume positions",
    replies={200: History},
    auth=SIGNED_IN,
)
async def history(request: web.Request) -> web.Response:
    """GET /v1/me/history -> recently watched films with resume positions."""
    claims = await authenticate(request)
    await settle_progress(request.app[playback_key], claims.sub)
    items = await repository.watch_history(request.app[pg_key], claims.sub)
    body = History(
        items=[
            HistoryEntry(
                movie_id=item.movie_id,
                title=item.title,
                position_s=item.position_s,
                duration_s=item.duration_s,
                completed=item.completed,
                updated_at=item.updated_at.isoformat(),
            )
            for item in items
        ]
    )
    return json_response(body, headers={"Cache-Control": "no-store"})

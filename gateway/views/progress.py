"""Progress views: ``PUT /v1/me/progress/{movie_id}``, ``GET /v1/me/history``."""

from __future__ import annotations

from aiohttp import web

from gateway import repository
from gateway.keys import playback_key
from gateway.playback import save_progress, settle_progress
from runtime.errors import BadRequest
from runtime.web import json_response, pg_key, read_json
from tokens.service.views import authenticate

MAX_POSITION_S = 86_400


async def put_progress(request: web.Request) -> web.Response:
    """PUT /v1/me/progress/{movie_id} {position_s, duration_s?} -> 204."""
    claims = await authenticate(request)
    pool = request.app[pg_key]
    movie = await repository.load_movie(pool, request.match_info["movie_id"])
    body = await read_json(request)
    position = body.get("position_s")
    if (
        not isinstance(position, int | float)
        or isinstance(position, bool)
        or not 0 <= position <= MAX_POSITION_S
    ):
        raise BadRequest("'position_s' must be a number of seconds", code="invalid_request")
    await save_progress(pool, claims.sub, movie.id, float(position), movie.duration_s)
    return web.Response(status=204)


async def history(request: web.Request) -> web.Response:
    """GET /v1/me/history -> recently watched films with resume positions."""
    claims = await authenticate(request)
    await settle_progress(request.app[playback_key], claims.sub)
    items = await repository.watch_history(request.app[pg_key], claims.sub)
    body = {
        "items": [
            {
                "movie_id": item.movie_id,
                "title": item.title,
                "position_s": item.position_s,
                "duration_s": item.duration_s,
                "completed": item.completed,
                "updated_at": item.updated_at.isoformat(),
            }
            for item in items
        ]
    }
    return json_response(body, headers={"Cache-Control": "no-store"})

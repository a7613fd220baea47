"""Catalogue views: ``GET /v1/movies``, ``GET /v1/movies/{id}``, posters."""

from __future__ import annotations

import base64
import uuid

import orjson
from aiohttp import web

from gateway import repository
from gateway.keys import playback_key
from gateway.playlists import origin_key_for
from runtime.errors import BadRequest
from runtime.web import json_response, pg_key

PAGE_SIZE_MAX = 50
POSTER_CACHE_CONTROL = "public, max-age=86400"


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        ts, mid = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return float(ts), str(uuid.UUID(mid))
    except (ValueError, TypeError):
        raise BadRequest("Malformed cursor", code="invalid_cursor") from None


def _encode_cursor(after: tuple[float, str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(after))).rstrip(b"=").decode()


async def list_movies(request: web.Request) -> web.Response:
    """GET /v1/movies?q=&category=&cursor=&limit= -> {items, next_cursor}."""
    q = request.query.get("q", "").strip()[:200]
    category = request.query.get("category", "").strip()[:64]
    try:
        limit = min(PAGE_SIZE_MAX, max(1, int(request.query.get("limit", "20"))))
    except ValueError:
        raise BadRequest("'limit' must be an integer", code="invalid_request") from None
    cursor = request.query.get("cursor")
    after = _decode_cursor(cursor) if cursor else None
    page = await repository.list_published(
        request.app[pg_key], q=q, category=category, after=after, limit=limit
    )
    next_cursor = _encode_cursor(page.next_after) if page.next_after else None
    return json_response({"items": page.items, "next_cursor": next_cursor})


async def get_movie(request: web.Request) -> web.Response:
    """GET /v1/movies/{id}."""
    card = await repository.published_movie_card(
        request.app[pg_key], request.match_info["movie_id"]
    )
    return json_response(card)


async def poster(request: web.Request) -> web.StreamResponse:
    """GET /posters/{movie_id}.jpg -> the poster (public, cacheable)."""
    pb = request.app[playback_key]
    movie = await repository.load_movie(pb.pool, request.match_info["movie_id"])
    return await pb.origin.serve(
        request, origin_key_for(movie.id, "poster.jpg"), cache_control=POSTER_CACHE_CONTROL
    )

"""Catalogue views: ``GET /v1/movies``, ``GET /v1/movies/trending``,
``GET /v1/movies/{id}``, ``GET /v1/categories``, posters."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import AfterValidator, Field

from gateway import repository
from gateway.catalogue import TRENDING_TTL_S, Window
from gateway.keys import playback_key, trending_key
from gateway.playlists import origin_key_for
from runtime.api import (
    Content,
    Param,
    PathParam,
    QueryModel,
    ReplyModel,
    Routes,
    UuidStr,
    parse_query,
)
from runtime.paging import next_cursor, page_after
from runtime.web import json_response, pg_key

PAGE_SIZE_MAX = 50
POSTER_CACHE_CONTROL = "public, max-age=86400"
CATEGORIES_CACHE_CONTROL = "public, max-age=60"

routes = Routes(tags=("catalogue",))
MOVIE_ID = PathParam("The film's id", "uuid")
NO_FILM = {404: "No such published film (`movie_not_found`)"}


def _trimmed(max_len: int) -> AfterValidator:
    return AfterValidator(lambda value: value.strip()[:max_len])


def _page_size(value: int) -> int:
    return min(PAGE_SIZE_MAX, max(1, value))


class MoviesQuery(QueryModel):
    """Search and page through the published films, newest first."""

    q: Annotated[str, _trimmed(200)] = Field(
        default="", description="Words of the title or description (first 200 characters)"
    )
    category: Annotated[str, _trimmed(64)] = Field(default="", description="A category slug")
    cursor: str | None = Field(
        default=None, description="`next_cursor` of the previous page (opaque)"
    )
    limit: Annotated[int, AfterValidator(_page_size)] = Field(
        default=20, description=f"Films per page, clamped to 1-{PAGE_SIZE_MAX}"
    )


class MovieCard(ReplyModel):
    """A published film."""

    id: UuidStr
    slug: str
    title: str
    description: str
    year: int | None
    duration_s: float
    min_age: int
    rating: str
    poster_url: str | None = Field(description="Relative URL of the poster, if any")
    categories: list[str]


class RenditionEstimate(ReplyModel):
    """One rendition of the film and roughly how much data the whole film takes in it."""

    name: str = Field(description="The rendition folder, e.g. `480p` (`audio`: sound only)")
    height: int | None = Field(description="Picture height; null for audio only")
    bandwidth: int = Field(description="Declared peak bits per second")
    megabytes: float = Field(
        description="About how many megabytes (10^6 bytes) the whole film uses at this "
        "rendition: bandwidth x duration (an upper-side estimate; ads not included)"
    )


class MovieDetail(MovieCard):
    """A published film with the data each rendition would use."""

    renditions: list[RenditionEstimate] = Field(description="Smallest first")


class MoviePage(ReplyModel):
    """One page of films."""

    items: list[MovieCard]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last")


@routes.get(
    "/v1/movies",
    summary="Published films, newest first: search, category, pages",
    query=MoviesQuery,
    replies={200: MoviePage},
    errors={400: "Malformed `cursor` (`invalid_cursor`)"},
)
async def list_movies(request: web.Request) -> web.Response:
    """GET /v1/movies?q=&category=&cursor=&limit= -> {items, next_cursor}."""
    query = parse_query(request, MoviesQuery)
    # an earlier release handed out float-seconds cursors: still read
    after = page_after(query.cursor, seconds_too=True)
    page = await repository.list_published(
        request.app[pg_key], q=query.q, category=query.category, after=after, limit=query.limit
    )
    reply = MoviePage.model_validate(
        {"items": page.items, "next_cursor": next_cursor(page.next_after)}
    )
    return json_response(reply)


class TrendingQuery(QueryModel):
    """Which window of playback starts to count."""

    window: Window = Field(default="24h", description="`24h` or `7d`")


class TrendingMovie(MovieCard):
    """A published film and how often playback started in the window."""

    starts: int = Field(description="Playback starts in the window")


class TrendingPage(ReplyModel):
    """The most started published films of the window (at most 20)."""

    window: Window
    items: list[TrendingMovie]


class Category(ReplyModel):
    """A category with published films."""

    slug: str
    name: str
    films: int = Field(description="Published films in it")


class CategoryList(ReplyModel):
    """Every category with at least one published film, by name."""

    items: list[Category]


# Declared before /v1/movies/{movie_id}, which would otherwise match "trending".
@routes.get(
    "/v1/movies/trending",
    summary="The most watched published films over the last 24 hours or 7 days",
    description="Counted from playback starts; recounted at most every "
    f"{int(TRENDING_TTL_S)} s, and at once when the catalogue changes.",
    query=TrendingQuery,
    replies={200: TrendingPage},
)
async def trending_movies(request: web.Request) -> web.Response:
    """GET /v1/movies/trending?window=24h|7d -> {window, items}."""
    query = parse_query(request, TrendingQuery)
    films = await request.app[trending_key].films(query.window)
    reply = TrendingPage.model_validate(
        {"window": query.window, "items": [{**card, "starts": n} for card, n in films]}
    )
    return json_response(reply)


@routes.get(
    "/v1/categories",
    summary="Categories with published films (for the watch page)",
    replies={200: CategoryList},
)
async def list_categories(request: web.Request) -> web.Response:
    """GET /v1/categories -> {items: [{slug, name, films}]}."""
    rows = await repository.public_categories(request.app[pg_key])
    reply = CategoryList(items=[Category(slug=s, name=n, films=f) for s, n, f in rows])
    return json_response(reply, headers={"Cache-Control": CATEGORIES_CACHE_CONTROL})


@routes.get(
    "/v1/movies/{movie_id}",
    summary="One published film",
    replies={200: MovieDetail},
    errors=NO_FILM,
    path_params={"movie_id": MOVIE_ID},
)
async def get_movie(request: web.Request) -> web.Response:
    """GET /v1/movies/{id} -> the film and its renditions' estimated sizes."""
    pool = request.app[pg_key]
    card = await repository.published_movie_card(pool, request.match_info["movie_id"])
    sizes = await repository.rendition_sizes(pool, card["id"], card["duration_s"])
    card["renditions"] = [
        {"name": r.name, "height": r.height, "bandwidth": r.bandwidth, "megabytes": r.megabytes}
        for r in sizes
    ]
    return json_response(MovieDetail.model_validate(card))


RANGE = Param("Range", "header", "One byte range, e.g. `bytes=0-65535` (answered 206)")


@routes.get(
    "/posters/{movie_id}.jpg",
    summary="A film's poster (public, cacheable)",
    replies={
        200: Content("The poster", ("image/jpeg",)),
        206: Content("Part of the poster (Range)", ("image/jpeg",)),
        304: None,
        416: None,
    },
    errors={
        **NO_FILM,
        502: "The video origin answered with an error (`origin_error`)",
        503: "The video origin is unavailable (`origin_unavailable`)",
    },
    path_params={"movie_id": MOVIE_ID},
    params=(RANGE,),
)
async def poster(request: web.Request) -> web.StreamResponse:
    """GET /posters/{movie_id}.jpg -> the poster (public, cacheable)."""
    pb = request.app[playback_key]
    movie = await repository.load_movie(pb.pool, request.match_info["movie_id"])
    return await pb.origin.serve(
        request, origin_key_for(movie.id, "poster.jpg"), cache_control=POSTER_CACHE_CONTROL
    )

"""Admin catalogue API: films (create, list, edit, publish, unpublish, take down) and
categories. Reads: ``admin`` and ``moderator``; unpublish: both; every other change:
``admin``."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from admin.access import ADMIN, READERS, ROLE_ERRORS, UNPUBLISHERS, actor_of
from admin.catalog import repository as repo
from admin.catalog.models import (
    NULLABLE,
    AdminCategory,
    AdminCategoryList,
    AdminMovie,
    AdminMoviePage,
    CategoryChange,
    MovieChange,
    MoviesQuery,
    NewCategory,
    NewMovie,
    Takedown,
    Unpublish,
)
from admin.catalog.repository import MovieRecord
from admin.catalog.service import Catalogue, load_movie, movie_uuid
from runtime.api import PathParam, Routes, parse_body, parse_query
from runtime.paging import next_cursor, page_after
from runtime.web import json_response, pg_key, redis_key, rkeys_key
from tokens.service.views import SIGNED_IN, require_role

routes = Routes(tags=("catalogue",))
MOVIE_ID = {"movie_id": PathParam("The film's id", "uuid")}
SLUG = {"slug": PathParam("The category's slug")}
NO_FILM = {404: "No such film (`movie_not_found`)"}
NO_CATEGORY = {404: "No such category (`category_not_found`)"}


def _catalogue(request: web.Request) -> Catalogue:
    app = request.app
    return Catalogue(app[pg_key], app[redis_key], app[rkeys_key])


def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _movie(m: MovieRecord) -> AdminMovie:
    return AdminMovie.model_validate(
        {
            "id": m.id,
            "slug": m.slug,
            "title": m.title,
            "description": m.description,
            "year": m.year,
            "duration_s": m.duration_s,
            "min_age": m.min_age,
            "rating": m.rating,
            "geo_allow": list(m.geo_allow) if m.geo_allow is not None else None,
            "geo_block": list(m.geo_block),
            "status": m.status,
            "version": m.version,
            "categories": list(m.categories),
            "renditions": list(m.renditions),
            "poster_url": f"/posters/{m.id}.jpg" if m.has_poster else None,
            "created_at": m.created_at.isoformat(),
            "updated_at": m.updated_at.isoformat(),
            "published_at": _ts(m.published_at),
            "taken_down_at": _ts(m.taken_down_at),
            "takedown_reason": m.takedown_reason,
        }
    )


def _category(c: repo.CategoryRecord) -> AdminCategory:
    return AdminCategory(slug=c.slug, name=c.name, films=c.films, published_films=c.published_films)


# ------------------------------------------------------------------ films


@routes.post(
    "/admin/v1/movies",
    summary="Create a film as a draft (admin)",
    body=NewMovie,
    replies={201: AdminMovie},
    auth=SIGNED_IN,
    errors={**ROLE_ERRORS, 422: "A field does not fit, or a category does not exist"},
)
async def create_movie(request: web.Request) -> web.Response:
    """POST /admin/v1/movies {title, description?, year?, categories?, min_age?, rating?,
    geo_allow?, geo_block?} -> 201 the draft film."""
    claims = await require_role(request, ADMIN)
    new = await parse_body(request, NewMovie)
    fields = new.model_dump(exclude={"categories"})
    movie = await _catalogue(request).create(actor_of(request, claims), fields, new.categories)
    return json_response(_movie(movie), status=201)


@routes.get(
    "/admin/v1/movies",
    summary="Films of every status, newest first: filter by status or words (admin, moderator)",
    query=MoviesQuery,
    replies={200: AdminMoviePage},
    auth=SIGNED_IN,
    errors={**ROLE_ERRORS, 400: "Malformed `cursor` (`invalid_cursor`)"},
)
async def list_movies(request: web.Request) -> web.Response:
    """GET /admin/v1/movies?status=&q=&cursor=&limit= -> {items, next_cursor}."""
    await require_role(request, READERS)
    query = parse_query(request, MoviesQuery)
    after = page_after(query.cursor)
    page = await repo.list_movies(
        request.app[pg_key], status=query.status, q=query.q, after=after, limit=query.limit
    )
    return json_response(
        AdminMoviePage(
            items=[_movie(m) for m in page.items], next_cursor=next_cursor(page.next_after)
        )
    )


@routes.get(
    "/admin/v1/movies/{movie_id}",
    summary="One film, whatever its status (admin, moderator)",
    replies={200: AdminMovie},
    auth=SIGNED_IN,
    errors={**ROLE_ERRORS, **NO_FILM},
    path_params=MOVIE_ID,
)
async def get_movie(request: web.Request) -> web.Response:
    """GET /admin/v1/movies/{movie_id}."""
    await require_role(request, READERS)
    movie_id = movie_uuid(request.match_info["movie_id"])
    return json_response(_movie(await load_movie(request.app[pg_key], movie_id)))


@routes.patch(
    "/admin/v1/movies/{movie_id}",
    summary="Edit a film's details and categories (admin)",
    body=MovieChange,
    replies={200: AdminMovie},
    auth=SIGNED_IN,
    errors={**ROLE_ERRORS, **NO_FILM, 422: "A field does not fit, or a category does not exist"},
    path_params=MOVIE_ID,
)
async def update_movie(request: web.Request) -> web.Response:
    """PATCH /admin/v1/movies/{movie_id} {title?, description?, year?, categories?,
    min_age?, rating?, geo_allow?, geo_block?} -> the film."""
    claims = await require_role(request, ADMIN)
    movie_id = movie_uuid(request.match_info["movie_id"])
    change = await parse_body(request, MovieChange)
    present = change.model_fields_set
    fields = {
        k: v
        for k, v in change.model_dump(include=present - {"categories"}).items()
        if v is not None or k in NULLABLE
    }
    categories = change.categories if "categories" in present else None
    movie = await _catalogue(request).edit(actor_of(request, claims), movie_id, fields, categories)
    return json_response(_movie(movie))


@routes.post(
    "/admin/v1/movies/{movie_id}/publish",
    summary="Publish a film: visible in the catalogue and playable (admin)",
    replies={200: AdminMovie},
    auth=SIGNED_IN,
    errors={
        **ROLE_ERRORS,
        **NO_FILM,
        409: "No video was ingested for the film yet (`no_renditions`)",
    },
    path_params=MOVIE_ID,
)
async def publish_movie(request: web.Request) -> web.Response:
    """POST /admin/v1/movies/{movie_id}/publish -> the published film."""
    claims = await require_role(request, ADMIN)
    movie_id = movie_uuid(request.match_info["movie_id"])
    movie = await _catalogue(request).publish(actor_of(request, claims), movie_id)
    return json_response(_movie(movie))


@routes.post(
    "/admin/v1/movies/{movie_id}/unpublish",
    summary="Take a film off the catalogue; its live playback ends (admin, moderator)",
    description="New playback answers 404 at once; the next segment of every live "
    "session of the film is refused with 403 `film_unavailable`.",
    body=Unpublish,
    body_optional=True,
    replies={200: AdminMovie},
    auth=SIGNED_IN,
    errors={**ROLE_ERRORS, **NO_FILM, 409: "The film is not published (`not_published`)"},
    path_params=MOVIE_ID,
)
async def unpublish_movie(request: web.Request) -> web.Response:
    """POST /admin/v1/movies/{movie_id}/unpublish {reason?} -> the unpublished film."""
    claims = await require_role(request, UNPUBLISHERS)
    movie_id = movie_uuid(request.match_info["movie_id"])
    body = await parse_body(request, Unpublish, optional=True)
    movie = await _catalogue(request).unpublish(actor_of(request, claims), movie_id, body.reason)
    return json_response(_movie(movie))


@routes.post(
    "/admin/v1/movies/{movie_id}/takedown",
    summary="Take a film down everywhere, with the reason; its live playback ends (admin)",
    description="The film leaves the catalogue, search, trending and every viewer's "
    "history; its live sessions are refused with 403 `film_unavailable`; the reason is "
    "kept on the film and in the audit log.",
    body=Takedown,
    replies={200: AdminMovie},
    auth=SIGNED_IN,
    errors={**ROLE_ERRORS, **NO_FILM},
    path_params=MOVIE_ID,
)
async def take_down_movie(request: web.Request) -> web.Response:
    """POST /admin/v1/movies/{movie_id}/takedown {reason} -> the film, taken down."""
    claims = await require_role(request, ADMIN)
    movie_id = movie_uuid(request.match_info["movie_id"])
    body = await parse_body(request, Takedown)
    movie = await _catalogue(request).take_down(actor_of(request, claims), movie_id, body.reason)
    return json_response(_movie(movie))


# ------------------------------------------------------------------ categories


@routes.get(
    "/admin/v1/categories",
    summary="Every category with its film counts (admin, moderator)",
    replies={200: AdminCategoryList},
    auth=SIGNED_IN,
    errors=ROLE_ERRORS,
)
async def list_categories(request: web.Request) -> web.Response:
    """GET /admin/v1/categories -> {items}."""
    await require_role(request, READERS)
    found = await repo.list_categories(request.app[pg_key])
    return json_response(AdminCategoryList(items=[_category(c) for c in found]))


@routes.post(
    "/admin/v1/categories",
    summary="Create a category (admin)",
    body=NewCategory,
    replies={201: AdminCategory},
    auth=SIGNED_IN,
    errors={**ROLE_ERRORS, 409: "The slug is taken (`category_exists`)"},
)
async def create_category(request: web.Request) -> web.Response:
    """POST /admin/v1/categories {slug, name} -> 201 the category."""
    claims = await require_role(request, ADMIN)
    new = await parse_body(request, NewCategory)
    created = await _catalogue(request).create_category(
        actor_of(request, claims), new.slug, new.name
    )
    return json_response(_category(created), status=201)


@routes.patch(
    "/admin/v1/categories/{slug}",
    summary="Rename a category (admin)",
    body=CategoryChange,
    replies={200: AdminCategory},
    auth=SIGNED_IN,
    errors={**ROLE_ERRORS, **NO_CATEGORY},
    path_params=SLUG,
)
async def update_category(request: web.Request) -> web.Response:
    """PATCH /admin/v1/categories/{slug} {name} -> the category."""
    claims = await require_role(request, ADMIN)
    change = await parse_body(request, CategoryChange)
    renamed = await _catalogue(request).rename_category(
        actor_of(request, claims), request.match_info["slug"], change.name
    )
    return json_response(_category(renamed))


@routes.delete(
    "/admin/v1/categories/{slug}",
    summary="Delete a category; its films lose it (admin)",
    replies={204: None},
    auth=SIGNED_IN,
    errors={**ROLE_ERRORS, **NO_CATEGORY},
    path_params=SLUG,
)
async def delete_category(request: web.Request) -> web.Response:
    """DELETE /admin/v1/categories/{slug} -> 204."""
    claims = await require_role(request, ADMIN)
    await _catalogue(request).delete_category(actor_of(request, claims), request.match_info["slug"])
    return web.Response(status=204)


def setup_routes(app: web.Application) -> None:
    """Mount the catalogue API."""
    routes.mount(app)

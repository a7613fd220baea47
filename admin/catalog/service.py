"""Catalogue changes: films (create, edit, publish, unpublish, take down) and categories.

Each change and its audit line commit in one transaction, with the film's row locked, so
two admins acting at once see one another's result. Then every gateway is told
(``runtime.signals.bump_catalogue``), and taking a film off the catalogue ends its live
playback sessions: their next segment is refused with ``film_unavailable``.

Publish states: ``draft`` (new) or ``processing`` (being ingested) -> ``published``
(needs renditions) <-> ``unpublished``; any state -> ``taken_down`` (legal or policy;
an admin may publish it again once resolved). Unpublishing an unpublished film or taking
down a taken-down one changes nothing but ends any session left over, so a request that
failed half-way can simply be sent again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
from redis.asyncio import Redis

from admin.access import Actor, record
from admin.catalog import repository as repo
from admin.catalog.repository import MovieRecord
from admin.publish import slug_for
from runtime.api import InvalidRequest
from runtime.errors import Conflict, NotFound
from runtime.redis import Keys
from runtime.signals import bump_catalogue
from tokens.service.session_endings import FILM_UNAVAILABLE, end_sessions_of


def movie_uuid(value: str) -> uuid.UUID:
    """A film id from a path, or 404 ``movie_not_found``."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound("No such film", code="movie_not_found") from None


async def load_movie(
    conn: asyncpg.Connection | asyncpg.Pool, movie_id: uuid.UUID, *, lock: bool = False
) -> MovieRecord:
    """A film, or 404 ``movie_not_found``."""
    movie = await repo.get_movie(conn, movie_id, lock=lock)
    if movie is None:
        raise NotFound("No such film", code="movie_not_found")
    return movie


async def _category_ids(conn: asyncpg.Connection, slugs: Sequence[str]) -> list[int]:
    """The ids of ``slugs``; 422 naming each one that does not exist."""
    found = await repo.category_ids(conn, slugs)
    missing = [
        {"path": f"categories[{i}]", "message": f"no category '{slug}'"}
        for i, slug in enumerate(slugs)
        if slug not in found
    ]
    if missing:
        raise InvalidRequest(
            f"Unknown category: {missing[0]['message']}", details={"fields": missing}
        )
    return [found[s] for s in slugs]


class Catalogue:
    """The catalogue's changes, over the admin's pool and Redis."""

    def __init__(self, pool: asyncpg.Pool, redis: Redis, keys: Keys) -> None:
        self.pool = pool
        self.redis = redis
        self.keys = keys

    async def create(
        self, actor: Actor, fields: dict[str, Any], categories: Sequence[str]
    ) -> MovieRecord:
        """A new draft film."""
        async with self.pool.acquire() as conn, conn.transaction():
            ids = await _category_ids(conn, categories)
            movie_id = await repo.insert_movie(conn, slug_for(fields["title"]), fields)
            await repo.set_categories(conn, movie_id, ids)
            movie = await load_movie(conn, movie_id)
            await record(conn, actor, "movie.create", "movie", movie.id, after=movie.snapshot())
        return movie

    async def edit(
        self,
        actor: Actor,
        movie_id: uuid.UUID,
        fields: dict[str, Any],
        categories: Sequence[str] | None,
    ) -> MovieRecord:
        """Change some fields and/or the categories of a film."""
        async with self.pool.acquire() as conn, conn.transaction():
            before = await load_movie(conn, movie_id, lock=True)
            if categories is not None:
                await repo.set_categories(conn, movie_id, await _category_ids(conn, categories))
            if fields:
                await repo.update_movie(conn, movie_id, fields)
            after = await load_movie(conn, movie_id)
            old, new = before.snapshot(), after.snapshot()
            changed = sorted(k for k in new if new[k] != old[k])
            if not changed:
                return before
            if categories is not None and not fields:
                await repo.touch(conn, movie_id)
            await record(
                conn,
                actor,
                "movie.update",
                "movie",
                after.id,
                before={k: old[k] for k in changed},
                after={k: new[k] for k in changed},
            )
        await bump_catalogue(self.redis, self.keys)
        return await load_movie(self.pool, movie_id)

    async def publish(self, actor: Actor, movie_id: uuid.UUID) -> MovieRecord:
        """On the catalogue: visible and playable. 409 ``no_renditions`` when no video
        was ingested yet; publishing a published film changes nothing."""
        async with self.pool.acquire() as conn, conn.transaction():
            before = await load_movie(conn, movie_id, lock=True)
            if before.status == "published":
                return before
            if not await repo.playable(conn, movie_id):
                raise Conflict(
                    "The film has no renditions: ingest a video before publishing it",
                    code="no_renditions",
                )
            await repo.publish(conn, movie_id)
            await record(
                conn,
                actor,
                "movie.publish",
                "movie",
                before.id,
                before={"status": before.status},
                after={"status": "published"},
            )
        await bump_catalogue(self.redis, self.keys)
        return await load_movie(self.pool, movie_id)

    async def unpublish(self, actor: Actor, movie_id: uuid.UUID, reason: str | None) -> MovieRecord:
        """Off the catalogue; its live sessions end. 409 ``not_published`` unless it is
        published (or already unpublished: then only left-over sessions end)."""
        async with self.pool.acquire() as conn, conn.transaction():
            before = await load_movie(conn, movie_id, lock=True)
            if before.status not in ("published", "unpublished"):
                raise Conflict(
                    f"The film is not published (it is {before.status})", code="not_published"
                )
            if before.status == "published":
                await repo.unpublish(conn, movie_id)
                await record(
                    conn,
                    actor,
                    "movie.unpublish",
                    "movie",
                    before.id,
                    before={"status": before.status},
                    after={"status": "unpublished"},
                    reason=reason,
                )
        await self._withdrawn(movie_id)
        return await load_movie(self.pool, movie_id)

    async def take_down(self, actor: Actor, movie_id: uuid.UUID, reason: str) -> MovieRecord:
        """Taken down everywhere, with the reason; its live sessions end. A film already
        taken down keeps its first reason."""
        async with self.pool.acquire() as conn, conn.transaction():
            before = await load_movie(conn, movie_id, lock=True)
            if before.status != "taken_down":
                await repo.take_down(conn, movie_id, reason)
                await record(
                    conn,
                    actor,
                    "movie.takedown",
                    "movie",
                    before.id,
                    before={"status": before.status},
                    after={"status": "taken_down"},
                    reason=reason,
                )
        await self._withdrawn(movie_id)
        return await load_movie(self.pool, movie_id)

    async def _withdrawn(self, movie_id: uuid.UUID) -> int:
        """Tell the gateways, and end the film's live sessions."""
        await bump_catalogue(self.redis, self.keys)
        return await end_sessions_of(
            self.pool,
            self.redis,
            self.keys,
            owner="movie",
            owner_id=str(movie_id),
            reason=FILM_UNAVAILABLE,
        )

    # ------------------------------------------------------------ categories

    async def create_category(self, actor: Actor, slug: str, name: str) -> repo.CategoryRecord:
        """A new category; 409 ``category_exists`` when the slug is taken."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await repo.insert_category(conn, slug, name):
                raise Conflict(f"A category '{slug}' exists", code="category_exists")
            await record(conn, actor, "category.create", "category", slug, after={"name": name})
            created = await repo.get_category(conn, slug)
        assert created is not None
        return created

    async def rename_category(self, actor: Actor, slug: str, name: str) -> repo.CategoryRecord:
        """A category's new name; 404 ``category_not_found``."""
        async with self.pool.acquire() as conn, conn.transaction():
            before = await self._category(conn, slug)
            if before.name != name:
                await repo.rename_category(conn, slug, name)
                await record(
                    conn,
                    actor,
                    "category.update",
                    "category",
                    slug,
                    before={"name": before.name},
                    after={"name": name},
                )
            after = await self._category(conn, slug)
        await bump_catalogue(self.redis, self.keys)
        return after

    async def delete_category(self, actor: Actor, slug: str) -> None:
        """Delete a category (its films lose it); 404 ``category_not_found``."""
        async with self.pool.acquire() as conn, conn.transaction():
            before = await self._category(conn, slug)
            movies = await repo.delete_category(conn, slug)
            await record(
                conn,
                actor,
                "category.delete",
                "category",
                slug,
                before={"name": before.name, "movies": movies},
            )
        await bump_catalogue(self.redis, self.keys)

    async def _category(self, conn: asyncpg.Connection, slug: str) -> repo.CategoryRecord:
        found = await repo.get_category(conn, slug)
        if found is None:
            raise NotFound(f"No category '{slug}'", code="category_not_found")
        return found

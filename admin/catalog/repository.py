"""The catalogue's SQL for the admin service: films, their categories and publish state.

Every query of ``admin.catalog`` lives here; the views call these functions with a
connection (inside a transaction when a change must read then write).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeAlias

import asyncpg

MOVIE_STATUSES = ("draft", "processing", "published", "unpublished", "taken_down", "archived")

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


@dataclass(frozen=True, slots=True, kw_only=True)
class MovieRecord:
    """A film as the admin sees it, whatever its status."""

    id: str
    slug: str
    title: str
    description: str
    year: int | None
    duration_s: float
    min_age: int
    rating: str
    geo_allow: tuple[str, ...] | None
    geo_block: tuple[str, ...]
    status: str
    version: int
    categories: tuple[str, ...]
    renditions: tuple[str, ...]
    has_poster: bool
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None
    taken_down_at: datetime | None
    takedown_reason: str | None

    def snapshot(self) -> dict[str, Any]:
        """What an edit or a status change can alter, for the audit log."""
        return {
            "title": self.title,
            "description": self.description,
            "year": self.year,
            "min_age": self.min_age,
            "rating": self.rating,
            "geo_allow": list(self.geo_allow) if self.geo_allow is not None else None,
            "geo_block": list(self.geo_block),
            "categories": list(self.categories),
            "status": self.status,
        }


_MOVIE_SQL = """
SELECT m.id, m.slug, m.title, m.description, m.year, m.duration_s, m.min_age, m.rating,
       m.geo_allow, m.geo_block, m.status, m.version, m.poster_key, m.created_at,
       m.updated_at, m.published_at, m.taken_down_at, m.takedown_reason,
       ARRAY(SELECT c.slug FROM movie_categories mc JOIN categories c ON c.id = mc.category_id
              WHERE mc.movie_id = m.id ORDER BY c.slug) AS categories,
       ARRAY(SELECT r.name FROM renditions r WHERE r.movie_id = m.id
              ORDER BY r.height DESC NULLS LAST, r.name) AS renditions
  FROM movies m"""


def _movie(row: Any) -> MovieRecord:
    return MovieRecord(
        id=str(row["id"]),
        slug=row["slug"],
        title=row["title"],
        description=row["description"],
        year=row["year"],
        duration_s=float(row["duration_s"]),
        min_age=row["min_age"],
        rating=row["rating"],
        geo_allow=tuple(row["geo_allow"]) if row["geo_allow"] is not None else None,
        geo_block=tuple(row["geo_block"]),
        status=row["status"],
        version=row["version"],
        categories=tuple(row["categories"]),
        renditions=tuple(row["renditions"]),
        has_poster=row["poster_key"] is not None,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        published_at=row["published_at"],
        taken_down_at=row["taken_down_at"],
        takedown_reason=row["takedown_reason"],
    )


async def get_movie(conn: Conn, movie_id: uuid.UUID, *, lock: bool = False) -> MovieRecord | None:
    """One film, any status (``lock``: hold its row until the transaction ends)."""
    if lock:
        found = await conn.fetchval("SELECT 1 FROM movies WHERE id = $1 FOR UPDATE", movie_id)
        if found is None:
            return None
    row = await conn.fetchrow(_MOVIE_SQL + " WHERE m.id = $1", movie_id)
    return None if row is None else _movie(row)


@dataclass(frozen=True, slots=True)
class MoviePage:
    """A page of films, newest first, and where the next starts (None: the last)."""

    items: list[MovieRecord]
    next_after: tuple[datetime, str] | None


async def list_movies(
    conn: Conn, *, status: str | None, q: str, after: tuple[datetime, str] | None, limit: int
) -> MoviePage:
    """Films of any status, newest first; filtered by status and by words of the title
    or description (or a slug); keyset pages on (created_at, id)."""
    where: list[str] = []
    args: list[Any] = []
    if status:
        args.append(status)
        where.append(f"m.status = ${len(args)}")
    if q:
        args.append(q)
        n = len(args)
        where.append(
            f"(m.search @@ plainto_tsquery('simple', ${n}) OR m.title ILIKE '%' || ${n} || '%'"
            f" OR m.slug = ${n})"
        )
    if after is not None:
        args.extend([after[0], uuid.UUID(after[1])])
        where.append(f"(m.created_at, m.id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit + 1)
    sql = _MOVIE_SQL
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY m.created_at DESC, m.id DESC LIMIT ${len(args)}"
    rows = await conn.fetch(sql, *args)
    items = [_movie(r) for r in rows[:limit]]
    next_after = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_after = (last["created_at"], str(last["id"]))
    return MoviePage(items, next_after)


async def category_ids(conn: asyncpg.Connection, slugs: Sequence[str]) -> dict[str, int]:
    """The ids of the categories that exist among ``slugs``."""
    rows = await conn.fetch("SELECT slug, id FROM categories WHERE slug = ANY($1)", list(slugs))
    return {r["slug"]: r["id"] for r in rows}


async def set_categories(conn: asyncpg.Connection, movie_id: uuid.UUID, ids: Sequence[int]) -> None:
    """Replace a film's categories."""
    await conn.execute("DELETE FROM movie_categories WHERE movie_id = $1", movie_id)
    await conn.executemany(
        "INSERT INTO movie_categories (movie_id, category_id) VALUES ($1, $2)",
        [(movie_id, i) for i in dict.fromkeys(ids)],
    )


#: the columns a create or an edit may set
EDITABLE = ("title", "description", "year", "min_age", "rating", "geo_allow", "geo_block")


async def insert_movie(conn: asyncpg.Connection, slug: str, fields: dict[str, Any]) -> uuid.UUID:
    """A new draft film; returns its id."""
    cols = [c for c in EDITABLE if c in fields]
    placeholders = ", ".join(f"${i + 2}" for i in range(len(cols)))
    movie_id: uuid.UUID = await conn.fetchval(
        f"INSERT INTO movies (slug, {', '.join(cols)}, status) "  # noqa: S608 (fixed names)
        f"VALUES ($1, {placeholders}, 'draft') RETURNING id",
        slug,
        *[fields[c] for c in cols],
    )
    return movie_id


async def update_movie(
    conn: asyncpg.Connection, movie_id: uuid.UUID, fields: dict[str, Any]
) -> None:
    """Set some editable columns of a film."""
    cols = [c for c in EDITABLE if c in fields]
    assignments = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(cols))
    await conn.execute(
        f"UPDATE movies SET {assignments}, updated_at = now() WHERE id = $1",  # noqa: S608
        movie_id,
        *[fields[c] for c in cols],
    )


async def touch(conn: asyncpg.Connection, movie_id: uuid.UUID) -> None:
    """Mark a film as edited now."""
    await conn.execute("UPDATE movies SET updated_at = now() WHERE id = $1", movie_id)


async def playable(conn: asyncpg.Connection, movie_id: uuid.UUID) -> bool:
    """Whether a film has renditions and a master playlist (it was ingested)."""
    return bool(
        await conn.fetchval(
            """SELECT m.master_key IS NOT NULL
                      AND EXISTS (SELECT 1 FROM renditions r WHERE r.movie_id = m.id)
                 FROM movies m WHERE m.id = $1""",
            movie_id,
        )
    )


async def publish(conn: asyncpg.Connection, movie_id: uuid.UUID) -> None:
    """Published now (the first publication date is kept); a takedown is lifted."""
    await conn.execute(
        """UPDATE movies SET status = 'published', published_at = coalesce(published_at, now()),
                  taken_down_at = NULL, takedown_reason = NULL, updated_at = now()
            WHERE id = $1""",
        movie_id,
    )


async def unpublish(conn: asyncpg.Connection, movie_id: uuid.UUID) -> None:
    """Off the catalogue (can be published again)."""
    await conn.execute(
        "UPDATE movies SET status = 'unpublished', updated_at = now() WHERE id = $1", movie_id
    )


async def take_down(conn: asyncpg.Connection, movie_id: uuid.UUID, reason: str) -> None:
    """Taken down, with the reason."""
    await conn.execute(
        """UPDATE movies SET status = 'taken_down', taken_down_at = now(), takedown_reason = $2,
                  updated_at = now()
            WHERE id = $1""",
        movie_id,
        reason,
    )


# ------------------------------------------------------------------ categories


@dataclass(frozen=True, slots=True, kw_only=True)
class CategoryRecord:
    """A category and how many films carry it."""

    slug: str
    name: str
    films: int
    published_films: int


_CATEGORY_SQL = """
SELECT c.slug, c.name, count(m.id) AS films,
       count(m.id) FILTER (WHERE m.status = 'published') AS published_films
  FROM categories c
  LEFT JOIN movie_categories mc ON mc.category_id = c.id
  LEFT JOIN movies m ON m.id = mc.movie_id"""


def _category(row: Any) -> CategoryRecord:
    return CategoryRecord(
        slug=row["slug"],
        name=row["name"],
        films=int(row["films"]),
        published_films=int(row["published_films"]),
    )


async def list_categories(conn: Conn) -> list[CategoryRecord]:
    """Every category, by name."""
    rows = await conn.fetch(_CATEGORY_SQL + " GROUP BY c.id ORDER BY c.name, c.slug")
    return [_category(r) for r in rows]


async def get_category(conn: Conn, slug: str) -> CategoryRecord | None:
    """One category by slug."""
    row = await conn.fetchrow(_CATEGORY_SQL + " WHERE c.slug = $1 GROUP BY c.id", slug)
    return None if row is None else _category(row)


async def insert_category(conn: Conn, slug: str, name: str) -> bool:
    """A new category; False when the slug is taken."""
    inserted = await conn.fetchval(
        """INSERT INTO categories (slug, name) VALUES ($1, $2)
           ON CONFLICT (slug) DO NOTHING RETURNING id""",
        slug,
        name,
    )
    return inserted is not None


async def rename_category(conn: Conn, slug: str, name: str) -> bool:
    """Change a category's name (its slug stays: campaigns target slugs)."""
    done = await conn.fetchval(
        "UPDATE categories SET name = $2 WHERE slug = $1 RETURNING id", slug, name
    )
    return done is not None


async def delete_category(conn: asyncpg.Connection, slug: str) -> list[str] | None:
    """Delete a category (films lose it); the ids of the films that had it, or None when
    there was no such category."""
    movies = await conn.fetch(
        """SELECT mc.movie_id FROM movie_categories mc JOIN categories c ON c.id = mc.category_id
            WHERE c.slug = $1 ORDER BY mc.movie_id""",
        slug,
    )
    deleted = await conn.fetchval("DELETE FROM categories WHERE slug = $1 RETURNING id", slug)
    if deleted is None:
        return None
    return [str(r["movie_id"]) for r in movies]


# ------------------------------------------------------------------ the views report

#: Per film and UTC day: playback starts, distinct viewers, and watch time. Watch time
#: is how far each viewer of the day got in the film (their saved position, at most the
#: film's length) if they got there after their first start that day; a viewer who
#: resumed counts from the film's start, so it is an upper bound of the seconds watched.
_VIEWS_SQL = """
WITH starts AS (
    SELECT s.movie_id, (s.created_at AT TIME ZONE 'UTC')::date AS day, s.user_id,
           count(*) AS starts, min(s.created_at) AS first_start
      FROM playback_sessions s
     WHERE s.created_at >= $1::date AND s.created_at < $2::date + 1
     GROUP BY 1, 2, 3)
SELECT st.movie_id, m.title, st.day, sum(st.starts) AS starts, count(*) AS viewers,
       coalesce(sum(least(w.position_s, nullif(m.duration_s, 0)))
                FILTER (WHERE w.updated_at >= st.first_start), 0) AS watch_time_s
  FROM starts st
  JOIN movies m ON m.id = st.movie_id
  LEFT JOIN watch_progress w ON w.user_id = st.user_id AND w.movie_id = st.movie_id
 GROUP BY st.movie_id, m.title, st.day
 ORDER BY st.day, starts DESC, st.movie_id"""


@dataclass(frozen=True, slots=True, kw_only=True)
class ViewsRow:
    """One film on one day."""

    movie_id: str
    title: str
    day: date
    starts: int
    viewers: int
    watch_time_s: float


async def views_report(conn: Conn, first: date, last: date) -> list[ViewsRow]:
    """Starts, viewers and watch time per film and day, ``first`` to ``last`` (UTC)."""
    rows = await conn.fetch(_VIEWS_SQL, first, last)
    return [
        ViewsRow(
            movie_id=str(r["movie_id"]),
            title=r["title"],
            day=r["day"],
            starts=int(r["starts"]),
            viewers=int(r["viewers"]),
            watch_time_s=float(r["watch_time_s"]),
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageRow:
    """Data delivered for one film on one day."""

    movie_id: str
    title: str
    day: date
    bytes: int
    edge_bytes: int
    sessions: int
    viewers: int


async def usage_report(conn: Conn, first: date, last: date) -> list[UsageRow]:
    """Bytes delivered (all, and the edge's part), sessions and viewers per film and day,
    ``first`` to ``last`` (UTC days)."""
    rows = await conn.fetch(
        """SELECT u.movie_id, m.title, u.day, sum(u.bytes)::int8 AS bytes,
                  sum(u.edge_bytes)::int8 AS edge_bytes,
                  count(DISTINCT u.session_id) AS sessions,
                  count(DISTINCT u.user_id) AS viewers
             FROM data_usage u JOIN movies m ON m.id = u.movie_id
            WHERE u.day BETWEEN $1 AND $2
            GROUP BY u.movie_id, m.title, u.day
            ORDER BY u.day, bytes DESC, u.movie_id""",
        first,
        last,
    )
    return [
        UsageRow(
            movie_id=str(r["movie_id"]),
            title=r["title"],
            day=r["day"],
            bytes=int(r["bytes"]),
            edge_bytes=int(r["edge_bytes"]),
            sessions=int(r["sessions"]),
            viewers=int(r["viewers"]),
        )
        for r in rows
    ]

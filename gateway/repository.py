"""The gateway's SQL: films, viewers and their plans, watch progress.

Every query the gateway runs lives here; views and domain code call these functions and
never write SQL themselves.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg

from billing.store import load_user_plan
from gateway.errors import AccountDisabled, BirthYearLocked, MovieNotFound
from runtime.together import both


@dataclass(frozen=True, slots=True, kw_only=True)
class Movie:
    """What playback needs to know about a film."""

    id: str
    title: str
    status: str
    duration_s: float
    min_age: int
    geo_allow: tuple[str, ...] | None
    geo_block: tuple[str, ...]
    version: int
    master_key: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Viewer:
    """The account starting playback, with its effective plan."""

    id: str
    birth_year: int | None
    plan: str
    max_height: int
    max_streams: int
    ads: bool
    #: the account's data-saver setting (README "Data")
    data_saver: bool = False


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def load_movie(pool: asyncpg.Pool, movie_id: str) -> Movie:
    """A published film, or :class:`MovieNotFound`."""
    key = _uuid(movie_id)
    if key is None:
        raise MovieNotFound()
    row = await pool.fetchrow(
        """SELECT id, title, status, duration_s, min_age, geo_allow, geo_block, version,
                  master_key FROM movies WHERE id = $1""",
        key,
    )
    if row is None or row["status"] != "published":
        raise MovieNotFound()
    return Movie(
        id=str(row["id"]),
        title=row["title"],
        status=row["status"],
        duration_s=float(row["duration_s"]),
        min_age=row["min_age"],
        geo_allow=tuple(row["geo_allow"]) if row["geo_allow"] is not None else None,
        geo_block=tuple(row["geo_block"]),
        version=row["version"],
        master_key=row["master_key"],
    )


async def _account(pool: asyncpg.Pool, key: uuid.UUID) -> asyncpg.Record:
    """The account's row, or :class:`AccountDisabled` (also for an unknown id)."""
    row = await pool.fetchrow(
        "SELECT id, birth_year, data_saver FROM users WHERE id = $1 AND disabled_at IS NULL",
        key,
    )
    if row is None:
        raise AccountDisabled()
    return row


async def load_viewer(pool: asyncpg.Pool, user_id: str, *, grace: timedelta) -> Viewer:
    """The account and its effective plan's limits, read fresh (a JWT's plan may lag a
    payment): the plan comes from :func:`billing.plans.effective_plan`, the one rule
    both services share (``grace``: how long ``past_due`` keeps the plan)."""
    key = uuid.UUID(user_id)
    # the account and its plan at once: one round trip instead of two
    row, user_plan = await both(_account(pool, key), load_user_plan(pool, key, grace=grace))
    limits = user_plan.limits
    return Viewer(
        id=str(row["id"]),
        birth_year=row["birth_year"],
        plan=limits.id,
        max_height=limits.max_height,
        max_streams=limits.max_streams,
        ads=limits.ads,
        data_saver=row["data_saver"],
    )


async def movie_categories(pool: asyncpg.Pool, movie_id: str) -> frozenset[str]:
    """Category slugs of a film (ad targeting)."""
    rows = await pool.fetch(
        """SELECT c.slug FROM movie_categories mc JOIN categories c ON c.id = mc.category_id
            WHERE mc.movie_id = $1""",
        uuid.UUID(movie_id),
    )
    return frozenset(r["slug"] for r in rows)


async def read_progress(
    pool: asyncpg.Pool, user_id: str, movie_id: str
) -> tuple[float, bool] | None:
    """(position in seconds, completed) of a viewer in a film, if they started it."""
    row = await pool.fetchrow(
        """SELECT position_s, completed FROM watch_progress
            WHERE user_id = $1 AND movie_id = $2""",
        uuid.UUID(user_id),
        uuid.UUID(movie_id),
    )
    return None if row is None else (float(row["position_s"]), bool(row["completed"]))


async def write_progress(
    pool: asyncpg.Pool,
    user_id: str,
    movie_id: str,
    position: float,
    duration: float | None,
    *,
    completed: bool,
) -> None:
    """Upsert the viewer's position in a film."""
    await pool.execute(
        """INSERT INTO watch_progress (user_id, movie_id, position_s, duration_s, completed)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (user_id, movie_id) DO UPDATE
              SET position_s = EXCLUDED.position_s,
                  duration_s = coalesce(EXCLUDED.duration_s, watch_progress.duration_s),
                  completed = EXCLUDED.completed, updated_at = now()""",
        uuid.UUID(user_id),
        uuid.UUID(movie_id),
        position,
        duration,
        completed,
    )


async def write_progress_batch(
    pool: asyncpg.Pool,
    rows: Sequence[tuple[str, str, float, float | None, bool, datetime]],
) -> None:
    """Upsert many positions at once: (user, movie, position, duration, completed, at).
    A row never overwrites a position recorded later than its own ``at``."""
    if not rows:
        return
    users, movies, positions, durations, completed, ats = zip(*rows, strict=True)
    await pool.execute(
        """INSERT INTO watch_progress (user_id, movie_id, position_s, duration_s, completed,
                                       updated_at)
           SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::float8[], $4::float8[],
                                $5::bool[], $6::timestamptz[])
           ON CONFLICT (user_id, movie_id) DO UPDATE
              SET position_s = EXCLUDED.position_s,
                  duration_s = coalesce(EXCLUDED.duration_s, watch_progress.duration_s),
                  completed = EXCLUDED.completed, updated_at = EXCLUDED.updated_at
            WHERE watch_progress.updated_at <= EXCLUDED.updated_at""",
        list(users),
        list(movies),
        list(positions),
        list(durations),
        list(completed),
        list(ats),
    )


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """A film the viewer watched, with where they are in it."""

    movie_id: str
    title: str
    position_s: float
    duration_s: float | None
    completed: bool
    updated_at: datetime


async def watch_history(pool: asyncpg.Pool, user_id: str, *, limit: int = 50) -> list[HistoryItem]:
    """Recently watched films that are still published, newest first (an unpublished or
    taken-down film leaves the history with the catalogue)."""
    rows = await pool.fetch(
        """SELECT w.movie_id, w.position_s, w.duration_s, w.completed, w.updated_at, m.title
             FROM watch_progress w JOIN movies m ON m.id = w.movie_id
            WHERE w.user_id = $1 AND m.status = 'published'
            ORDER BY w.updated_at DESC LIMIT $2""",
        uuid.UUID(user_id),
        limit,
    )
    return [
        HistoryItem(
            movie_id=str(r["movie_id"]),
            title=r["title"],
            position_s=r["position_s"],
            duration_s=r["duration_s"],
            completed=r["completed"],
            updated_at=r["updated_at"],
        )
        for r in rows
    ]


# ------------------------------------------------------------------ catalogue listing

_MOVIE_COLUMNS = """m.id, m.slug, m.title, m.description, m.year, m.duration_s, m.min_age,
    m.rating, m.poster_key, m.published_at,
    ARRAY(SELECT c.slug FROM movie_categories mc JOIN categories c ON c.id = mc.category_id
           WHERE mc.movie_id = m.id ORDER BY c.slug) AS categories"""


def movie_card(row: Any) -> dict[str, Any]:
    """The public JSON of a published film."""
    return {
        "id": str(row["id"]),
        "slug": row["slug"],
        "title": row["title"],
        "description": row["description"],
        "year": row["year"],
        "duration_s": row["duration_s"],
        "min_age": row["min_age"],
        "rating": row["rating"],
        "poster_url": f"/posters/{row['id']}.jpg" if row["poster_key"] else None,
        "categories": list(row["categories"] or []),
    }


@dataclass(frozen=True, slots=True)
class MoviePage:
    """One page of the catalogue and where the next one starts (``None``: last page)."""

    items: list[dict[str, Any]]
    next_after: tuple[datetime, str] | None


async def list_published(
    pool: asyncpg.Pool,
    *,
    q: str,
    category: str,
    after: tuple[datetime, str] | None,
    limit: int,
) -> MoviePage:
    """Published films, newest first, filtered by text search and category; keyset
    pagination on (published_at, id)."""
    where = ["m.status = 'published'"]
    args: list[Any] = []
    if q:
        args.append(q)
        n = len(args)
        where.append(
            f"(m.search @@ plainto_tsquery('simple', ${n}) OR m.title ILIKE '%' || ${n} || '%')"
        )
    if category:
        args.append(category)
        where.append(
            "EXISTS (SELECT 1 FROM movie_categories mc JOIN categories c "  # noqa: S608
            f"ON c.id = mc.category_id WHERE mc.movie_id = m.id AND c.slug = ${len(args)})"
        )
    if after:
        args.extend([after[0], uuid.UUID(after[1])])
        # exact timestamps: epoch seconds as a float cannot hold microseconds, and a
        # page boundary would repeat or skip a film
        where.append(f"(m.published_at, m.id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit + 1)
    rows = await pool.fetch(
        f"SELECT {_MOVIE_COLUMNS} FROM movies m WHERE {' AND '.join(where)} "  # noqa: S608
        f"ORDER BY m.published_at DESC, m.id DESC LIMIT ${len(args)}",
        *args,
    )
    items = [movie_card(r) for r in rows[:limit]]
    next_after = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_after = (last["published_at"], str(last["id"]))
    return MoviePage(items, next_after)


async def published_movie_card(pool: asyncpg.Pool, movie_id: str) -> dict[str, Any]:
    """The public JSON of one published film, or :class:`MovieNotFound`."""
    key = _uuid(movie_id)
    if key is None:
        raise MovieNotFound()
    row = await pool.fetchrow(
        f"SELECT {_MOVIE_COLUMNS} FROM movies m WHERE m.id = $1 AND m.status = 'published'",  # noqa: S608
        key,
    )
    if row is None:
        raise MovieNotFound()
    return movie_card(row)


async def trending(
    pool: asyncpg.Pool, *, hours: int, limit: int
) -> list[tuple[dict[str, Any], int]]:
    """The published films with the most playback starts in the last ``hours``, with
    their start counts, most started first."""
    rows = await pool.fetch(
        f"""WITH starts AS (
                SELECT movie_id, count(*) AS starts FROM playback_sessions
                 WHERE created_at > now() - make_interval(hours => $1)
                 GROUP BY movie_id)
            SELECT {_MOVIE_COLUMNS}, s.starts
              FROM starts s JOIN movies m ON m.id = s.movie_id
             WHERE m.status = 'published'
             ORDER BY s.starts DESC, m.published_at DESC, m.id
             LIMIT $2""",  # noqa: S608 (fixed column list)
        hours,
        limit,
    )
    return [(movie_card(r), int(r["starts"])) for r in rows]


async def public_categories(pool: asyncpg.Pool) -> list[tuple[str, str, int]]:
    """(slug, name, published films) of every category with a published film, by name."""
    rows = await pool.fetch(
        """SELECT c.slug, c.name, count(*) AS films
             FROM categories c
             JOIN movie_categories mc ON mc.category_id = c.id
             JOIN movies m ON m.id = mc.movie_id AND m.status = 'published'
            GROUP BY c.id ORDER BY c.name, c.slug"""
    )
    return [(r["slug"], r["name"], int(r["films"])) for r in rows]


# ------------------------------------------------------------------ the viewer's profile


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """What a viewer sees and sets about themselves."""

    id: str
    email: str
    role: str
    plan: str
    display_name: str | None
    birth_year: int | None
    created_at: datetime
    data_saver: bool = False


_PROFILE_SQL = """
SELECT u.id, u.email, u.role, u.display_name, u.birth_year, u.created_at, u.data_saver,
       coalesce((SELECT s.plan_id FROM subscriptions s
                  WHERE s.user_id = u.id AND s.status IN ('active', 'trialing', 'past_due')
                  ORDER BY s.created_at DESC LIMIT 1), 'free') AS plan
  FROM users u WHERE u.id = $1 AND u.disabled_at IS NULL"""


def _profile(row: Any) -> Profile:
    return Profile(
        id=str(row["id"]),
        email=row["email"],
        role=row["role"],
        plan=row["plan"],
        display_name=row["display_name"],
        birth_year=row["birth_year"],
        created_at=row["created_at"],
        data_saver=row["data_saver"],
    )


async def load_profile(pool: asyncpg.Pool, user_id: str) -> Profile:
    """The viewer's profile, or :class:`AccountDisabled`."""
    row = await pool.fetchrow(_PROFILE_SQL, uuid.UUID(user_id))
    if row is None:
        raise AccountDisabled()
    return _profile(row)


async def update_profile(
    pool: asyncpg.Pool,
    user_id: str,
    *,
    birth_year: int | None,
    display_name: str | None,
    change_display_name: bool,
    data_saver: bool | None = None,
) -> Profile:
    """Set the birth year once and/or change the display name (``None`` clears it).

    The birth year is checked and written under a row lock, so two racing requests
    cannot both set it: the year it already has is a no-op, any other year once one is
    set is :class:`BirthYearLocked`."""
    uid = uuid.UUID(user_id)
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT birth_year FROM users WHERE id = $1 AND disabled_at IS NULL FOR UPDATE", uid
        )
        if row is None:
            raise AccountDisabled()
        if birth_year is not None and row["birth_year"] not in (None, birth_year):
            raise BirthYearLocked()
        await conn.execute(
            """UPDATE users SET birth_year = coalesce(birth_year, $2),
                      display_name = CASE WHEN $3 THEN $4 ELSE display_name END,
                      data_saver = coalesce($5, data_saver)
                WHERE id = $1""",
            uid,
            birth_year,
            change_display_name,
            display_name,
            data_saver,
        )
        updated = await conn.fetchrow(_PROFILE_SQL, uid)
    return _profile(updated)


# ------------------------------------------------------------------ data usage


async def add_usage_batch(
    pool: asyncpg.Pool, rows: Sequence[tuple[str, date, str, str, int, int]]
) -> None:
    """Add many tallies at once: (session, UTC day, user, movie, bytes, edge bytes).

    The ids go as text and PostgreSQL casts them: building a ``uuid.UUID`` per row here
    held the event loop for ~5.5 ms per 1 000 rows, in the middle of serving requests."""
    if not rows:
        return
    sessions, days, users, movies, nbytes, edge = zip(*rows, strict=True)
    await pool.execute(
        """INSERT INTO data_usage (session_id, day, user_id, movie_id, bytes, edge_bytes)
           SELECT * FROM unnest($1::text[], $2::date[], $3::text[]::uuid[],
                                $4::text[]::uuid[], $5::int8[], $6::int8[])
           ON CONFLICT (session_id, day) DO UPDATE
              SET bytes = data_usage.bytes + EXCLUDED.bytes,
                  edge_bytes = data_usage.edge_bytes + EXCLUDED.edge_bytes,
                  updated_at = now()""",
        list(sessions),
        list(days),
        list(users),
        list(movies),
        list(nbytes),
        list(edge),
    )


@dataclass(frozen=True, slots=True)
class FilmUsage:
    """Bytes one viewer used on one film in a range of days, over how many sessions."""

    movie_id: str
    title: str
    bytes: int
    sessions: int


async def usage_of(pool: asyncpg.Pool, user_id: str, first: date, last: date) -> list[FilmUsage]:
    """A viewer's usage per film between two UTC days (inclusive), most bytes first:
    what their playback sessions used plus the offline downloads delivered (a download
    is not a session: it adds bytes, not sessions)."""
    rows = await pool.fetch(
        """WITH played AS (
                SELECT movie_id, sum(bytes) AS bytes, count(DISTINCT session_id) AS sessions
                  FROM data_usage
                 WHERE user_id = $1 AND day BETWEEN $2 AND $3
                 GROUP BY movie_id),
            downloaded AS (
                SELECT movie_id, sum(bytes) AS bytes
                  FROM download_deliveries
                 WHERE user_id = $1 AND (at AT TIME ZONE 'UTC')::date BETWEEN $2 AND $3
                 GROUP BY movie_id)
           SELECT m.id AS movie_id, m.title,
                  (coalesce(p.bytes, 0) + coalesce(d.bytes, 0))::int8 AS bytes,
                  coalesce(p.sessions, 0) AS sessions
             FROM played p FULL JOIN downloaded d ON d.movie_id = p.movie_id
             JOIN movies m ON m.id = coalesce(p.movie_id, d.movie_id)
            ORDER BY bytes DESC, m.id""",
        uuid.UUID(user_id),
        first,
        last,
    )
    return [
        FilmUsage(str(r["movie_id"]), r["title"], int(r["bytes"]), int(r["sessions"])) for r in rows
    ]


@dataclass(frozen=True, slots=True)
class RenditionSize:
    """One rendition of a film and its size for the whole film (from its bandwidth)."""

    name: str
    height: int | None
    bandwidth: int
    megabytes: float


async def rendition_sizes(
    pool: asyncpg.Pool, movie_id: str, duration_s: float
) -> list[RenditionSize]:
    """The film's renditions, smallest first, each with the megabytes (10^6 bytes) the
    whole film takes at its declared bandwidth (``BANDWIDTH`` is a peak: an upper-side
    estimate)."""
    rows = await pool.fetch(
        """SELECT name, height, bandwidth FROM renditions WHERE movie_id = $1
            ORDER BY bandwidth, name""",
        uuid.UUID(movie_id),
    )
    return [
        RenditionSize(
            r["name"],
            r["height"],
            r["bandwidth"],
            film_megabytes(r["bandwidth"], duration_s),
        )
        for r in rows
    ]


def film_megabytes(bandwidth_bps: int, duration_s: float) -> float:
    """Megabytes (10^6 bytes) of ``duration_s`` seconds at ``bandwidth_bps`` bits per
    second, to one decimal."""
    return round(bandwidth_bps * max(duration_s, 0.0) / 8 / 1_000_000, 1)

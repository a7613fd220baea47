"""Playback domain: entitlement rules, compiled playlist templates, progress.

No HTTP here: the views parse the request, call these functions and build the response.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from hls import (
    MasterTemplate,
    MediaPlaylist,
    PlaylistTemplate,
    compile_master_playlist,
    compile_media_playlist,
    parse_master_playlist,
    parse_media_playlist,
    resolve_uri,
)
from origin import OriginStore, object_key
from runtime.errors import Forbidden, NotFound

MAX_PLAYLIST_BYTES = 4 * 1024 * 1024
RESUME_MIN_S = 30.0
RESUME_END_MARGIN_S = 60.0


class NotEntitled(Forbidden):
    code, message = "not_entitled", "Your plan does not include this"


class GeoBlocked(Forbidden):
    code, message = "geo_blocked", "This film is not available in your country"


class AgeRestricted(Forbidden):
    code, message = "age_restricted", "This film is restricted by age"


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


async def load_movie(pool: asyncpg.Pool, movie_id: str) -> Movie:
    """A published film, or 404."""
    try:
        key = uuid.UUID(movie_id)
    except ValueError:
        raise NotFound("No such film", code="movie_not_found") from None
    row = await pool.fetchrow(
        """SELECT id, title, status, duration_s, min_age, geo_allow, geo_block, version,
                  master_key FROM movies WHERE id = $1""",
        key,
    )
    if row is None or row["status"] != "published":
        raise NotFound("No such film", code="movie_not_found")
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


async def load_viewer(pool: asyncpg.Pool, user_id: str) -> Viewer:
    """The account and its plan's limits, read fresh (a JWT's plan may lag a payment)."""
    row = await pool.fetchrow(
        """SELECT u.id, u.birth_year, p.id AS plan, p.max_height, p.max_streams, p.ads
             FROM users u
             JOIN plans p ON p.id = coalesce(
                 (SELECT s.plan_id FROM subscriptions s
                   WHERE s.user_id = u.id AND s.status IN ('active', 'trialing', 'past_due')
                   ORDER BY s.created_at DESC LIMIT 1), 'free')
            WHERE u.id = $1 AND u.disabled_at IS NULL""",
        uuid.UUID(user_id),
    )
    if row is None:
        raise Forbidden("Account not found or disabled", code="account_disabled")
    return Viewer(
        id=str(row["id"]),
        birth_year=row["birth_year"],
        plan=row["plan"],
        max_height=row["max_height"],
        max_streams=row["max_streams"],
        ads=row["ads"],
    )


def check_rules(movie: Movie, viewer: Viewer, country: str | None, *, year: int) -> None:
    """Geo and age rules; raise the matching 403."""
    code = (country or "").strip().upper()
    known = len(code) == 2 and code.isalpha() and code not in {"XX", "T1"}
    if known and code in movie.geo_block:
        raise GeoBlocked()
    if movie.geo_allow is not None and (not known or code not in movie.geo_allow):
        raise GeoBlocked()
    too_young = viewer.birth_year is None or year - viewer.birth_year < movie.min_age
    if movie.min_age > 0 and too_young:
        raise AgeRestricted()


def hls_root(movie_id: str) -> str:
    """The URL path under which a film's HLS files are served."""
    return f"/hls/{movie_id}/"


def origin_key_for(movie_id: str, *parts: str) -> str:
    """The origin key for a film file; raises InvalidObjectKey for a bad component."""
    return object_key("videos", movie_id, *parts)


@dataclass(frozen=True, slots=True)
class MediaEntry:
    """A compiled media playlist, its source and parse, and each segment's start time
    (for progress and ad confirmation)."""

    template: PlaylistTemplate
    starts: dict[str, float]
    duration: float
    text: str
    parsed: MediaPlaylist

    @property
    def container(self) -> str:
        """``fmp4`` when segments need an init section (EXT-X-MAP), else ``ts``."""
        first = self.parsed.segments[0] if self.parsed.segments else None
        return "fmp4" if first is not None and first.map is not None else "ts"


class PlaylistCache:
    """Origin playlists compiled once into templates, keyed by film version.

    A re-ingest bumps ``movies.version``, which changes the key, so stale templates are
    simply never asked for again (and age out of the bounded cache).
    """

    def __init__(self, origin: OriginStore, *, max_entries: int = 2048) -> None:
        self.origin = origin
        self.max_entries = max_entries
        self._masters: dict[tuple[str, int, int, int], MasterTemplate] = {}
        self._audio: dict[tuple[str, int], tuple[str, ...]] = {}
        self._master_texts: dict[tuple[str, int], str] = {}
        self._media: dict[tuple[str, int, str], MediaEntry] = {}

    async def _read(self, key: str) -> str:
        data = await self.origin.read_bytes(key, max_size=MAX_PLAYLIST_BYTES)
        return data.decode("utf-8")

    async def _master_text(self, movie: Movie) -> str:
        """The origin master playlist of a film version, read once (each tier's template
        and the audio list are built from it)."""
        cache_key = (movie.id, movie.version)
        text = self._master_texts.get(cache_key)
        if text is None:
            text = await self._read(movie.master_key or origin_key_for(movie.id, "master.m3u8"))
            self._remember(self._master_texts, cache_key, text)
        return text

    async def master(self, movie: Movie, *, max_height: int, preferred: int) -> MasterTemplate:
        cache_key = (movie.id, movie.version, max_height, preferred)
        found = self._masters.get(cache_key)
        if found is None:
            text = await self._master_text(movie)
            root = hls_root(movie.id)
            found = compile_master_playlist(
                text,
                playlist_path=root + "master.m3u8",
                root=root,
                max_height=max_height,
                preferred_height=preferred,
            )
            self._remember(self._masters, cache_key, found)
        return found

    async def audio_playlists(self, movie: Movie) -> tuple[str, ...]:
        """URL paths of the film's alternate-audio playlists (EXT-X-MEDIA TYPE=AUDIO):
        ad pods must line up in them as in the video renditions."""
        cache_key = (movie.id, movie.version)
        found = self._audio.get(cache_key)
        if found is None:
            text = await self._master_text(movie)
            root = hls_root(movie.id)
            found = tuple(
                resolve_uri(r.uri, root + "master.m3u8", root)
                for r in parse_master_playlist(text).renditions
                if r.type == "AUDIO" and r.uri
            )
            self._remember(self._audio, cache_key, found)
        return found

    async def media(self, movie_id: str, version: int, rendition: str, name: str) -> MediaEntry:
        cache_key = (movie_id, version, f"{rendition}/{name}")
        found = self._media.get(cache_key)
        if found is None:
            text = await self._read(origin_key_for(movie_id, rendition, name))
            root = hls_root(movie_id)
            playlist_path = f"{root}{rendition}/{name}"
            template = compile_media_playlist(text, playlist_path=playlist_path, root=root)
            parsed = parse_media_playlist(text)
            starts: dict[str, float] = {}
            elapsed = 0.0
            base = f"{root}{rendition}/"
            for segment in parsed.segments:
                path = segment.uri if segment.uri.startswith("/") else base + segment.uri
                starts.setdefault(path.split("?", 1)[0], elapsed)
                elapsed += segment.duration
            found = MediaEntry(template, starts, elapsed, text, parsed)
            self._remember(self._media, cache_key, found)
        return found

    def _remember(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        if len(table) >= self.max_entries:
            table.pop(next(iter(table)))
        table[key] = value


async def movie_categories(pool: asyncpg.Pool, movie_id: str) -> frozenset[str]:
    """Category slugs of a film (ad targeting)."""
    rows = await pool.fetch(
        """SELECT c.slug FROM movie_categories mc JOIN categories c ON c.id = mc.category_id
            WHERE mc.movie_id = $1""",
        uuid.UUID(movie_id),
    )
    return frozenset(r["slug"] for r in rows)


async def resume_offset(pool: asyncpg.Pool, user_id: str, movie: Movie) -> float | None:
    """Where to resume a film left part-way, or None to start at the beginning."""
    row = await pool.fetchrow(
        """SELECT position_s, completed FROM watch_progress
            WHERE user_id = $1 AND movie_id = $2""",
        uuid.UUID(user_id),
        uuid.UUID(movie.id),
    )
    if row is None or row["completed"]:
        return None
    position = float(row["position_s"])
    if position < RESUME_MIN_S or position > movie.duration_s - RESUME_END_MARGIN_S:
        return None
    return position


async def save_progress(
    pool: asyncpg.Pool, user_id: str, movie_id: str, position: float, duration: float | None
) -> None:
    """Upsert the viewer's position; near the end counts as completed."""
    completed = duration is not None and position >= duration - RESUME_END_MARGIN_S
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


def iso_utc(ts: int) -> str:
    """Unix seconds as ISO 8601 UTC (``2026-11-29T14:00:00Z``)."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_year() -> int:
    return time.gmtime().tm_year

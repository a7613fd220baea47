"""Catalogue domain: trending films, cached per process (no HTTP here).

Trending is the published films with the most playback starts over a window, recounted
at most every ``TRENDING_TTL_S`` per process (the query scans a week of starts). An
admin change to the catalogue (unpublish, takedown, edit) bumps the catalogue version in
Redis (``runtime.signals``); the next request sees it move and recounts, so a film taken
down leaves trending at once, not five minutes later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway import repository
from runtime.redis import Keys
from runtime.signals import catalogue_version_key

log = logging.getLogger(__name__)

TRENDING_TTL_S = 300.0
TRENDING_LIMIT = 20
Window = Literal["24h", "7d"]
WINDOW_HOURS: dict[str, int] = {"24h": 24, "7d": 7 * 24}

#: (card, starts) pairs, most started first
TrendingFilms = list[tuple[dict[str, Any], int]]


class Trending:
    """The trending lists of one process, per window."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: Redis,
        keys: Keys,
        *,
        ttl_s: float = TRENDING_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.redis = redis
        self.keys = keys
        self.ttl_s = ttl_s
        self.clock = clock
        self._cache: dict[str, tuple[float, TrendingFilms]] = {}
        self._version: bytes | None = None
        self._lock = asyncio.Lock()

    async def films(self, window: Window) -> TrendingFilms:
        """The trending films of ``window`` (cached; recounted when stale or when the
        catalogue changed)."""
        version = await self._catalogue_version()
        if version != self._version:
            self._cache.clear()
            self._version = version
        hit = self._fresh(window)
        if hit is not None:
            return hit
        async with self._lock:  # one recount at a time: concurrent misses share it
            hit = self._fresh(window)
            if hit is not None:
                return hit
            films = await repository.trending(
                self.pool, hours=WINDOW_HOURS[window], limit=TRENDING_LIMIT
            )
            self._cache[window] = (self.clock(), films)
            return films

    def _fresh(self, window: str) -> TrendingFilms | None:
        hit = self._cache.get(window)
        if hit is not None and self.clock() - hit[0] < self.ttl_s:
            return hit[1]
        return None

    async def _catalogue_version(self) -> bytes | None:
        try:
            raw = await self.redis.get(catalogue_version_key(self.keys))
        except RedisError as exc:  # trending is best effort: keep what we have
            log.warning("catalogue version unavailable (%s)", type(exc).__name__)
            return self._version
        return raw.encode() if isinstance(raw, str) else raw

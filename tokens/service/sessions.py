"""Playback sessions: who may fetch which film's URIs until when.

A session lives in Redis with a TTL (``ps:<id>``) and is recorded in PostgreSQL for
audit. Segment requests read it through a tiny per-process cache (``CACHE_TTL_S``), so a
revocation reaches every gateway worker within a second with no database round trip.

Concurrent streams: ``streams:<user>`` is a sorted set of session ids scored by their
last heartbeat; segment fetches refresh the score (at most every ``HEARTBEAT_EVERY_S``),
and a session idle for ``IDLE_WINDOW_S`` no longer counts. Starting a stream beyond the
plan's limit is refused (``stream_limit``) rather than ending the oldest: on a shared
family phone, silently killing someone else's film is the worse surprise.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from redis.asyncio import Redis

from runtime.errors import Forbidden
from runtime.redis import Keys

log = logging.getLogger(__name__)

CACHE_TTL_S = 0.5
CACHE_MAX = 20_000
HEARTBEAT_EVERY_S = 15.0
IDLE_WINDOW_S = 120
FAMILY_INDEX_TTL_S = 7 * 24 * 3600

# Atomic "prune idle, check the limit, add": two viewers starting at once cannot both
# take the last slot.
_CREATE_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('SET', KEYS[2], ARGV[6], 'EX', ARGV[5])
return 1
"""


class StreamLimitReached(Forbidden):
    """The plan's concurrent-stream limit is used up."""

    code = "stream_limit"
    message = "Your plan's concurrent-stream limit is reached; stop another stream first"


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaybackSession:
    """One viewer watching one film with one plan."""

    id: str
    user_id: str
    movie_id: str
    plan: str
    renditions: tuple[str, ...]
    created_at: int
    expires_at: int
    family_id: str | None = None
    ad_plan: dict[str, Any] | None = None
    client_ip: str | None = None
    ip_prefix: str | None = None
    user_agent: str | None = None
    country: str | None = None
    region: str | None = None
    start_offset: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> PlaybackSession:
        data = orjson.loads(raw)
        data["renditions"] = tuple(data["renditions"])
        return cls(**data)


class SessionStore:
    """Create, read (cached), heartbeat and revoke playback sessions."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: Redis,
        keys: Keys,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self.monotonic = monotonic
        self._cache: dict[str, tuple[float, PlaybackSession | None]] = {}
        self._beats: dict[str, float] = {}
        self._create = redis.register_script(_CREATE_LUA)

    async def create(self, session: PlaybackSession, *, max_streams: int) -> None:
        """Store a new session, refusing it when the stream limit is reached."""
        now = self.clock()
        ttl = max(1, session.expires_at - int(now))
        ok = await self._create(
            keys=[self.keys("streams", session.user_id), self.keys("ps", session.id)],
            args=[now - IDLE_WINDOW_S, max_streams, now, session.id, ttl, session.to_json()],
        )
        if not ok:
            raise StreamLimitReached()
        if session.family_id:
            fam_key = self.keys("fam-sessions", session.family_id)
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.sadd(fam_key, session.id)
                pipe.expire(fam_key, FAMILY_INDEX_TTL_S)
                await pipe.execute()
        await self.pool.execute(
            """INSERT INTO playback_sessions (id, user_id, movie_id, plan_id, renditions,
                   ad_plan, client_ip, user_agent, country, expires_at, region)
               VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11)""",
            session.id,
            uuid.UUID(session.user_id),
            uuid.UUID(session.movie_id),
            session.plan,
            list(session.renditions),
            orjson.dumps(session.ad_plan).decode() if session.ad_plan is not None else None,
            session.client_ip,
            (session.user_agent or "")[:256] or None,
            session.country,
            datetime.fromtimestamp(session.expires_at, tz=UTC),
            (session.region or "")[:64] or None,
        )

    async def get(self, session_id: str) -> PlaybackSession | None:
        """The live session, or None when expired or revoked (cached ``CACHE_TTL_S``)."""
        now = self.monotonic()
        hit = self._cache.get(session_id)
        if hit is not None and now - hit[0] < CACHE_TTL_S:
            return hit[1]
        raw = await self.redis.get(self.keys("ps", session_id))
        session = PlaybackSession.from_json(raw) if raw else None
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[session_id] = (now, session)
        return session

    async def heartbeat(self, session: PlaybackSession) -> bool:
        """Mark the session as streaming (throttled); True when a write happened."""
        now = self.monotonic()
        last = self._beats.get(session.id)
        if last is not None and now - last < HEARTBEAT_EVERY_S:
            return False
        if len(self._beats) >= CACHE_MAX:
            self._beats.clear()
        self._beats[session.id] = now
        await self.redis.zadd(
            self.keys("streams", session.user_id), {session.id: self.clock()}, xx=True
        )
        return True

    async def end(self, session_id: str, *, reason: str, user_id: str | None = None) -> bool:
        """End a session now (its stream slot frees immediately); False if unknown."""
        raw = await self.redis.get(self.keys("ps", session_id))
        if raw is None:
            return False
        session = PlaybackSession.from_json(raw)
        if user_id is not None and session.user_id != user_id:
            return False
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(self.keys("ps", session_id))
            pipe.zrem(self.keys("streams", session.user_id), session_id)
            await pipe.execute()
        self._cache.pop(session_id, None)
        await self.pool.execute(
            """UPDATE playback_sessions SET ended_at = now(), ended_reason = $2
                WHERE id = $1 AND ended_at IS NULL""",
            session_id,
            reason,
        )
        return True

    async def end_family(self, family_id: str) -> None:
        """End every session started under one login (logout, refresh-token theft)."""
        ids = await self.redis.smembers(self.keys("fam-sessions", family_id))
        for raw_id in ids:
            sid = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
            await self.end(sid, reason="logout")
        await self.redis.delete(self.keys("fam-sessions", family_id))

    async def active_count(self, user_id: str) -> int:
        """Sessions of the user that are not idle."""
        return int(
            await self.redis.zcount(
                self.keys("streams", user_id), self.clock() - IDLE_WINDOW_S, "+inf"
            )
        )

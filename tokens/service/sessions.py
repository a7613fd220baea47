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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from redis.asyncio import Redis

from hls import ContentRendition
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


class SessionRefused(Exception):
    """A playback session cannot be started or continued (a domain error; each app maps
    it to a 403 with :attr:`code`)."""

    code = "session_refused"
    message = "Playback is not allowed"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or type(self).message
        super().__init__(self.message)


class StreamLimitReached(SessionRefused):
    """The plan's concurrent-stream limit is used up."""

    code = "stream_limit"
    message = "Your plan's concurrent-stream limit is reached; stop another stream first"


@dataclass(frozen=True, slots=True)
class PlannedAd:
    """One creative of a pod, and the campaign it is delivered for."""

    ad_id: str
    campaign_id: str


@dataclass(frozen=True, slots=True)
class PlannedPod:
    """An ad break decided at session start: where it goes and what plays in it."""

    index: int
    at_s: float
    ads: tuple[PlannedAd, ...]


#: A session's ad decisions, made once at playback start (empty: no ads).
AdPlan = tuple[PlannedPod, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaybackSession:
    """One viewer watching one film with one plan.

    ``renditions`` are the rendition folders the plan allows; ``content_renditions`` the
    media playlists the session's ad pods must line up across (ad sessions only);
    ``version`` the film version whose playlist templates the session plays.
    """

    id: str
    user_id: str
    movie_id: str
    plan: str
    renditions: tuple[str, ...]
    created_at: int
    expires_at: int
    version: int = 1
    max_height: int = 0
    content_renditions: tuple[ContentRendition, ...] = ()
    family_id: str | None = None
    ad_plan: AdPlan = ()
    client_ip: str | None = None
    ip_prefix: str | None = None
    user_agent: str | None = None
    country: str | None = None
    region: str | None = None
    start_offset: float | None = None

    def ad_ids(self) -> frozenset[str]:
        """Every creative planned in this session's pods."""
        return frozenset(ad.ad_id for pod in self.ad_plan for ad in pod.ads)

    def to_bytes(self) -> bytes:
        """The Redis form: a format version byte, then JSON."""
        return SESSION_FORMAT + orjson.dumps(_session_dict(self))

    @classmethod
    def from_bytes(cls, raw: bytes | str) -> PlaybackSession:
        """Read a stored session; :class:`SessionFormatError` for anything unreadable,
        so an entry written by another release is refused cleanly, never a crash."""
        data = raw.encode() if isinstance(raw, str) else raw
        try:
            if data[:1] == SESSION_FORMAT:
                return _session_from(orjson.loads(data[1:]))
            if data[:1] == b"{":  # written before the format byte existed
                return _session_from_legacy(orjson.loads(data))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise SessionFormatError(f"unreadable playback session: {err}") from err
        raise SessionFormatError(f"unknown playback session format {data[:1]!r}")

    def ad_plan_json(self) -> dict[str, Any] | None:
        """The ad plan as stored in PostgreSQL (``playback_sessions.ad_plan``)."""
        return _ad_plan_dict(self.ad_plan) if self.ad_plan else None


class SessionFormatError(ValueError):
    """A stored session this release cannot read."""


#: Version byte of the Redis encoding; bump it when a field changes meaning.
SESSION_FORMAT = b"\x01"


def _ad_plan_dict(plan: AdPlan) -> dict[str, Any]:
    return {
        "pods": [
            {
                "index": pod.index,
                "at_s": pod.at_s,
                "ads": [{"ad_id": a.ad_id, "campaign_id": a.campaign_id} for a in pod.ads],
            }
            for pod in plan
        ]
    }


def ad_plan_from_json(data: Any) -> AdPlan:
    """The typed plan from its JSON form (``{"pods": [{index, at_s, ads: [...]}]}``)."""
    if not data:
        return ()
    return tuple(
        PlannedPod(
            index=int(p["index"]),
            at_s=float(p["at_s"]),
            ads=tuple(PlannedAd(str(a["ad_id"]), str(a["campaign_id"])) for a in p["ads"]),
        )
        for p in data["pods"]
    )


def _session_dict(s: PlaybackSession) -> dict[str, Any]:
    return {
        "id": s.id,
        "user_id": s.user_id,
        "movie_id": s.movie_id,
        "plan": s.plan,
        "renditions": list(s.renditions),
        "created_at": s.created_at,
        "expires_at": s.expires_at,
        "version": s.version,
        "max_height": s.max_height,
        "content_renditions": [list(r) for r in s.content_renditions],
        "family_id": s.family_id,
        "ad_plan": _ad_plan_dict(s.ad_plan) if s.ad_plan else None,
        "client_ip": s.client_ip,
        "ip_prefix": s.ip_prefix,
        "user_agent": s.user_agent,
        "country": s.country,
        "region": s.region,
        "start_offset": s.start_offset,
    }


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _session_from(d: dict[str, Any]) -> PlaybackSession:
    offset = d.get("start_offset")
    return PlaybackSession(
        id=str(d["id"]),
        user_id=str(d["user_id"]),
        movie_id=str(d["movie_id"]),
        plan=str(d["plan"]),
        renditions=tuple(str(r) for r in d["renditions"]),
        created_at=int(d["created_at"]),
        expires_at=int(d["expires_at"]),
        version=int(d.get("version", 1)),
        max_height=int(d.get("max_height", 0)),
        content_renditions=tuple(
            ContentRendition(str(r[0]), None if r[1] is None else int(r[1]), str(r[2]))
            for r in d.get("content_renditions") or ()
        ),
        family_id=_opt_str(d.get("family_id")),
        ad_plan=ad_plan_from_json(d.get("ad_plan")),
        client_ip=_opt_str(d.get("client_ip")),
        ip_prefix=_opt_str(d.get("ip_prefix")),
        user_agent=_opt_str(d.get("user_agent")),
        country=_opt_str(d.get("country")),
        region=_opt_str(d.get("region")),
        start_offset=None if offset is None else float(offset),
    )


def _session_from_legacy(d: dict[str, Any]) -> PlaybackSession:
    """The first release kept version, height and renditions in an ``extra`` dict."""
    extra = d.pop("extra", None) or {}
    d.update({k: extra[k] for k in ("version", "max_height", "content_renditions") if k in extra})
    return _session_from(d)


def _read_session(raw: bytes | str) -> PlaybackSession | None:
    try:
        return PlaybackSession.from_bytes(raw)
    except SessionFormatError as err:
        log.warning("dropping a stored playback session: %s", err)
        return None


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
            args=[now - IDLE_WINDOW_S, max_streams, now, session.id, ttl, session.to_bytes()],
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
            orjson.dumps(session.ad_plan_json()).decode() if session.ad_plan else None,
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
        session = _read_session(raw) if raw else None
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
        session = _read_session(raw)
        if session is None:
            await self.redis.delete(self.keys("ps", session_id))
            return False
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


# ------------------------------------------------------------------ plan changes

#: Why a session was ended when its viewer's plan no longer covers it: the code its next
#: segment or playlist request is refused with, so the player can say so.
PLAN_CHANGED = "plan_changed"
ENDED_REASON_TTL_S = 24 * 3600


async def end_sessions_beyond_plan(
    store: SessionStore, user_id: str, *, allowed_plans: frozenset[str]
) -> list[str]:
    """End every live session of ``user_id`` started under a plan not in ``allowed_plans``
    (a downgrade: premium sessions when the plan falls to basic or free), and remember
    why (:func:`ended_reason`), so their next request is refused with ``plan_changed``.

    Live sessions are found in the ``streams:<user>`` set and, for sessions idle long
    enough to have left it (paused), in ``playback_sessions``. Returns the ended ids.
    """
    members = await store.redis.zrange(store.keys("streams", user_id), 0, -1)
    ids = {m.decode() if isinstance(m, bytes) else str(m) for m in members}
    rows = await store.pool.fetch(
        """SELECT id FROM playback_sessions
            WHERE user_id = $1 AND ended_at IS NULL AND expires_at > now()""",
        uuid.UUID(user_id),
    )
    ids.update(r["id"] for r in rows)
    ended: list[str] = []
    for session_id in sorted(ids):
        raw = await store.redis.get(store.keys("ps", session_id))
        session = _read_session(raw) if raw else None
        if session is None or session.user_id != user_id or session.plan in allowed_plans:
            continue
        ttl = max(1, min(ENDED_REASON_TTL_S, session.expires_at - int(store.clock())))
        await store.redis.set(store.keys("ps-ended", session_id), PLAN_CHANGED, ex=ttl)
        if await store.end(session_id, reason=PLAN_CHANGED, user_id=user_id):
            ended.append(session_id)
    return ended


async def ended_reason(store: SessionStore, session_id: str) -> str | None:
    """Why a session that is no longer live was ended, when it was for a reason the
    player should show (``plan_changed``); None otherwise."""
    raw = await store.redis.get(store.keys("ps-ended", session_id))
    if raw is None:
        return None
    return raw.decode() if isinstance(raw, bytes) else str(raw)

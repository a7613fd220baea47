"""Playback sessions: who may fetch which film's URIs until when.

Where a session lives
    Redis holds the live session (``ps:<id>``, TTL until it expires); every segment
    request reads it through a per-process cache, with no database round trip.
    PostgreSQL holds the truth: the ``playback_sessions`` row carries the session's
    stored form (``state``) and, once it ended, ``ended_at`` and the reason. Ending a
    session writes PostgreSQL first, then leaves a tombstone in Redis (``ps-end:<id>``,
    holding the reason the player is told), then announces it (below).

How a revocation reaches every process
    Every way a session ends goes through ``session_endings.evict`` (stop, logout,
    refresh-token theft, sharing, a plan change, a film or account ended, the
    ``kush worker`` sweep), which PUBLISHes the ended ids on ``ps-changed`` after its
    writes; so do the two other changes of a stored form outside start and rebuild (a
    tombstone put back from PostgreSQL, an unreadable ``ps:<id>`` deleted). Each gateway
    process subscribes (:meth:`SessionStore.start`, one background task) and drops the
    announced ids from its cache; their next lookup reads Redis and finds the tombstone.
    While that subscription is confirmed, a cached lookup lives ``cache_s``
    (``KUSH_SESSION_CACHE_S``, 30 s) and a rotated session costs no Redis round trip; a
    session ended anywhere is refused by every process once the message arrives (one
    pub/sub delivery). A lookup that overlapped any announcement (its read may predate
    the ending it announced) is trusted only ``CACHE_TTL_S``. On a cluster PUBLISH
    reaches the subscribers of every node.

    Not confirmed (starting, connection lost, reconnecting, or a store never started:
    scripts, the admin service): lookups are cached ``CACHE_TTL_S`` (0.5 s), as before
    the subscriber existed, so the bound is 0.5 s. Every (re)subscription empties the
    cache (messages sent meanwhile are lost). If the Redis half of an ending fails
    while a process still counts itself subscribed, the ``kush worker`` sweep (every
    2 s) applies it and announces it again.

    The sentinel: the subscriber checks a key (``ps-sentinel``, one per primary node on
    a cluster) every ``CACHE_TTL_S`` (``SET NX`` and ``GET``, one round trip); when it is
    gone or holds another process's value, Redis lost its data (below) and the cache is
    emptied, so a cached session is read again, rebuilt and counted in the stream limit
    within ``CACHE_TTL_S`` as before. A failed check ends the subscription (0.5 s mode)
    but keeps the cache, which the grace below needs.

Redis lost its data (restart without persistence, failover, FLUSHALL)
    A miss in Redis is answered from PostgreSQL: a live row is put back into Redis
    (unless a tombstone appeared meanwhile) and its next heartbeat re-enters the
    stream set under the limit; an ended row stays ended (its tombstone is put back).
    A revocation therefore never comes back to life.

Redis is down
    Segments of a session this process checked successfully within ``grace_s``
    (``KUSH_SESSION_GRACE_S``, 30 s) keep playing; past that, PostgreSQL answers the
    same question (is the row still live?). This is safe because every way a session
    ends (stop, logout, refresh-token theft, sharing) writes ``ended_at`` to PostgreSQL
    first, revocations in the same transaction as the revoked token or login, so a
    session ended during the outage is refused at most ``grace_s`` after this process
    last checked it, and ``kush worker`` removes it from Redis when Redis is back. The
    grace is bounded, per process, and only extends a session that was live moments ago.
    Starting a session needs Redis (the stream limit lives there): 503 + ``Retry-After``.
    During the outage heartbeats are skipped: the stream limit and the network count
    resume when Redis does.

Concurrent streams
    ``streams:<user>`` is a sorted set of session ids scored by their last heartbeat; a
    session idle for ``idle_s`` (``KUSH_STREAM_IDLE_S``, 120 s) no longer counts.
    Starting a stream beyond the plan's limit is refused (``stream_limit``) rather than
    ending the oldest: on a shared family phone, silently killing someone else's film is
    the worse surprise. A paused stream that resumes goes through the same atomic script
    (prune idle, check the limit, add): beyond the limit its segments are refused with
    ``stream_limit`` until a slot frees. Heartbeats are throttled per process to one per
    ``min(HEARTBEAT_EVERY_S, idle_s / 4)`` per session and network: a session whose last
    successful heartbeat from this process is younger than that cannot have been pruned
    as idle, and a refused heartbeat is never remembered, so every later segment checks
    again.

Redis Cluster
    The keys above (built in ``session_endings``) carry the user's shard as their hash tag
    (``{u:XYZ}``, ``runtime/redis.py``) and every session id begins with it
    (:func:`session_id_for`), so each script's keys share one slot although a segment
    request knows only the session id.

Shared manifests
    Each heartbeat also adds the client's network (/24 for IPv4, /48 for IPv6) to
    ``ps-net:<id>``; a session seen from more than ``max_networks``
    (``KUSH_MAX_NETWORKS_PER_SESSION``, 3: a phone moves between Wi-Fi and mobile data)
    ends with the reason ``session_shared``, which its next segment reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import RedisError

from runtime.redis import Keys, session_shard, user_shard
from tokens.segment import is_session_id, new_session_id
from tokens.service.playback_session import (
    PlaybackSession,
    SessionFormatError,
)
from tokens.service.session_endings import (
    FILM_UNAVAILABLE,
    PAYMENT_NOT_CONFIRMED,
    PLAN_CHANGED,
    changed_channel,
    ended_key,
    evict,
    eviction_rows,
    networks_key,
    publish_changed,
    session_key,
    streams_key,
)

log = logging.getLogger(__name__)

#: how long a cached lookup is trusted while revocations are not pushed (the subscriber
#: is not running or not confirmed healthy), and how often the subscriber checks the
#: sentinel
CACHE_TTL_S = 0.5
#: how long a cached lookup is trusted while the subscriber is healthy
#: (``KUSH_SESSION_CACHE_S``)
SESSION_CACHE_S = 30.0
CACHE_MAX = 20_000
#: how often, and how long each time, :meth:`SessionStore.close` cancels the subscriber
STOP_ATTEMPTS = 20
STOP_WAIT_S = 0.25
#: the subscriber's wait before it connects again after an error
RESUBSCRIBE_BACKOFF_S = (0.5, 5.0)
HEARTBEAT_EVERY_S = 15.0
IDLE_WINDOW_S = 120
GRACE_S = 30.0
MAX_NETWORKS = 3
FAMILY_INDEX_TTL_S = 7 * 24 * 3600
#: after a Redis error, session lookups skip Redis this long (no connect attempt per
#: segment while it is down)
REDIS_BACKOFF_S = 1.0
PG_LOOKUP_TIMEOUT_S = 2.0
SHARED = "session_shared"

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

# A heartbeat: count the client's network, then the same "prune idle, check, add" as a
# start, so a session pruned while paused is admitted again only under the limit.
# KEYS: streams:<user>, ps:<id>, ps-net:<id>
# ARGV: idle cutoff, max streams, now, session id, ttl, network ('' = none), max networks
# Returns 1 counted, 0 over the stream limit, -1 session gone, -2 too many networks.
_BEAT_LUA = """
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
if ARGV[6] ~= '' then
  redis.call('SADD', KEYS[3], ARGV[6])
  redis.call('EXPIRE', KEYS[3], ARGV[5])
  if redis.call('SCARD', KEYS[3]) > tonumber(ARGV[7]) then return -2 end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[4]) then
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""

# Put a session rebuilt from PostgreSQL back, unless it ended meanwhile (tombstone), and
# count it again in its user's stream set if it fits the limit (if not, its next
# heartbeat refuses it: the stream set was lost, first come first served).
# KEYS: ps:<id>, ps-end:<id>, streams:<user>
# ARGV: stored form, ttl, idle cutoff, max streams, now, session id
_REPRIME_LUA = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[3])
if redis.call('ZSCORE', KEYS[3], ARGV[6]) or redis.call('ZCARD', KEYS[3]) < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[6])
  redis.call('EXPIRE', KEYS[3], ARGV[2])
end
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


class SessionGone(SessionRefused):
    """The session ended (stopped, revoked, expired); :attr:`reason` says why, when
    known."""

    code = "session_revoked"
    message = "This playback session has ended"

    def __init__(self, reason: str | None = None) -> None:
        super().__init__()
        self.reason = reason


class SessionShared(SessionGone):
    """Ended because its URLs were played from too many networks at once."""

    code = SHARED
    message = "This playback was opened on too many networks; start it again on this device"


class FilmWithdrawn(SessionGone):
    """Ended because its film was unpublished or taken down."""

    code = "film_unavailable"
    message = "This film is no longer available"


class PlanNoLongerCovers(SessionGone):
    """Ended because the viewer's plan changed and no longer covers the session."""

    code = "plan_changed"
    message = "Your plan changed and no longer includes this quality; start the film again"


class PaymentNotConfirmed(SessionGone):
    """Ended because provisional access ran out and the mobile money payment was not
    confirmed (declined, failed, or not approved in time)."""

    code = PAYMENT_NOT_CONFIRMED
    message = (
        "Your mobile money payment was not confirmed, so the access it started has ended; "
        "pay again or keep watching on the free plan"
    )


def gone(reason: str | None) -> SessionGone:
    """The error a request for a session that ended for ``reason`` gets."""
    if reason == SHARED:
        return SessionShared(reason)
    if reason == FILM_UNAVAILABLE:
        return FilmWithdrawn(reason)
    if reason == PLAN_CHANGED:
        return PlanNoLongerCovers(reason)
    if reason == PAYMENT_NOT_CONFIRMED:
        return PaymentNotConfirmed(reason)
    return SessionGone(reason)


def session_id_for(user_id: str) -> str:
    """A new playback session id for ``user_id``: it begins with the user's Redis shard,
    so the session's keys share a Redis Cluster slot with the user's stream set."""
    return new_session_id(lead=user_shard(user_id))


def _read_session(raw: bytes | str) -> PlaybackSession | None:
    try:
        return PlaybackSession.from_bytes(raw)
    except SessionFormatError as err:
        log.warning("dropping a stored playback session: %s", err)
        return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _uuid(value: str | None) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


#: (checked at, monotonic; the session, or None; why it ended, when known; whether it
#: may live ``cache_s``: False when a change was pushed while it was being read)
_Seen = tuple[float, PlaybackSession | None, str | None, bool]

_ROW_SQL = """SELECT user_id, state, expires_at, ended_at, ended_reason
                FROM playback_sessions WHERE id = $1"""


class SessionStore:
    """Create, read (cached, rebuilt from PostgreSQL), heartbeat and end sessions."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: Redis,
        keys: Keys,
        *,
        idle_s: float = IDLE_WINDOW_S,
        max_networks: int = MAX_NETWORKS,
        grace_s: float = GRACE_S,
        cache_s: float = SESSION_CACHE_S,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.redis = redis
        self.keys = keys
        self.idle_s = idle_s
        self.max_networks = max_networks
        self.grace_s = grace_s
        self.cache_s = max(cache_s, CACHE_TTL_S)
        self.beat_every_s = min(HEARTBEAT_EVERY_S, idle_s / 4)
        self.clock = clock
        self.monotonic = monotonic
        self._cache: dict[str, _Seen] = {}
        # session id -> (its stored form, decoded): a re-read that finds the same bytes in
        # Redis (the usual case) skips decoding them again
        self._decoded: dict[str, tuple[bytes, PlaybackSession]] = {}
        # lookups waiting for the next shared MGET, and the MGETs in flight
        self._reads: list[tuple[str, asyncio.Future[tuple[Any, Any]]]] | None = None
        self._flights: set[asyncio.Future[None]] = set()
        # session id -> network -> when this process last counted it (monotonic)
        self._beats: dict[str, dict[str, float]] = {}
        self._redis_down_until = 0.0
        # pushed revocations (start()): while ``_pushed``, cache entries live ``cache_s``;
        # ``_changes`` counts the changes pushed (and cache clears), so a lookup that
        # overlapped one is cached only ``CACHE_TTL_S``
        self._pushed = False
        self._changes = 0
        self._subscriptions = 0  # confirmed so far
        # (key, value) of each sentinel key at the last check
        self._sentinel_seen: tuple[tuple[str, str], ...] | None = None
        self._sentinel_found: list[str] = []
        self._follower: asyncio.Task[None] | None = None
        self._stopping = False
        self._create = redis.register_script(_CREATE_LUA)
        self._beat = redis.register_script(_BEAT_LUA)
        self._reprime = redis.register_script(_REPRIME_LUA)

    # ------------------------------------------------------------ pushed changes

    async def start(self) -> None:
        """Follow the sessions changed in Redis (one subscriber per process, in the
        background), so a cached lookup may live ``cache_s`` while that works. A store
        never started (scripts, the admin service) caches ``CACHE_TTL_S``."""
        if self._follower is None and self.cache_s > CACHE_TTL_S:
            self._stopping = False
            self._follower = asyncio.create_task(self._follow(), name="session-changes")

    async def close(self) -> None:
        """Stop following changes (cached lookups live ``CACHE_TTL_S`` again)."""
        task, self._follower = self._follower, None
        self._pushed = False
        if task is None:
            return
        self._stopping = True
        # A cancellation that lands as redis-py's read timeout fires can be swallowed
        # (the read reports a timeout, the loop goes on and blocks in its next read: a
        # test app's teardown hung on it), so cancel again until it ends, bounded.
        for _ in range(STOP_ATTEMPTS):
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=STOP_WAIT_S)
            if done:
                if not task.cancelled() and task.exception() is not None:
                    log.warning("session changes: subscriber ended with an error")
                return
        log.warning("session changes: the subscriber did not stop")

    @property
    def pushed(self) -> bool:
        """Whether changes are pushed to this process right now (cache ``cache_s``)."""
        return self._pushed

    def _clear(self) -> None:
        self._changes += 1
        self._cache.clear()
        self._decoded.clear()

    def _drop(self, payload: bytes | str) -> None:
        """A pushed message: these sessions changed; their next lookup reads Redis."""
        self._changes += 1
        for session_id in _text(payload).split():
            self._cache.pop(session_id, None)
            self._decoded.pop(session_id, None)

    async def _follow(self) -> None:
        """Subscribe, and subscribe again after any failure (with a growing pause);
        cached lookups live ``cache_s`` only while a subscription is confirmed."""
        pause = RESUBSCRIBE_BACKOFF_S[0]
        while not self._stopping:
            confirmed = self._subscriptions
            try:
                await self._subscribed()
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("session changes: not subscribed (%s)", type(exc).__name__)
            except Exception:
                log.exception("session changes: subscriber failed")
            if self._subscriptions != confirmed:
                pause = RESUBSCRIBE_BACKOFF_S[0]  # it had worked: try again soon
            await asyncio.sleep(pause)
            pause = min(pause * 2, RESUBSCRIBE_BACKOFF_S[1])

    async def _subscribed(self) -> None:
        """One subscription, until it fails: each confirmation (the first, and the one
        redis-py's silent reconnect brings) clears the cache, since messages may have
        been missed; the sentinel is checked every ``CACHE_TTL_S``."""
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(changed_channel(self.keys))
            check_at: float | None = None  # not confirmed yet
            while not self._stopping:
                wait = CACHE_TTL_S if check_at is None else check_at - time.monotonic()
                message = await pubsub.get_message(timeout=max(0.0, wait))
                if message is not None and message["type"] == "message":
                    self._drop(message["data"])
                elif message is not None and message["type"] == "subscribe":
                    self._pushed = False
                    await self._check_sentinel()
                    self._clear()
                    self._pushed = True
                    self._subscriptions += 1
                    check_at = time.monotonic() + CACHE_TTL_S
                if check_at is not None and time.monotonic() >= check_at:
                    await self._check_sentinel()
                    check_at = time.monotonic() + CACHE_TTL_S
        finally:
            self._pushed = False
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _check_sentinel(self) -> None:
        """Clear the cache when Redis lost its data (a restart without persistence, a
        failover to an empty replica, FLUSHALL): the sentinel key it held is gone, or
        holds what another process put back. Cached sessions would otherwise play on
        ``cache_s`` without being counted in the stream set the loss emptied."""
        token = secrets.token_hex(8)
        keys = self._sentinel_keys()
        # SET NX, then GET: Redis 6.2 (the embedded one of `make up`) has no SET NX GET
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(key, token, nx=True)
                pipe.get(key)
            found = await pipe.execute()
        seen = tuple(
            (key, token if value is None else _text(value))
            for key, value in zip(keys, found[1::2], strict=True)
        )
        if seen != self._sentinel_seen:
            if self._sentinel_seen is not None:
                log.warning("session cache cleared: Redis lost its data")
            self._clear()
            self._sentinel_seen = seen

    def _sentinel_keys(self) -> list[str]:
        """The sentinel: one key, or on Redis Cluster one per primary node (each can
        lose its data alone), found by trying hash tags until every node has one."""
        cluster: Any = self.redis
        if not isinstance(cluster, RedisCluster):
            return [self.keys("ps-sentinel")]
        owners = cluster.nodes_manager.slots_cache
        wanted = {node.name for node in cluster.get_primaries()}

        def owner(key: str) -> str | None:
            holders = owners.get(key_slot(key.encode()))
            return str(holders[0].name) if holders else None

        known = self._sentinel_found
        if {owner(key) for key in known} == wanted and len(known) == len(wanted):
            return known  # the topology did not change
        found: dict[str, str] = {}
        for n in range(REDIS_CLUSTER_HASH_SLOTS * 4):
            if len(found) == len(wanted):
                break
            key = self.keys.tagged(f"ps-sentinel-{n}", "ps-sentinel")
            name = owner(key)
            if name in wanted:
                found.setdefault(name, key)
        self._sentinel_found = sorted(found.values())
        return self._sentinel_found

    # ------------------------------------------------------------ start

    async def create(self, session: PlaybackSession) -> None:
        """Store a new session, refusing it when the plan's stream limit is reached.

        Its id must come from :func:`session_id_for` (its user's shard first)."""
        if session_shard(session.id) != user_shard(session.user_id):
            raise ValueError("a playback session id must begin with its user's shard")
        now = self.clock()
        ttl = max(1, session.expires_at - int(now))
        ok = await self._create(
            keys=[streams_key(self.keys, session.user_id), session_key(self.keys, session.id)],
            args=[now - self.idle_s, session.max_streams, now, session.id, ttl, session.to_bytes()],
            client=self.redis,
        )
        if not ok:
            raise StreamLimitReached()
        try:
            if session.family_id:
                # read by releases that end a login's sessions from Redis alone
                fam_key = self.keys("fam-sessions", session.family_id)
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.sadd(fam_key, session.id)
                    pipe.expire(fam_key, FAMILY_INDEX_TTL_S)
                    await pipe.execute()
            await self.pool.execute(
                """INSERT INTO playback_sessions (id, user_id, movie_id, plan_id, renditions,
                       ad_plan, client_ip, user_agent, country, expires_at, region, state,
                       family_id)
                   VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11, $12, $13)""",
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
                session.to_bytes(),
                _uuid(session.family_id),
            )
        except Exception:
            # not recorded in PostgreSQL: never handed out, so it must not hold a slot
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.delete(session_key(self.keys, session.id))
                    pipe.zrem(streams_key(self.keys, session.user_id), session.id)
                    await pipe.execute()
            except RedisError:
                log.warning("could not take back a half-started playback session")
            raise

    # ------------------------------------------------------------ read

    async def live(self, session_id: str) -> PlaybackSession:
        """The live session; :class:`SessionGone` (with the reason) when it ended.

        Cached ``cache_s`` while changes are pushed (:meth:`start`), else
        ``CACHE_TTL_S``; a Redis miss is answered from PostgreSQL; while Redis is down,
        see the module docstring (grace, then PostgreSQL)."""
        now = self.monotonic()
        seen = self._cache.get(session_id)
        if seen is not None and self._fresh(seen, now):
            return _alive(seen)
        changes = self._changes
        if now >= self._redis_down_until:
            try:
                session, reason = await self._lookup(session_id)
            except RedisError as exc:
                self._redis_down_until = now + REDIS_BACKOFF_S
                log.warning("playback sessions: Redis unavailable (%s)", type(exc).__name__)
            else:
                return _alive(self._remember(session_id, now, session, reason, changes))
        if seen is not None and seen[1] is not None and now - seen[0] < self.grace_s:
            return seen[1]  # checked moments ago: keep playing through the outage
        session, reason = self._from_row(await self._row(session_id))
        return _alive(self._remember(session_id, now, session, reason, changes))

    def _fresh(self, seen: _Seen, now: float) -> bool:
        """Whether a cached lookup may answer now: ``cache_s`` old at most while changes
        are pushed and none overlapped it, else ``CACHE_TTL_S``; never a session past its
        expiry (Redis dropped it: read again)."""
        ttl = self.cache_s if self._pushed and seen[3] else CACHE_TTL_S
        return now - seen[0] < ttl and (seen[1] is None or seen[1].expires_at > self.clock())

    async def get(self, session_id: str) -> PlaybackSession | None:
        """The live session, or None when it ended or expired."""
        try:
            return await self.live(session_id)
        except SessionGone:
            return None

    def _remember(
        self,
        session_id: str,
        now: float,
        session: PlaybackSession | None,
        reason: str | None,
        changes: int,
    ) -> _Seen:
        """Cache a lookup that began when ``_changes`` was ``changes``: if a change was
        pushed meanwhile (perhaps this very session's, announced after our read), the
        answer is trusted only ``CACHE_TTL_S``."""
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        seen = (now, session, reason, changes == self._changes)
        self._cache[session_id] = seen
        return seen

    async def _lookup(self, session_id: str) -> tuple[PlaybackSession | None, str | None]:
        raw, ended = await self._read_stored(session_id)
        if ended is not None:
            return None, _text(ended)
        if raw is not None:
            return self._decode(session_id, raw)
        return await self._rebuild(session_id)

    async def _read_stored(self, session_id: str) -> tuple[Any, Any]:
        """``ps:<id>`` and ``ps-end:<id>`` as Redis has them now.

        Lookups that start in the same event-loop turn share one pipelined round trip
        (every request that is ready runs before the callback that sends it): under load
        one round trip answers several segment and playlist requests, each still reading
        Redis after it arrived, so nothing is answered from older data than a lookup of
        its own would."""
        future: asyncio.Future[tuple[Any, Any]] = asyncio.get_running_loop().create_future()
        batch = self._reads
        if batch is None:
            batch = self._reads = []
            asyncio.get_running_loop().call_soon(self._send_reads)
        batch.append((session_id, future))
        return await future

    def _send_reads(self) -> None:
        batch, self._reads = self._reads or [], None
        task = asyncio.ensure_future(self._mget(batch))
        self._flights.add(task)
        task.add_done_callback(self._flights.discard)

    async def _mget(self, batch: list[tuple[str, asyncio.Future[tuple[Any, Any]]]]) -> None:
        try:
            # two GETs per session, all in one pipelined round trip (not MGET: a Redis
            # Cluster client refuses multi-key commands inside a pipeline, and GETs
            # need no shared slot)
            async with self.redis.pipeline(transaction=False) as pipe:
                for session_id, _ in batch:
                    pipe.get(session_key(self.keys, session_id))
                    pipe.get(ended_key(self.keys, session_id))
                flat = await pipe.execute()
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # every waiter gets the error (RedisError: an outage)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        values = zip(flat[0::2], flat[1::2], strict=True)
        for (_, future), (raw, ended) in zip(batch, values, strict=True):
            if not future.done():  # its request may have been cancelled meanwhile
                future.set_result((raw, ended))

    def _decode(
        self, session_id: str, raw: bytes | str
    ) -> tuple[PlaybackSession | None, str | None]:
        """The stored form read from Redis, decoded (once per distinct stored form)."""
        data = raw.encode() if isinstance(raw, str) else raw
        known = self._decoded.get(session_id)
        if known is not None and known[0] == data:
            return known[1], None
        session = _read_session(data)
        if session is None:
            return None, "unreadable"
        if len(self._decoded) >= CACHE_MAX:
            self._decoded.clear()
        self._decoded[session_id] = (data, session)
        return session, None

    async def _row(self, session_id: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(_ROW_SQL, session_id, timeout=PG_LOOKUP_TIMEOUT_S)

    def _from_row(self, row: asyncpg.Record | None) -> tuple[PlaybackSession | None, str | None]:
        """What a PostgreSQL row says: the live session, or why it is not."""
        if row is None:
            return None, None
        if row["ended_at"] is not None:
            return None, row["ended_reason"] or "ended"
        if row["expires_at"].timestamp() <= self.clock() or row["state"] is None:
            return None, None
        return _read_session(bytes(row["state"])), None

    async def _rebuild(self, session_id: str) -> tuple[PlaybackSession | None, str | None]:
        """Redis does not know the session: PostgreSQL decides, and Redis learns it."""
        row = await self._row(session_id)
        session, reason = self._from_row(row)
        if row is None or (session is None and reason is None):
            return None, None
        ttl = int(row["expires_at"].timestamp() - self.clock())
        if ttl <= 0:
            return None, reason
        if session is None:
            await self.redis.set(ended_key(self.keys, session_id), reason or "ended", ex=ttl)
            await publish_changed(self.redis, self.keys, [session_id])
            return None, reason
        wall = self.clock()
        primed = await self._reprime(
            keys=[
                session_key(self.keys, session_id),
                ended_key(self.keys, session_id),
                streams_key(self.keys, session.user_id),
            ],
            args=[
                session.to_bytes(),
                ttl,
                wall - self.idle_s,
                session.max_streams,
                wall,
                session_id,
            ],
            client=self.redis,
        )
        if not primed:  # ended while we were reading
            ended = await self.redis.get(ended_key(self.keys, session_id))
            return None, _text(ended) if ended is not None else "ended"
        # its next heartbeat from this process goes through the limit check again
        self._beats.pop(session_id, None)
        log.info("playback session restored from PostgreSQL")
        return session, None

    # ------------------------------------------------------------ heartbeat

    async def heartbeat(self, session: PlaybackSession, network: str | None = None) -> bool:
        """Count the session as streaming from ``network`` (throttled per process);
        True when a write happened.

        Raises :class:`StreamLimitReached` when a resumed stream does not fit the plan's
        limit, :class:`SessionShared` (after ending the session) when it was played
        from too many networks. Skipped while Redis is down."""
        now = self.monotonic()
        beats = self._beats.get(session.id)
        last = beats.get(network or "") if beats is not None else None
        if last is not None and now - last < self.beat_every_s:
            return False
        if now < self._redis_down_until:
            return False
        wall = self.clock()
        try:
            result = await self._beat(
                keys=[
                    streams_key(self.keys, session.user_id),
                    session_key(self.keys, session.id),
                    networks_key(self.keys, session.id),
                ],
                args=[
                    wall - self.idle_s,
                    session.max_streams,
                    wall,
                    session.id,
                    max(1, session.expires_at - int(wall)),
                    network or "",
                    self.max_networks,
                ],
                client=self.redis,
            )
        except RedisError as exc:
            self._redis_down_until = now + REDIS_BACKOFF_S
            log.warning("heartbeat skipped: Redis unavailable (%s)", type(exc).__name__)
            return False
        if result == 0:
            raise StreamLimitReached()
        if result == -2:
            await self._end_shared(session)
            raise SessionShared(SHARED)
        if result == -1:  # ended (or lost) since it was read: the next read decides
            self._cache.pop(session.id, None)
            return False
        if beats is None:
            if len(self._beats) >= CACHE_MAX:
                self._beats.clear()
            beats = self._beats[session.id] = {}
        beats[network or ""] = now
        return True

    async def _end_shared(self, session: PlaybackSession) -> None:
        log.warning("playback session played from too many networks: ended")
        try:
            await self.end(session.id, reason=SHARED)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            # PostgreSQL is unreachable: stop it in Redis now; the next heartbeat after
            # a rebuild finds the same networks and tries again
            await evict(
                self.redis,
                self.keys,
                [(session.id, session.user_id, session.expires_at, SHARED)],
                self.clock(),
            )
            self._cache.pop(session.id, None)

    # ------------------------------------------------------------ end

    async def end(self, session_id: str, *, reason: str, user_id: str | None = None) -> bool:
        """End a session now (its stream slot frees immediately); False if unknown,
        already ended or someone else's. PostgreSQL first (the truth), then Redis; if
        Redis fails, ``kush worker`` removes it there."""
        if not is_session_id(session_id):  # from a URL: no key can be built from it
            return False
        try:
            raw = await self.redis.get(session_key(self.keys, session_id))
        except RedisError:
            raw = None
        if raw is not None:
            session = _read_session(raw)
            if session is None:
                await self.redis.delete(session_key(self.keys, session_id))
                await publish_changed(self.redis, self.keys, [session_id])
                return False
            if user_id is not None and session.user_id != user_id:
                return False
        row = await self.pool.fetchrow(
            """UPDATE playback_sessions SET ended_at = now(), ended_reason = $2
                WHERE id = $1 AND ended_at IS NULL AND expires_at > now()
                  AND ($3::uuid IS NULL OR user_id = $3)
            RETURNING user_id, expires_at""",
            session_id,
            reason,
            _uuid(user_id),
        )
        if row is None:
            return False
        self._cache.pop(session_id, None)
        self._decoded.pop(session_id, None)
        self._beats.pop(session_id, None)
        expires = int(row["expires_at"].timestamp())
        try:
            await evict(
                self.redis,
                self.keys,
                [(session_id, str(row["user_id"]), expires, reason)],
                self.clock(),
            )
        except RedisError as exc:
            log.warning(
                "session ended; Redis not updated (%s): the worker will", type(exc).__name__
            )
        return True

    async def end_family(self, family_id: str) -> None:
        """Take every session of one login (logout, refresh-token theft) out of Redis.

        The revocation ended them in PostgreSQL in its own transaction
        (:func:`end_family_sessions`); sessions an older release indexed only in Redis
        are ended here."""
        fam = _uuid(family_id)
        if fam is not None:
            rows = await self.pool.fetch(
                """SELECT id, user_id, expires_at, ended_reason FROM playback_sessions
                    WHERE family_id = $1 AND ended_at IS NOT NULL AND expires_at > now()""",
                fam,
            )
            await evict(self.redis, self.keys, eviction_rows(rows), self.clock())
            for r in rows:
                self._cache.pop(r["id"], None)
        fam_key = self.keys("fam-sessions", family_id)
        for raw_id in await self.redis.smembers(fam_key):
            await self.end(_text(raw_id), reason="logout")
        await self.redis.delete(fam_key)

    async def active_count(self, user_id: str) -> int:
        """Sessions of the user that are not idle."""
        return int(
            await self.redis.zcount(
                streams_key(self.keys, user_id), self.clock() - self.idle_s, "+inf"
            )
        )


def _alive(seen: _Seen) -> PlaybackSession:
    if seen[1] is None:
        raise gone(seen[2])
    return seen[1]


# ------------------------------------------------------------------ plan changes


async def end_sessions_beyond_plan(
    store: SessionStore,
    user_id: str,
    *,
    allowed_plans: frozenset[str],
    reason: str = PLAN_CHANGED,
) -> list[str]:
    """End every live session of ``user_id`` started under a plan not in ``allowed_plans``
    (a downgrade: premium sessions when the plan falls to basic or free), their next
    request is refused with ``plan_changed`` (the session's tombstone keeps the reason).

    Live sessions are found in the ``streams:<user>`` set and, for sessions idle long
    enough to have left it (paused), in ``playback_sessions``. Returns the ended ids.
    """
    members = await store.redis.zrange(streams_key(store.keys, user_id), 0, -1)
    ids = {m.decode() if isinstance(m, bytes) else str(m) for m in members}
    rows = await store.pool.fetch(
        """SELECT id FROM playback_sessions
            WHERE user_id = $1 AND ended_at IS NULL AND expires_at > now()""",
        uuid.UUID(user_id),
    )
    ids.update(r["id"] for r in rows)
    ended: list[str] = []
    for session_id in sorted(ids):
        raw = await store.redis.get(session_key(store.keys, session_id))
        session = _read_session(raw) if raw else None
        if session is None or session.user_id != user_id or session.plan in allowed_plans:
            continue
        if await store.end(session_id, reason=reason, user_id=user_id):
            ended.append(session_id)
    return ended

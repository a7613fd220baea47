"""Ending playback sessions outside a request: a film withdrawn, an account erased or
disabled, a login revoked, and the worker's sweep that applies to Redis what PostgreSQL
recorded. PostgreSQL is written first (the record), then Redis (the fast path)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from datetime import datetime

import asyncpg
from redis.asyncio import Redis

from runtime.redis import Keys

#: The reason a film's sessions end when it is unpublished or taken down; their next
#: request is refused with this code, which the player can show.
FILM_UNAVAILABLE = "film_unavailable"
#: Why a session ends when its viewer's plan no longer covers it (a downgrade, a failed
#: payment past its grace): the code its next request is refused with.
PLAN_CHANGED = "plan_changed"
#: Why a session ends when provisional access (while a mobile money payment was pending)
#: ran out without the payment being confirmed: declined, failed or never approved.
PAYMENT_NOT_CONFIRMED = "payment_not_confirmed"


def _uuid(value: str | None) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


# -- the Redis keys of playback sessions ----------------------------------------------
# A user's keys and the keys of each of the user's sessions carry the user's shard as
# their hash tag ({u:XYZ}, runtime/redis.py): the session scripts touch them together,
# so on Redis Cluster they must share a slot.


def streams_key(keys: Keys, user_id: str) -> str:
    """The user's live streams: session ids scored by their last heartbeat."""
    return keys.for_user(user_id, "streams", user_id)


def session_key(keys: Keys, session_id: str) -> str:
    """The live session's stored form (expires with it)."""
    return keys.for_session(session_id, "ps", session_id)


def ended_key(keys: Keys, session_id: str) -> str:
    """The ended session's tombstone: why it ended."""
    return keys.for_session(session_id, "ps-end", session_id)


def networks_key(keys: Keys, session_id: str) -> str:
    """The networks (/24, /48) the session was played from."""
    return keys.for_session(session_id, "ps-net", session_id)


def changed_channel(keys: Keys) -> str:
    """The pub/sub channel that names sessions whose stored form changed (ended,
    removed): every gateway process drops them from its session cache. A channel, not a
    key: on Redis Cluster a PUBLISH reaches the subscribers of every node."""
    return keys("ps-changed")


#: session ids per message (a film taken down may end thousands at once)
PUBLISH_CHUNK = 500


async def publish_changed(redis: Redis, keys: Keys, session_ids: Iterable[str]) -> None:
    """Tell every gateway process that these sessions changed in Redis (space-separated
    ids). Call it after the writes it announces: a process that drops its entry and
    reads again must find them."""
    ids = list(session_ids)
    for start in range(0, len(ids), PUBLISH_CHUNK):
        await redis.publish(changed_channel(keys), " ".join(ids[start : start + PUBLISH_CHUNK]))


#: (session id, user id, expires at in unix seconds, reason)
Eviction = tuple[str, str, int, str]


def eviction_rows(rows: Iterable[asyncpg.Record]) -> list[Eviction]:
    return [
        (
            r["id"],
            str(r["user_id"]),
            int(r["expires_at"].timestamp()),
            r["ended_reason"] or "ended",
        )
        for r in rows
    ]


async def evict(redis: Redis, keys: Keys, ended: Iterable[Eviction], now: float) -> int:
    """Remove ended sessions from Redis: the tombstone (with the reason) first, so a
    reader never finds neither, then the session, its stream slot and network set; then
    announce them on :func:`changed_channel`, once every write is done (a cluster
    pipeline runs its nodes' parts in parallel, so the PUBLISH is not part of it).
    Returns how many."""
    evicted: list[str] = []
    async with redis.pipeline(transaction=False) as pipe:
        for session_id, user_id, expires_at, reason in ended:
            ttl = int(expires_at - now)
            if ttl <= 0:
                continue
            pipe.set(ended_key(keys, session_id), reason, ex=ttl)
            pipe.delete(session_key(keys, session_id), networks_key(keys, session_id))
            pipe.zrem(streams_key(keys, user_id), session_id)
            evicted.append(session_id)
        if evicted:
            await pipe.execute()
    await publish_changed(redis, keys, evicted)
    return len(evicted)


async def end_family_sessions(conn: asyncpg.Connection, family_id: str, reason: str) -> None:
    """Record in PostgreSQL that every live session of one login ended; call it inside
    the transaction that revokes the login, so the two can never part."""
    fam = _uuid(family_id)
    if fam is None:
        return
    await conn.execute(
        """UPDATE playback_sessions SET ended_at = now(), ended_reason = $2
            WHERE family_id = $1 AND ended_at IS NULL""",
        fam,
        reason,
    )


async def sweep_ended_sessions(
    pool: asyncpg.Pool, redis: Redis, keys: Keys, *, since: datetime | None, now: float
) -> int:
    """Remove from Redis every unexpired session PostgreSQL says ended after ``since``
    (all of them when None): the ``kush worker`` half of ending a session whose Redis
    write failed."""
    rows = await pool.fetch(
        """SELECT id, user_id, expires_at, ended_reason FROM playback_sessions
            WHERE ended_at IS NOT NULL AND ($1::timestamptz IS NULL OR ended_at > $1)
              AND expires_at > now()""",
        since,
    )
    return await evict(redis, keys, eviction_rows(rows), now)


# ------------------------------------------------------------------ ending by film or account

_ENDED_BY = {"movie": "movie_id", "user": "user_id"}


async def end_sessions_of(
    pool: asyncpg.Pool, redis: Redis, keys: Keys, *, owner: str, owner_id: str, reason: str
) -> int:
    """End every live session of one film (``owner="movie"``: unpublished, taken down)
    or one account (``owner="user"``: erased, disabled); returns how many.

    PostgreSQL first (the record), then Redis: the session key goes, its stream slot
    frees, and a tombstone ``ps-end:<id>`` keeps ``reason`` until the session would have
    expired, so the next request of the session is told why (:func:`gone`).
    Gateway processes drop it from their session caches when :func:`evict` announces it
    (``tokens/service/sessions.py``, "Where a session lives"). A session started while
    this runs cannot play: its master playlist needs the film published (or the account
    enabled) at that moment."""
    column = _ENDED_BY[owner]
    rows = await pool.fetch(
        f"""UPDATE playback_sessions SET ended_at = now(), ended_reason = $2
             WHERE {column} = $1 AND ended_at IS NULL AND expires_at > now()
         RETURNING id, user_id, expires_at""",  # noqa: S608 (a fixed column name)
        uuid.UUID(owner_id),
        reason,
    )
    await evict(
        redis,
        keys,
        [(r["id"], str(r["user_id"]), int(r["expires_at"].timestamp()), reason) for r in rows],
        time.time(),
    )
    return len(rows)

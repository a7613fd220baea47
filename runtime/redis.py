"""The Redis client and the key prefix every key goes through.

Redis Cluster rule: keys that one Lua script, one multi-key command (MGET, a DEL of
several keys) or one transaction touches together must live in one hash slot, so each
such group shares a hash tag, the ``{...}`` part of the key that alone decides the slot.
:meth:`Keys.tagged` builds those keys. The tags in use:

``{u:XYZ}``
    a viewer's *shard*: 3 base64url characters of a hash of the user id
    (:func:`user_shard`). A user's stream set and every playback session key of that
    user carry it; the session key knows it without the user id because every playback
    session id begins with its user's shard (:func:`session_shard`), so a segment
    request, which only has the session id from its token, finds the session in the
    same slot as the stream set the session scripts update with it. The frequency
    counters of a user's ads (read with one MGET) carry it too.
``{a:<account>}``
    one sign-in account's failure counters and backoff locks (deleted together).

Every other key is used alone (single-key commands, or pipelines without a transaction,
which a cluster client splits by slot) and has no tag. ``tests/unit/test_redis_slots.py``
checks every group hashes to one slot.
"""

from __future__ import annotations

import base64
import hashlib

from redis.asyncio import Redis

from runtime.settings import Settings


def create_redis(settings: Settings) -> Redis:
    """A lazily-connecting client with short timeouts, so a Redis outage gives fast 503s."""
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set and no embedded Redis was started")
    return Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=1.0,
        socket_timeout=2.0,
        health_check_interval=15,
        max_connections=256,
        decode_responses=False,
    )


#: characters of a session id that name its user's shard (18 bits: 262 144 shards,
#: spread over Redis Cluster's 16 384 slots)
SHARD_CHARS = 3


def user_shard(user_id: str) -> str:
    """The user's shard: 3 base64url characters of BLAKE2b(user id)."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=3).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:SHARD_CHARS]


def session_shard(session_id: str) -> str:
    """The shard a playback session id begins with (its user's, for ids minted with
    ``new_session_id(lead=user_shard(user_id))``)."""
    return session_id[:SHARD_CHARS]


class Keys:
    """Builds prefixed Redis keys so test runs and deployments never collide."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        if "{" in prefix or "}" in prefix:
            # a brace in the prefix would become every key's hash tag (one slot for all)
            raise ValueError(f"KUSH_REDIS_PREFIX must not contain braces: {prefix!r}")
        self.prefix = prefix

    def __call__(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def tagged(self, tag: str, *parts: str) -> str:
        """A key in the hash slot of ``tag``: ``<prefix>{<tag>}:<parts>``."""
        if "{" in tag or "}" in tag:
            raise ValueError(f"a hash tag cannot contain braces: {tag!r}")
        return f"{self.prefix}{{{tag}}}:" + ":".join(parts)

    def for_user(self, user_id: str, *parts: str) -> str:
        """A key of one user, in the slot of the user's shard (``{u:XYZ}``)."""
        return self.tagged("u:" + user_shard(user_id), *parts)

    def for_session(self, session_id: str, *parts: str) -> str:
        """A key of one playback session, in the slot of its user's shard."""
        return self.tagged("u:" + session_shard(session_id), *parts)

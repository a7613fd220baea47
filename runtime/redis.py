"""The Redis client and the key prefix every key goes through."""

from __future__ import annotations

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


class Keys:
    """Builds prefixed Redis keys so test runs and deployments never collide."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

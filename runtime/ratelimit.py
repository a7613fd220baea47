"""Fixed-window rate limits in Redis (shared by every worker process)."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from runtime.errors import TooManyRequests
from runtime.redis import Keys


async def hit(
    redis: Redis, keys: Keys, name: str, subject: str, *, limit: int, window_s: int
) -> None:
    """Count one event for ``subject``; raise 429 with ``Retry-After`` over ``limit``.

    One INCR and one EXPIRE in a single round trip. The window is aligned to the clock,
    so ``Retry-After`` is the time left in the current window.
    """
    now = time.time()
    window = int(now // window_s)
    key = keys("rl", name, subject, str(window))
    async with redis.pipeline(transaction=False) as pipe:
        pipe.incr(key)
        pipe.expire(key, window_s + 1)
        count, _ = await pipe.execute()
    if int(count) > limit:
        retry_after = max(1, int((window + 1) * window_s - now + 0.999))
        raise TooManyRequests(
            "Too many attempts; try again later", code="rate_limited", retry_after=retry_after
        )

"""What a background job of ``kush worker`` receives, so jobs in any package can be typed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
from redis.asyncio import Redis

from runtime.redis import Keys
from runtime.settings import Settings


class WorkerContext:
    """What every background job gets: settings, the pool, Redis and the key builder."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, redis: Redis) -> None:
        self.settings = settings
        self.pool = pool
        self.redis = redis
        self.keys = Keys(settings.redis_prefix)


#: A long-running job: loops until ``stop`` is set.
Job = Callable[[WorkerContext, asyncio.Event], Coroutine[Any, Any, None]]

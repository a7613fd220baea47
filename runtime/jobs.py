"""What a background job of ``kush worker`` receives, so jobs in any package can be typed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
from prometheus_client import Histogram
from redis.asyncio import Redis

from runtime.metrics import Metrics
from runtime.redis import Keys
from runtime.settings import Settings

#: seconds: an ingest job runs from seconds (a refused file) to hours (a feature film)
JOB_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)


class WorkerContext:
    """What every background job gets: settings, the pool, Redis, the key builder and
    the worker's metrics (served by ``kush worker`` on ``KUSH_WORKER_METRICS_PORT``)."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, redis: Redis) -> None:
        self.settings = settings
        self.pool = pool
        self.redis = redis
        self.keys = Keys(settings.redis_prefix)
        self.metrics = Metrics("worker")
        self._job_seconds = Histogram(
            "kush_worker_job_duration_seconds",
            "How long queued jobs ran, by entrypoint and outcome",
            ["entrypoint", "outcome"],
            buckets=JOB_DURATION_BUCKETS,
            registry=self.metrics.registry,
        )

    def job_done(self, entrypoint: str, outcome: str, seconds: float) -> None:
        """Count one finished run of a queued job."""
        self._job_seconds.labels(entrypoint, outcome).observe(seconds)


#: A long-running job: loops until ``stop`` is set.
Job = Callable[[WorkerContext, asyncio.Event], Coroutine[Any, Any, None]]

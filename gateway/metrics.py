"""The gateway's metrics besides the HTTP ones every service has (`runtime.metrics`).

Each is chosen so that one scrape of a gateway running several workers adds up:

- playback starts and refusals, ad fallbacks, dropped positions: counters, summed over
  the workers;
- ``kush_playback_sessions_active``: the sessions that sent a heartbeat within
  ``KUSH_STREAM_IDLE_S``, read from Redis by the scraped worker (a per-worker count
  would count a session once per worker its segments reached). It is the same number
  on every gateway: aggregate it with ``max``, never ``sum``;
- the S3 origin's counters (`origin.s3.stats.OriginStats`) copied into counters by each
  worker (`OriginExporter`), summed; ``kush_origin_breaker_open`` is ``livemax``: each
  worker has its own breaker, and the question is whether any live worker's is open (a
  worker that died with an open breaker must not keep the alert firing);
  ``kush_origin_shared_buffer_bytes`` is ``livesum``, the bytes all live workers hold.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.asyncio import Redis

from origin.breaker import BreakerState
from origin.s3.store import S3Origin
from runtime.metrics import Metrics
from runtime.redis import Keys

log = logging.getLogger(__name__)

#: Redis sorted set: playback session id -> when it was last seen playing (unix time)
ACTIVE_SESSIONS_KEY = "sessions-active"

#: ``OriginStats`` field -> (metric name, help)
ORIGIN_COUNTERS: dict[str, tuple[str, str]] = {
    "origin_requests": (
        "kush_origin_requests_total",
        "HTTP requests sent to the origin, retries included",
    ),
    "origin_gets": ("kush_origin_get_requests_total", "Of the origin requests, the GETs"),
    "collapsed": (
        "kush_origin_collapsed_total",
        "Reads that joined another request's in-flight origin fetch",
    ),
    "unshared": (
        "kush_origin_unshared_total",
        "Full reads streamed alone because the shared-fetch buffer was full",
    ),
    "retries": (
        "kush_origin_retries_total",
        "Second attempts after a timeout, connection error or 5xx",
    ),
    "failures": (
        "kush_origin_failures_total",
        "Origin operations that failed after their retry (counted by the breaker)",
    ),
    "rejected": (
        "kush_origin_rejected_total",
        "Origin operations refused by the open circuit breaker",
    ),
    "aborted_streams": (
        "kush_origin_aborted_streams_total",
        "Client responses cut off by an origin failure mid-body",
    ),
    "presigns": ("kush_origin_presigns_total", "Origin URLs signed"),
    "bytes_read": ("kush_origin_bytes_total", "Body bytes received from the origin"),
}


class OriginExporter:
    """Copies an S3 origin's counters and breaker state into this worker's metrics (a
    refresher: run before each scrape and every few seconds)."""

    def __init__(self, origin: S3Origin, registry: CollectorRegistry) -> None:
        self._origin = origin
        self._counters = {
            field: Counter(name, text, registry=registry)
            for field, (name, text) in ORIGIN_COUNTERS.items()
        }
        self._seen = dict.fromkeys(ORIGIN_COUNTERS, 0)
        self._breaker_open = Gauge(
            "kush_origin_breaker_open",
            "1 while the origin circuit breaker of any live gateway worker is open or "
            "half-open (refusing calls but a trial), else 0",
            multiprocess_mode="livemax",
            registry=registry,
        )
        self._buffered = Gauge(
            "kush_origin_shared_buffer_bytes",
            "Bytes held by shared origin fetches, all live workers together",
            multiprocess_mode="livesum",
            registry=registry,
        )

    def refresh(self) -> None:
        """Add what each counter gained since the last refresh; set the gauges."""
        stats = dataclasses.asdict(self._origin.stats)
        for field, counter in self._counters.items():
            gained = stats[field] - self._seen[field]
            if gained > 0:
                counter.inc(gained)
                self._seen[field] = stats[field]
        closed = self._origin.breaker.state is BreakerState.CLOSED
        self._breaker_open.set(0 if closed else 1)
        self._buffered.set(self._origin.buffered_bytes)


async def note_active(redis: Redis, keys: Keys, session_id: str, now: float) -> None:
    """The session was seen playing at ``now`` (a start or a heartbeat)."""
    await redis.zadd(keys(ACTIVE_SESSIONS_KEY), {session_id: now})


async def forget_active(redis: Redis, keys: Keys, session_id: str) -> None:
    """The session was stopped: it no longer counts as active."""
    await redis.zrem(keys(ACTIVE_SESSIONS_KEY), session_id)


async def count_active(redis: Redis, keys: Keys, *, idle_s: float, now: float) -> int:
    """Sessions seen playing within ``idle_s`` (older entries are removed)."""
    key = keys(ACTIVE_SESSIONS_KEY)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zremrangebyscore(key, "-inf", now - idle_s)
        pipe.zcard(key)
        _, count = await pipe.execute()
    return int(count)


class GatewayMetrics:
    """The gateway's counters and gauges, registered in the app's registry."""

    def __init__(self, metrics: Metrics) -> None:
        registry = metrics.registry
        self._metrics = metrics
        self.starts = Counter(
            "kush_playback_starts_total",
            "Playback starts (result started) and refusals (result refused) by reason "
            "(the error code the player got)",
            ["result", "reason"],
            registry=registry,
        )
        self.sessions_active = Gauge(
            "kush_playback_sessions_active",
            "Playback sessions that played within KUSH_STREAM_IDLE_S (from Redis: the "
            "same on every gateway, aggregate with max)",
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.ads_fallback = Counter(
            "kush_ads_fallback_total",
            "Ads dropped (or ad sessions served without ads) so the film plays, by reason",
            ["reason"],
            registry=registry,
        )
        self.progress_dropped = Counter(
            "kush_progress_dropped",
            "Viewer positions dropped because the progress queue was full",
            registry=registry,
        )
        self.usage_dropped = Counter(
            "kush_usage_dropped_bytes",
            "Delivered bytes not metered: the usage table was full or PostgreSQL was down "
            "at shutdown",
            registry=registry,
        )

        self.edge_usage_lines = Counter(
            "kush_edge_usage_lines",
            "The edge's segment usage lines (UDP) by result: counted, refused (token or "
            "session), malformed, oversized, untrusted (sender not a trusted proxy), "
            "dropped (the process's queue was full)",
            ["result"],
            registry=registry,
        )

    def edge_usage_line(self, result: str) -> None:
        """Count one usage line from the edge by what became of it."""
        self.edge_usage_lines.labels(result).inc()

    def start(self, result: str, reason: str) -> None:
        """Count a playback start (``started``, reason empty) or refusal."""
        self.starts.labels(result, reason).inc()

    def ad_fallback(self, reason: str) -> None:
        """Count an ad dropped so the film plays."""
        self.ads_fallback.labels(reason).inc()

    def token_reject(self, reason: str) -> None:
        """Count a refused playback token (a signed HLS URI)."""
        self._metrics.reject_token("playback", reason)

    def watch_origin(self, origin: S3Origin) -> None:
        """Export this origin's counters and breaker (refreshed with the others)."""
        self._metrics.refreshers.append(OriginExporter(origin, self._metrics.registry).refresh)

    def watch_sessions(self, redis: Redis, keys: Keys, *, idle_s: float) -> None:
        """Read the active sessions from Redis when scraped (NaN if Redis fails)."""

        async def probe() -> None:
            self.sessions_active.set(float("nan"))
            count = await count_active(redis, keys, idle_s=idle_s, now=time.time())
            self.sessions_active.set(count)

        self._metrics.probes.append(probe)

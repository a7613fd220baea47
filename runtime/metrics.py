"""Prometheus metrics every Kush service shares, and one scrape that adds up.

A service's metrics live in a :class:`Metrics` (one per application). ``kush gateway
--workers N`` runs N processes on one port; the supervisor gives them a shared directory
(``PROMETHEUS_MULTIPROC_DIR``, prometheus-client's multiprocess mode) where each process
keeps its values in files of its own, and ``/metrics`` on any worker reads them all:
counters and histograms are summed over the workers (those that exited included, so a
restart loses nothing), each gauge is merged as its ``multiprocess_mode`` says. Process
metrics (CPU, memory, file descriptors) cannot be read across processes, so in that mode
every worker copies its own into ``liveall`` gauges (one series per live ``pid``).

Values a process only holds in plain attributes (the origin's counters, its breaker)
are copied into metrics by *refreshers*: before every scrape, every :data:`REFRESH_S` in
multiprocess mode so the workers that are not scraped stay current, and once more when
the process stops. The HTTP request counts and latencies are such values too: each
request adds to a plain tally (~0.5 us) and a refresher writes the tallies out, where
writing every request through prometheus-client cost ~5 us in process and ~10 us under
load (three locked writes to its files and their ``getpid`` checks; README, Benchmarks).
So in multiprocess mode a scrape sees the other workers' requests up to
:data:`REFRESH_S` late, and a worker killed with SIGKILL loses at most that much of its
counts; a worker that stops normally writes them out first.
Values that are the same for every process (active sessions in Redis, the job queue in
PostgreSQL) are read by *probes*, awaited by the scraped process only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from bisect import bisect_left
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.process_collector import ProcessCollector

log = logging.getLogger(__name__)

#: prometheus-client's switch to multiprocess mode (read when it is imported)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: how often a worker in multiprocess mode copies its refreshed values to its files
REFRESH_S = 2.0
#: the longest a scrape waits for a probe (a slow Redis must not hang the scrape)
PROBE_TIMEOUT_S = 2.0

Refresher = Callable[[], None]
Probe = Callable[[], Awaitable[None]]


def multiproc_dir() -> Path | None:
    """The directory this process shares its metrics through, when its supervisor set
    one (and prometheus-client therefore keeps every value in a file)."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def prepare_multiproc_dir(path: Path) -> None:
    """Create ``path`` and remove the metric files an earlier run left there (their
    counters would otherwise be added to this run's totals)."""
    path.mkdir(parents=True, exist_ok=True)
    clear_multiproc_dir(path)


def clear_multiproc_dir(path: Path) -> None:
    """Remove every metric file from ``path`` (the directory stays)."""
    for file in path.glob("*.db"):
        file.unlink(missing_ok=True)


def forget_process(path: Path, pid: int) -> None:
    """A worker exited: drop its live gauges (its counters stay in the totals)."""
    mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]


class ProcessMirror:
    """This process's standard ``process_*`` metrics as ``liveall`` gauges, for
    multiprocess mode (where a collector would only ever report the scraped process)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._source = ProcessCollector(registry=None)
        self._gauges: dict[str, Gauge] = {}

    def update(self) -> None:
        """Copy the current values (read from ``/proc``)."""
        for family in self._source.collect():
            for sample in family.samples:
                gauge = self._gauges.get(sample.name)
                if gauge is None:
                    gauge = self._gauges[sample.name] = Gauge(
                        sample.name,
                        family.documentation,
                        multiprocess_mode="liveall",
                        registry=self._registry,
                    )
                gauge.set(sample.value)


#: request tallies kept between refreshes (routes x methods x statuses); more are written
#: out at once (odd methods and statuses from clients cannot grow the process)
_MAX_REQUEST_TALLIES = 4096
#: the latency histogram's buckets (seconds; prometheus-client adds +Inf)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
_LATENCY_BOUNDS = (*LATENCY_BUCKETS, float("inf"))


class _Tally:
    """Requests of one (route, method, status) since the last refresh: how many, their
    latency's sum, and how many fell in each latency bucket (not cumulative)."""

    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.buckets = [0] * len(_LATENCY_BOUNDS)


class Metrics:
    """A service's Prometheus metrics: HTTP requests and latency by route and status,
    token rejects, process metrics, and whatever the service adds to :attr:`registry`.

    ``multiproc`` is the directory shared with the service's sibling processes
    (:func:`multiproc_dir`); None for a service that runs as one process.
    """

    def __init__(self, service: str, *, multiproc: Path | None = None) -> None:
        self.service = service
        self.multiproc = multiproc
        self.registry = CollectorRegistry()
        self.refreshers: list[Refresher] = []
        self.probes: list[Probe] = []
        self.requests = Counter(
            "kush_http_requests_total",
            "HTTP requests by route, method and status",
            ["service", "route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kush_http_request_duration_seconds",
            "HTTP request latency by route",
            ["service", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.write_timeouts = Counter(
            "kush_http_write_timeouts_total",
            "Connections dropped because the client stopped reading its response",
            ["service"],
            registry=self.registry,
        )
        self.token_rejects = Counter(
            "kush_token_rejects_total",
            "Tokens refused, by kind (playback: the signed URIs of HLS files; access: "
            "bearer or cookie JWTs; refresh: refresh tokens) and reason (the error code)",
            ["service", "kind", "reason"],
            registry=self.registry,
        )
        self._tallies: dict[tuple[str, str, int], _Tally] = {}
        self.refreshers.append(self.write_requests)
        if multiproc is None:
            ProcessCollector(registry=self.registry)
        else:
            self.refreshers.append(ProcessMirror(self.registry).update)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one HTTP request and its latency, in this process's tally (written to the
        metrics by :meth:`write_requests`, a refresher); runs on every request."""
        key = (route, method, status)
        tally = self._tallies.get(key)
        if tally is None:
            if len(self._tallies) >= _MAX_REQUEST_TALLIES:
                self.write_requests()
            tally = self._tallies[key] = _Tally()
        tally.count += 1
        tally.total += seconds
        tally.buckets[bisect_left(_LATENCY_BOUNDS, seconds)] += 1

    def write_requests(self) -> None:
        """Add the request tallies to ``kush_http_requests_total`` and the latency
        histogram, and start new ones. The histogram has no call that adds many
        observations at once, so its bucket and sum values are added to directly
        (``tests/unit/test_metrics`` compares the result with ``observe`` calls)."""
        tallies, self._tallies = self._tallies, {}
        for (route, method, status), tally in tallies.items():
            self.requests.labels(self.service, route, method, str(status)).inc(tally.count)
            histogram = self.latency.labels(self.service, route)
            histogram._sum.inc(tally.total)
            for value, count in zip(histogram._buckets, tally.buckets, strict=True):
                if count:
                    value.inc(count)

    def reject_token(self, kind: str, reason: str) -> None:
        """Count one refused token."""
        self.token_rejects.labels(self.service, kind, reason).inc()

    def refresh(self) -> None:
        """Run every refresher (one that fails is logged; the others still run)."""
        for refresher in self.refreshers:
            try:
                refresher()
            except Exception:
                log.exception("metrics refresher %r failed", refresher)

    async def probe(self) -> None:
        """Await every probe, each bounded by :data:`PROBE_TIMEOUT_S`; a probe that fails
        leaves its metric as the probe set it (NaN by convention) and is logged."""
        for probe in self.probes:
            try:
                async with asyncio.timeout(PROBE_TIMEOUT_S):
                    await probe()
            except Exception as exc:
                log.warning("metrics probe %r failed: %s", probe, type(exc).__name__)

    async def exposition(self) -> bytes:
        """The Prometheus text of this service: every worker's values added up in
        multiprocess mode, this process's otherwise."""
        self.refresh()
        await self.probe()
        if self.multiproc is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, str(self.multiproc))  # type: ignore[no-untyped-call]
        return generate_latest(merged)

    @contextlib.asynccontextmanager
    async def refreshing(self) -> AsyncIterator[None]:
        """While inside: in multiprocess mode, refresh now, every :data:`REFRESH_S` (the
        scraped worker reads the others' values from their files) and on the way out."""
        if self.multiproc is None:
            yield
            return
        self.refresh()

        async def loop() -> None:
            while True:
                await asyncio.sleep(REFRESH_S)
                self.refresh()

        task = asyncio.create_task(loop(), name="metrics-refresh")
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self.refresh()  # what this process counted since the last refresh

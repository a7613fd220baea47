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
are copied into metrics by *refreshers*: before every scrape, and every
:data:`REFRESH_S` in multiprocess mode so the workers that are not scraped stay current.
Values that are the same for every process (active sessions in Redis, the job queue in
PostgreSQL) are read by *probes*, awaited by the scraped process only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
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


#: labelled request-metric children kept per process (routes x methods x statuses)
_MAX_REQUEST_CHILDREN = 4096


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
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
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
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        if multiproc is None:
            ProcessCollector(registry=self.registry)
        else:
            self.refreshers.append(ProcessMirror(self.registry).update)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one HTTP request and its latency.

        The labelled children are kept per (route, method, status): ``labels()`` costs
        ~3 us a call, a dict lookup 0.1 us, and this runs on every segment request."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            if len(self._request_children) >= _MAX_REQUEST_CHILDREN:
                self._request_children.clear()  # odd methods from clients: stay bounded
            children = (
                self.requests.labels(self.service, route, method, str(status)),
                self.latency.labels(self.service, route),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

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
        """While inside: in multiprocess mode, refresh now and every :data:`REFRESH_S`
        (the scraped worker reads the others' values from their files)."""
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

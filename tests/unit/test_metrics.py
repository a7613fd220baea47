"""runtime.metrics and gateway.metrics without a server: the origin's counters exported
as the docstrings promise, refreshers and probes that fail alone, the multiprocess
directory's bookkeeping. (One scrape adding up real workers: test_metrics_workers.)"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from gateway.metrics import ORIGIN_COUNTERS, OriginExporter
from kush.supervisor import Child, Supervisor
from origin import OriginStats, S3Origin
from runtime import metrics as runtime_metrics
from runtime.metrics import (
    Metrics,
    ProcessMirror,
    clear_multiproc_dir,
    forget_process,
    prepare_multiproc_dir,
)


def value(registry: CollectorRegistry, name: str) -> float:
    found = registry.get_sample_value(name)
    assert found is not None, name
    return found


def test_every_origin_counter_is_exported() -> None:
    assert set(ORIGIN_COUNTERS) == {f.name for f in dataclasses.fields(OriginStats)}
    names = [name for name, _ in ORIGIN_COUNTERS.values()]
    assert len(set(names)) == len(names)
    assert all(name.startswith("kush_origin_") and name.endswith("_total") for name in names)


def _origin() -> S3Origin:
    return S3Origin(
        endpoint_url="http://127.0.0.1:9",
        bucket="b",
        access_key_id="k",
        secret_access_key="s",
        breaker_threshold=1,
    )


def test_origin_exporter_adds_what_each_counter_gained() -> None:
    origin = _origin()
    registry = CollectorRegistry()
    exporter = OriginExporter(origin, registry)
    exporter.refresh()
    assert value(registry, "kush_origin_requests_total") == 0
    assert value(registry, "kush_origin_breaker_open") == 0
    origin.stats.origin_requests += 5
    origin.stats.collapsed += 2
    origin.stats.bytes_read += 1000
    exporter.refresh()
    exporter.refresh()  # nothing new: nothing added
    origin.stats.origin_requests += 1
    exporter.refresh()
    assert value(registry, "kush_origin_requests_total") == 6
    assert value(registry, "kush_origin_collapsed_total") == 2
    assert value(registry, "kush_origin_bytes_total") == 1000
    assert value(registry, "kush_origin_failures_total") == 0


def test_origin_exporter_reports_the_breaker() -> None:
    origin = _origin()
    registry = CollectorRegistry()
    exporter = OriginExporter(origin, registry)
    permit = origin.breaker.acquire()
    assert permit is not None
    origin.breaker.record_failure(permit)  # threshold 1: open
    exporter.refresh()
    assert value(registry, "kush_origin_breaker_open") == 1
    origin.breaker.record_success(permit)
    exporter.refresh()
    assert value(registry, "kush_origin_breaker_open") == 0


def test_a_failing_refresher_does_not_stop_the_others() -> None:
    metrics = Metrics("test")
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("boom")

    metrics.refreshers += [broken, lambda: ran.append("second")]
    metrics.refresh()
    assert ran == ["second"]


async def test_probes_fail_or_time_out_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_metrics, "PROBE_TIMEOUT_S", 0.05)
    metrics = Metrics("test")
    ran: list[str] = []

    async def broken() -> None:
        raise ConnectionError("redis down")

    async def stuck() -> None:
        await asyncio.Event().wait()

    async def fine() -> None:
        ran.append("fine")

    metrics.probes += [broken, stuck, fine]
    body = await metrics.exposition()
    assert ran == ["fine"]
    assert b"kush_http_requests_total" in body
    assert b"process_cpu_seconds_total" in body  # one process: the standard collector


LATENCIES = (0.0, 0.0004, 0.0005, 0.0007, 0.001, 0.003, 0.3, 2.5, 9.0, 10.0, 11.0, 300.0)


def request_samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[object, ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        if family.name.startswith("kush_http_request")
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_request_tallies_write_what_observe_calls_would() -> None:
    """Requests are tallied in process and written out by a refresher: the samples must
    be those of one ``inc`` and one ``observe`` per request (bucket edges included)."""
    tallied = Metrics("gateway")
    reference = Metrics("gateway")
    for round_no in range(2):
        for i, seconds in enumerate(LATENCIES):
            route = ("/hls/{movie_id}/master.m3u8", "/healthz")[i % 2]
            status = (200, 404)[i % 3 == 0]
            tallied.observe_request(route, "GET", status, seconds)
            reference.requests.labels("gateway", route, "GET", str(status)).inc()
            reference.latency.labels("gateway", route).observe(seconds)
        assert request_samples(tallied.registry) != request_samples(reference.registry)
        tallied.refresh()
        assert request_samples(tallied.registry) == request_samples(reference.registry), round_no
    assert (
        tallied.registry.get_sample_value(
            "kush_http_request_duration_seconds_bucket",
            {"service": "gateway", "route": "/healthz", "le": "0.0005"},
        )
        == sum(1 for i, s in enumerate(LATENCIES) if i % 2 and s <= 0.0005) * 2
    )


def test_request_tallies_stay_bounded() -> None:
    metrics = Metrics("gateway")
    for n in range(runtime_metrics._MAX_REQUEST_TALLIES + 10):
        metrics.observe_request("/x", f"M{n}", 200, 0.01)
    assert len(metrics._tallies) <= runtime_metrics._MAX_REQUEST_TALLIES
    counted = sum(
        s.value
        for family in metrics.registry.collect()
        if family.name == "kush_http_requests"
        for s in family.samples
        if s.name == "kush_http_requests_total"
    )
    assert counted + sum(t.count for t in metrics._tallies.values()) == n + 1


async def test_a_stopping_process_writes_its_last_tallies(tmp_path: Path) -> None:
    metrics = Metrics("gateway", multiproc=tmp_path)
    async with metrics.refreshing():
        metrics.observe_request("/healthz", "GET", 200, 0.001)
    assert not metrics._tallies
    labels = {"service": "gateway", "route": "/healthz", "method": "GET", "status": "200"}
    assert metrics.registry.get_sample_value("kush_http_requests_total", labels) == 1


def test_token_rejects_by_service_kind_and_reason() -> None:
    metrics = Metrics("gateway")
    metrics.reject_token("playback", "token_expired")
    metrics.reject_token("playback", "token_expired")
    labels = {"service": "gateway", "kind": "playback", "reason": "token_expired"}
    assert metrics.registry.get_sample_value("kush_token_rejects_total", labels) == 2


def test_process_mirror_copies_the_process_metrics() -> None:
    registry = CollectorRegistry()
    ProcessMirror(registry).update()
    assert value(registry, "process_resident_memory_bytes") > 0
    assert value(registry, "process_cpu_seconds_total") > 0


def test_the_multiprocess_directory_bookkeeping(tmp_path: Path) -> None:
    shared = tmp_path / "metrics"
    prepare_multiproc_dir(shared)
    for name in ("counter_101.db", "gauge_liveall_101.db", "gauge_livemax_101.db", "x.txt"):
        (shared / name).write_bytes(b"")
    forget_process(shared, 101)
    # a dead worker's counters stay in the totals; its live gauges go
    assert sorted(p.name for p in shared.iterdir()) == ["counter_101.db", "x.txt"]
    prepare_multiproc_dir(shared)  # a new run starts from zero
    assert [p.name for p in shared.iterdir()] == ["x.txt"]
    (shared / "histogram_7.db").write_bytes(b"")
    clear_multiproc_dir(shared)
    assert [p.name for p in shared.iterdir()] == ["x.txt"]


def test_the_supervisor_reports_each_exited_worker() -> None:
    """So that `kush gateway` can drop the exited worker's live gauges."""
    exited: list[int] = []
    sup = Supervisor({}, on_exit=exited.append)
    child = Child("crashy", [sys.executable, "-c", "raise SystemExit(3)"])
    sup._start(child)
    sup.children.append(child)
    assert child.proc is not None
    child.proc.wait(timeout=30)
    sup.check(time.monotonic())
    sup.check(time.monotonic())  # restart not due yet: reported once
    assert exited == [child.proc.pid]

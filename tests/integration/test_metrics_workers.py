"""``kush gateway --workers 2``: one scrape of /metrics, on whichever worker answers,
shows the totals of both (prometheus-client's multiprocess mode), and a worker that is
killed and restarted takes none of them with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from runtime.metrics import REFRESH_S
from runtime.settings import Settings
from tests.conftest import DEMO_PASSWORD, Film
from tests.integration.helpers import free_port

pytestmark = pytest.mark.slow

Samples = list[tuple[str, dict[str, str], float]]


@dataclass
class Gateway:
    """The gateway under test, and a tally of every request the test made to it."""

    port: int
    proc: subprocess.Popen[bytes]
    routes: Counter[str] = field(default_factory=Counter)

    def call(
        self,
        method: str,
        path: str,
        route: str,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One request on a new connection (the kernel spreads those over the workers)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        self.routes[route] += 1
        return status, json.loads(raw) if raw.startswith(b"{") else raw

    def pids(self, at_least: int, *, until_new: set[int] | None = None) -> set[int]:
        """Ask /healthz on new connections until two workers (or, with ``until_new``, a
        worker not in it) answered, and at least ``at_least`` times."""
        seen: set[int] = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                _, body = self.call("GET", "/healthz", "/healthz")
            except OSError:  # not listening yet
                time.sleep(0.2)
                continue
            seen.add(body["pid"])
            enough = len(seen - until_new) >= 1 if until_new is not None else len(seen) >= 2
            if enough and self.routes["/healthz"] >= at_least:
                return seen
        raise AssertionError(f"workers seen: {seen}")

    def scrape(self) -> Samples:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            text = r.read().decode()
        return [
            (s.name, s.labels, s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def scrape_settled(self) -> Samples:
        """Scrape until every request the test made is counted: a worker writes its
        request tallies every ``REFRESH_S``, so the one not scraped shows them that late
        (runtime.metrics). Gives up after a while; the assertions then say what is off."""
        deadline = time.monotonic() + 4 * REFRESH_S + 5
        while True:
            samples = self.scrape()
            counted = all(
                total(samples, "kush_http_requests_total", route=route) == count
                for route, count in self.routes.items()
            )
            if counted or time.monotonic() > deadline:
                return samples
            time.sleep(0.2)


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        value
        for sample, have, value in samples
        if sample == name and all(have.get(k) == v for k, v in labels.items())
    )


def pids_of(samples: Samples, name: str) -> set[int]:
    return {int(labels["pid"]) for sample, labels, _ in samples if sample == name}


@pytest.fixture
def gateway(settings: Settings, film: Film) -> Iterator[Gateway]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "KUSH_DB_SCHEMA": settings.db_schema,
        # a prefix of its own: the active sessions counted are this test's only
        "KUSH_REDIS_PREFIX": f"{settings.redis_prefix}metrics{uuid.uuid4().hex[:6]}:",
        "KUSH_MASTER_KEY": settings.master_key or "",
        "KUSH_GATEWAY_PORT": str(port),
        "KUSH_ADMIN_PORT": str(free_port()),
        "KUSH_DATA_DIR": str(settings.data_dir),
        "KUSH_ORIGIN_DIR": str(film.origin_dir),
        "KUSH_PLAYBACK_STARTS_PER_MINUTE": "1000",
        "KUSH_LOG_LEVEL": "WARNING",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kush", "gateway", "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield Gateway(port, proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        # the supervisor empties the metrics directory when it stops
        assert not list((settings.data_dir / "metrics" / f"gateway-{port}").glob("*.db"))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_one_scrape_adds_up_both_workers(gateway: Gateway, film: Film) -> None:
    workers = gateway.pids(at_least=30)

    status, login = gateway.call(
        "POST",
        "/v1/auth/login",
        "/v1/auth/login",
        body={"email": "premium@demo.kush", "password": DEMO_PASSWORD},
    )
    assert status == 200, login
    auth = {"Authorization": f"Bearer {login['access_token']}"}

    # playback starts up to the plan's stream limit and beyond, and a missing film
    outcomes: Counter[str] = Counter()
    sessions: list[str] = []
    for movie in [film.movie_id] * 8 + [str(uuid.uuid4())]:
        status, body = gateway.call(
            "POST", f"/v1/playback/{movie}", "/v1/playback/{id}", headers=auth
        )
        outcomes["started" if status == 201 else body["error"]["code"]] += 1
        if status == 201:
            sessions.append(body["session_id"])
    assert outcomes["started"] >= 1
    assert outcomes["stream_limit"] >= 1
    assert outcomes["movie_not_found"] == 1
    # one viewer stops: no longer active
    status, _ = gateway.call(
        "DELETE", f"/v1/playback/{sessions[0]}", "/v1/playback/{id}", headers=auth
    )
    assert status == 204

    # playback tokens: forged, and missing; an access token that does not verify
    master = f"/hls/{film.movie_id}/master.m3u8"
    for _ in range(7):
        status, _ = gateway.call("GET", f"{master}?t=forged", "/hls/{movie_id}/master.m3u8")
        assert status == 403
    for _ in range(5):
        status, _ = gateway.call("GET", master, "/hls/{movie_id}/master.m3u8")
        assert status == 401
    for _ in range(4):
        status, _ = gateway.call(
            "GET", "/v1/me", "/v1/me", headers={"Authorization": "Bearer x.y.z"}
        )
        assert status == 401

    samples = gateway.scrape_settled()

    # every request of the test, whichever worker served it
    for route, count in gateway.routes.items():
        assert total(samples, "kush_http_requests_total", route=route) == count, route
    served = total(samples, "kush_http_requests_total", service="gateway")
    assert served - total(samples, "kush_http_requests_total", route="/metrics") == sum(
        gateway.routes.values()
    )
    assert total(samples, "kush_playback_starts_total", result="started") == outcomes["started"]
    for reason in ("stream_limit", "movie_not_found"):
        refused = total(samples, "kush_playback_starts_total", result="refused", reason=reason)
        assert refused == outcomes[reason], reason
    assert total(samples, "kush_token_rejects_total", kind="playback", reason="invalid_token") == 7
    assert total(samples, "kush_token_rejects_total", kind="playback", reason="token_required") == 5
    assert total(samples, "kush_token_rejects_total", kind="access", reason="invalid_token") == 4
    assert total(samples, "kush_playback_sessions_active") == outcomes["started"] - 1
    # process metrics: one series per live worker
    assert pids_of(samples, "process_resident_memory_bytes") == workers
    assert total(samples, "process_cpu_seconds_total") > 0

    # a worker killed: restarted by the supervisor, its counts stay in the totals
    killed = next(iter(workers))
    os.kill(killed, signal.SIGKILL)
    survivor = workers - {killed}
    replacement = gateway.pids(at_least=0, until_new=workers) - workers
    assert len(replacement) == 1
    samples = gateway.scrape_settled()
    assert (
        total(samples, "kush_http_requests_total", route="/healthz") == gateway.routes["/healthz"]
    )
    assert total(samples, "kush_token_rejects_total", reason="token_required") == 5
    assert pids_of(samples, "process_resident_memory_bytes") == survivor | replacement

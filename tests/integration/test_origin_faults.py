"""Origin fault drills (issue 10 #5): an S3 origin that is slow, failing, cut mid-body or
down, through the real middlewares (access log, metrics, JSON errors).

What a viewer sees is always a 503 with ``Retry-After`` or a clean abort of the response
(the connection closed before the declared Content-Length): never a truncated body
answered and logged as a successful 200. Nothing is retried once bytes have gone to the
client, and the circuit breaker opens after its failures and closes once the origin is
back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import map_domain_error
from origin import BreakerState, S3Origin, object_key
from runtime.settings import Settings
from runtime.web import base_app, error_mappers_key, metrics_key
from tests.support.fake_origin import FakeOrigin

KEY = object_key("videos", "m1", "720p", "seg_00001.ts")
DATA = os.urandom(1024 * 1024)
BIG_KEY = object_key("videos", "m1", "720p", "seg_00002.ts")
BIG = os.urandom(8 * 1024 * 1024)
PATH = f"/o/{KEY}"
CACHE = "public, max-age=2592000, immutable"

Client = TestClient[web.Request, web.Application]


def drill_app(settings: Settings, store: S3Origin) -> web.Application:
    """The kernel's app (access log, metrics, error middleware) with the gateway's error
    mapping and one route that streams origin objects."""

    async def serve(request: web.Request) -> web.StreamResponse:
        return await store.serve(request, request.match_info["key"], cache_control=CACHE)

    app = base_app(settings, "drill")
    app[error_mappers_key].append(map_domain_error)
    app.router.add_get("/o/{key:.+}", serve)
    return app


@pytest.fixture
async def fake() -> AsyncIterator[FakeOrigin]:
    origin = FakeOrigin()
    origin.objects[KEY] = DATA
    origin.objects[BIG_KEY] = BIG
    await origin.start()
    yield origin
    await origin.stop()


@pytest.fixture
async def store(fake: FakeOrigin) -> AsyncIterator[S3Origin]:
    s3 = S3Origin(
        endpoint_url=fake.endpoint_url,
        bucket="films",
        access_key_id="AKIDEXAMPLE",
        secret_access_key="secret",
        region="auto",
        connect_timeout=0.5,
        first_byte_timeout=0.5,
        breaker_threshold=2,
        breaker_cooldown=0.5,
    )
    yield s3
    await s3.close()


@pytest.fixture
async def client(settings: Settings, store: S3Origin, aiohttp_client) -> Client:
    return await aiohttp_client(drill_app(settings, store))  # type: ignore[no-any-return]


async def logged(caplog: pytest.LogCaptureFixture, path: str, count: int) -> list[int]:
    """The statuses the access log recorded for ``path``, once ``count`` are in."""
    statuses: list[int] = []
    async with asyncio.timeout(20):
        while True:
            statuses = [
                r.fields["status"]  # type: ignore[attr-defined]
                for r in caplog.records
                if r.name == "kush.access" and r.fields["path"] == path  # type: ignore[attr-defined]
            ]
            if len(statuses) >= count:
                return statuses
            await asyncio.sleep(0.05)


def counted(client: Client, status: int) -> float:
    """``kush_http_requests_total`` for the drill route and this status."""
    metrics = client.app[metrics_key]
    metrics.write_requests()  # the process's tallies, as a scrape writes them first
    registry = metrics.registry
    labels = {"service": "drill", "route": "/o/{key}", "method": "GET", "status": str(status)}
    return registry.get_sample_value("kush_http_requests_total", labels) or 0.0


@pytest.fixture(autouse=True)
def _access_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kush.access")


async def test_healthy_origin_baseline(client: Client, fake: FakeOrigin, caplog) -> None:
    response = await client.get(PATH)
    assert response.status == 200
    assert await response.read() == DATA
    response = await client.get(PATH, headers={"Range": "bytes=10-19"})
    assert response.status == 206
    assert await response.read() == DATA[10:20]
    assert await logged(caplog, PATH, 2) == [200, 206]
    assert counted(client, 200) == 1


async def test_origin_500_is_503_with_retry_after(
    client: Client, fake: FakeOrigin, store: S3Origin, caplog
) -> None:
    fake.mode = "error"
    async with asyncio.timeout(20):
        response = await client.get(PATH)
    assert response.status == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert (await response.json())["error"]["code"] == "origin_unavailable"
    assert fake.gets == 2  # one retry: nothing had been sent to the client yet
    assert await logged(caplog, PATH, 1) == [503]


async def test_origin_headers_late_is_503(
    client: Client, fake: FakeOrigin, store: S3Origin, caplog
) -> None:
    fake.mode = "slow"
    async with asyncio.timeout(20):  # first-byte timeout 0.5 s, one retry: never a hang
        response = await client.get(PATH)
    assert response.status == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert fake.gets == 2
    assert await logged(caplog, PATH, 1) == [503]


@pytest.mark.parametrize("ranged", [False, True])
@pytest.mark.parametrize("fault", ["cut", "stall"])
async def test_origin_failing_mid_body_aborts_and_is_logged_502(
    client: Client, fake: FakeOrigin, store: S3Origin, caplog, ranged: bool, fault: str
) -> None:
    """Headers and part of the body are out when the origin fails: the client's
    connection is closed before Content-Length bytes, the request is logged and counted
    as 502 (never as a 200), and it is not retried (the client has bytes already)."""
    fake.mode = "cut" if fault == "cut" else "stall"
    fake.cut_after = 200_000
    headers = {"Range": f"bytes=0-{len(DATA) - 2}"} if ranged else {}
    async with asyncio.timeout(20):
        response = await client.get(PATH, headers=headers)
        assert response.status == (206 if ranged else 200)
        declared = int(response.headers["Content-Length"])
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    assert declared == len(DATA) - (1 if ranged else 0)
    assert fake.gets == 1  # never retried once the answer had started
    assert store.stats.aborted_streams == 1
    assert await logged(caplog, PATH, 1) == [502]
    assert counted(client, 502) == 1
    assert counted(client, 200) == 0
    assert counted(client, 206) == 0


async def test_origin_down_is_503_then_recovers(
    client: Client, fake: FakeOrigin, store: S3Origin, caplog
) -> None:
    await fake.stop()
    async with asyncio.timeout(20):
        response = await client.get(PATH)
    assert response.status == 503
    assert int(response.headers["Retry-After"]) >= 1
    await fake.start()
    async with asyncio.timeout(20):
        while store.breaker.state is BreakerState.OPEN:  # noqa: ASYNC110 -- bounded
            await asyncio.sleep(0.05)
        response = await client.get(PATH)
        assert response.status == 200
        assert await response.read() == DATA
    assert await logged(caplog, PATH, 2) == [503, 200]


async def test_breaker_opens_after_failures_and_closes_after_recovery(
    client: Client, fake: FakeOrigin, store: S3Origin
) -> None:
    fake.mode = "error"
    async with asyncio.timeout(20):
        for _ in range(2):  # the threshold
            assert (await client.get(PATH)).status == 503
        assert store.breaker.state is BreakerState.OPEN
        before = fake.gets
        response = await client.get(PATH)
        assert response.status == 503
        assert int(response.headers["Retry-After"]) >= 1
        assert fake.gets == before  # open: the origin is not even asked

        fake.mode = "healthy"
        while store.breaker.state is BreakerState.OPEN:  # noqa: ASYNC110 -- bounded
            await asyncio.sleep(0.05)
        response = await client.get(PATH)
        assert response.status == 200
        assert await response.read() == DATA
        assert store.breaker.state is BreakerState.CLOSED


async def test_viewer_hanging_up_mid_body_is_499_not_200(
    client: Client, fake: FakeOrigin, caplog
) -> None:
    """A viewer who closes the connection part-way (seek, lost signal) is logged 499:
    the response did not complete, whatever its status line said."""
    path = f"/o/{BIG_KEY}"
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel holds little
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(20):
        await loop.sock_connect(sock, (str(client.host), int(client.port or 0)))
        await loop.sock_sendall(sock, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = await loop.sock_recv(sock, 1024)
        assert head.startswith(b"HTTP/1.1 200")
        sock.close()
        assert await logged(caplog, path, 1) == [499]
    assert counted(client, 200) == 0

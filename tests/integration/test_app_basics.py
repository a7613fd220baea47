"""Operational basics of both apps against the real PostgreSQL and Redis."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from admin.app import create_app as create_admin
from gateway.app import create_app as create_gateway
from runtime.settings import Settings
from tests.integration.helpers import free_port

AppFactory = Callable[[Settings], web.Application]
ClientMaker = Callable[[web.Application], "object"]


@pytest.fixture(params=[create_gateway, create_admin], ids=["gateway", "admin"])
def factory(request: pytest.FixtureRequest) -> AppFactory:
    return request.param  # type: ignore[no-any-return]


async def test_healthz_readyz_metrics(
    factory: AppFactory, settings: Settings, aiohttp_client
) -> None:
    client: TestClient = await aiohttp_client(factory(settings))
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert (await resp.json())["status"] == "ok"
    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["checks"] == {"postgres": "ok", "redis": "ok"}
    await client.get("/nowhere")
    resp = await client.get("/metrics")
    text = await resp.text()
    assert resp.status == 200
    assert 'kush_http_requests_total{method="GET",route="/healthz"' in text
    assert 'route="unmatched",service=' in text
    assert 'status="404"' in text
    assert "kush_http_request_duration_seconds_bucket" in text


async def test_readyz_503_when_postgres_unreachable(
    factory: AppFactory, settings: Settings, aiohttp_client
) -> None:
    broken = dataclasses.replace(
        settings, database_url=f"postgresql://kush@127.0.0.1:{free_port()}/kush"
    )
    client: TestClient = await aiohttp_client(factory(broken))
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert resp.headers["Retry-After"].isdigit()
    body = await resp.json()
    assert body["checks"]["postgres"].startswith("unavailable")
    assert body["checks"]["redis"] == "ok"
    assert (await client.get("/healthz")).status == 200


async def test_readyz_503_when_redis_unreachable(settings: Settings, aiohttp_client) -> None:
    broken = dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client: TestClient = await aiohttp_client(create_gateway(broken))
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert (await resp.json())["checks"]["redis"].startswith("unavailable")


async def test_request_id_honoured_or_generated(
    factory: AppFactory, settings: Settings, aiohttp_client
) -> None:
    client: TestClient = await aiohttp_client(factory(settings))
    resp = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert resp.headers["X-Request-ID"] == "abc-123"
    resp = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    generated = resp.headers["X-Request-ID"]
    assert generated != "bad id\twith spaces"
    assert len(generated) == 32
    resp = await client.get("/missing")
    assert resp.headers["X-Request-ID"]
    assert (await resp.json())["error"]["request_id"] == resp.headers["X-Request-ID"]


async def test_unknown_route_is_json_404(
    factory: AppFactory, settings: Settings, aiohttp_client
) -> None:
    client: TestClient = await aiohttp_client(factory(settings))
    resp = await client.get("/no/such/route")
    assert resp.status == 404
    assert resp.content_type == "application/json"
    assert (await resp.json())["error"]["code"] == "not_found"
    resp = await client.delete("/healthz")
    assert resp.status == 405
    assert (await resp.json())["error"]["code"] == "method_not_allowed"


async def _echo(request: web.Request) -> web.Response:
    from runtime.web import json_response, read_json

    return json_response(await read_json(request))


async def test_bad_json_400_and_oversized_413(settings: Settings, aiohttp_client) -> None:
    small = dataclasses.replace(settings, max_body_bytes=2048)
    app = create_gateway(small)
    app.router.add_post("/echo", _echo)
    client: TestClient = await aiohttp_client(app)
    resp = await client.post("/echo", json={"ok": 1})
    assert resp.status == 200
    for body in (b"{not json", b"[1, 2]", b""):
        resp = await client.post("/echo", data=body, headers={"Content-Type": "application/json"})
        assert resp.status == 400, body
        assert (await resp.json())["error"]["code"] == "invalid_json"
    resp = await client.post("/echo", data=b"{" + b" " * 4096 + b"}")
    assert resp.status == 413
    err = (await resp.json())["error"]
    assert err["code"] == "payload_too_large"
    assert "2048" in err["message"]


async def test_dependency_down_gives_503_with_retry_after(
    settings: Settings, aiohttp_client
) -> None:
    broken = dataclasses.replace(
        settings, database_url=f"postgresql://kush@127.0.0.1:{free_port()}/kush"
    )
    app = create_gateway(broken)

    async def uses_db(request: web.Request) -> web.Response:
        from runtime.web import json_response, pg_key

        return json_response({"n": await request.app[pg_key].fetchval("SELECT 1")})

    app.router.add_get("/uses-db", uses_db)
    client: TestClient = await aiohttp_client(app)
    resp = await client.get("/uses-db")
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "5"
    assert (await resp.json())["error"]["code"] == "dependency_unavailable"

"""The page routes without a browser: headers, static files, templates, settings."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.pages import STATIC_DIR, content_security_policy
from runtime.settings import Settings


@pytest.fixture
async def client(settings: Settings, aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(create_app(settings))


def csp_directives(policy: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *values = part.split()
        out[name] = values
    return out


@pytest.mark.parametrize("path", ["/", f"/watch/{uuid.uuid4()}", "/upgrade"])
async def test_pages_carry_security_headers(client: TestClient, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "same-origin"
    csp = csp_directives(resp.headers["Content-Security-Policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]
    assert csp["media-src"] == ["'self'", "blob:"]
    assert csp["connect-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    text = await resp.text()
    assert "Kush Films" in text
    assert "<script>" not in text  # no inline script: CSP would refuse it anyway


async def test_watch_page_loads_hlsjs_and_its_worker(client: TestClient) -> None:
    movie_id = str(uuid.uuid4())
    text = await (await client.get(f"/watch/{movie_id}")).text()
    assert '<script defer src="/static/vendor/hls.min.js"></script>' in text
    assert f'data-movie-id="{movie_id}"' in text
    assert 'data-hls-worker-url="/static/vendor/hls.worker.js"' in text
    assert '<script type="module" src="/static/watch.js"></script>' in text


async def test_watch_page_for_a_bad_id_is_a_404_page(client: TestClient) -> None:
    resp = await client.get("/watch/not-a-film")
    assert resp.status == 404
    assert resp.content_type == "text/html"
    assert "Film not found" in await resp.text()


async def test_upgrade_page_is_honest_about_billing(client: TestClient) -> None:
    text = await (await client.get("/upgrade")).text()
    assert "billing is not configured" in text
    assert "Nothing has been charged" in text
    assert "STRIPE_SECRET_KEY" in text  # and how to configure it
    assert 'data-configured="false"' in text


@pytest.fixture
def vendored() -> bool:
    return (STATIC_DIR / "vendor" / "hls.min.js").is_file()


async def test_static_files_and_cache_headers(client: TestClient, vendored: bool) -> None:
    resp = await client.get("/static/watch.js")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert resp.headers["Cache-Control"] == "public, max-age=300"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    css = await client.get("/static/app.css")
    assert css.headers["Content-Type"] == "text/css; charset=utf-8"
    if vendored:
        vendor = await client.get("/static/vendor/hls.min.js")
        assert vendor.status == 200
        assert vendor.headers["Cache-Control"] == "public, max-age=86400"


@pytest.mark.parametrize(
    "path",
    [
        "/static/shell.html",  # templates are not static files
        "/static/../pages.py",
        "/static/%2e%2e/pages.py",
        "/static/vendor/../../pages.py",
        "/static/nope.js",
        "/static/vendor/",
        "/static/",
    ],
)
async def test_static_refuses_anything_else(client: TestClient, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] in {"not_found"}


async def test_hlsjs_url_setting_moves_the_script_and_the_policy(settings: Settings) -> None:
    cdn = dataclasses.replace(
        settings,
        hlsjs_url="https://cdn.example.net/hls.js@1/dist/hls.min.js",
        public_url="https://watch.example.ug",
    )
    csp = csp_directives(content_security_policy(cdn))
    assert csp["script-src"] == ["'self'", "https://cdn.example.net"]
    assert csp["connect-src"] == ["'self'", "https://watch.example.ug"]
    assert csp["media-src"] == ["'self'", "https://watch.example.ug", "blob:"]


def test_hlsjs_url_is_read_from_the_environment() -> None:
    assert Settings.from_env({}).hlsjs_url == "/static/vendor/hls.min.js"
    url = "https://cdn.example.net/hls.min.js"
    assert Settings.from_env({"KUSH_HLSJS_URL": url}).hlsjs_url == url
    with pytest.raises(ValueError, match="KUSH_HLSJS_URL"):
        Settings.from_env({"KUSH_HLSJS_URL": "javascript:alert(1)"})


async def test_watch_page_offers_mobile_money_and_shows_its_pending_state(
    client: TestClient,
) -> None:
    text = await (await client.get(f"/watch/{uuid.uuid4()}")).text()
    assert 'id="momo"' in text
    assert "Pay with mobile money" in text
    assert 'id="momo-msisdn"' in text
    assert 'id="momo-status"' in text
    script = await (await client.get("/static/momo.js")).text()
    assert "/v1/billing/mobile-money" in script
    assert "/v1/billing/payments/" in script
    assert "Waiting for your approval" in script
    watch = await (await client.get("/static/watch.js")).text()
    assert "from './momo.js'" in watch
    assert "payment_not_confirmed" in watch

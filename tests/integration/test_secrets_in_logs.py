"""Secrets never reach the logs, not even at DEBUG.

A whole session runs against the real gateway and admin apps, served the way
`kush` serves them (aiohttp's own access log off, ``access_log=None``): register,
a wrong password, API and web logins, refresh (and a refresh-token reuse), playback
start, the master and a media playlist and a segment, forged tokens, an admin route,
playback end, logout. Every record any logger
emits is captured at DEBUG (pytest's ``caplog``, which includes the ``kush.access``
JSON access log) and rendered the ways production does (the JSON formatter and the
text format) plus the raw record; no rendering may contain the password, an access
or refresh token, a segment token (``t=`` values), a cookie value or the master key.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import parse_qsl, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from admin.app import create_app as create_admin
from gateway.app import create_app as create_gateway
from runtime.logs import JsonFormatter
from runtime.settings import Settings
from tests.integration.conftest import DEMO_PASSWORD, Film
from tests.integration.helpers import PASSWORD, bearer, new_email
from tokens import parse_master_key

TEXT_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
OUR_LOGGERS = ("kush", "gateway", "admin", "tokens", "origin", "runtime", "hls", "aiohttp")

Serve = Callable[[web.Application], Awaitable[TestClient]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start apps as `kush` does (no aiohttp access log); close them at the end."""
    clients: list[TestClient] = []

    async def start(app: web.Application) -> TestClient:
        server = TestServer(app)
        await server.start_server(access_log=None)  # kush/cli.py: run_app(access_log=None)
        client = TestClient(server)
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


def uris(playlist: str) -> list[str]:
    found = []
    for line in playlist.splitlines():
        if line and not line.startswith("#"):
            found.append(line)
        found.extend(re.findall(r'URI="([^"]+)"', line))
    return found


def segment_tokens(playlist: str) -> list[str]:
    return [
        value
        for uri in uris(playlist)
        for name, value in parse_qsl(urlsplit(uri).query)
        if name == "t"
    ]


def rendered(record: logging.LogRecord) -> list[str]:
    """Every form a record takes: production's JSON line, the text line, its raw fields."""
    if not hasattr(record, "request_id"):
        record.request_id = "-"
    return [JsonFormatter().format(record), TEXT_FORMAT.format(record), repr(vars(record))]


async def test_a_whole_session_logs_no_secret(
    play_settings: Settings, film: Film, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in OUR_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    gateway = await serve(create_gateway(play_settings))
    admin = await serve(create_admin(play_settings))
    secrets: dict[str, str] = {"password": PASSWORD, "demo password": DEMO_PASSWORD}
    master_key = play_settings.resolve_master_key()
    raw_key = parse_master_key(master_key)
    secrets |= {
        "master key": master_key,
        "master key (hex)": raw_key.hex(),
        "master key (base64url)": base64.urlsafe_b64encode(raw_key).decode().rstrip("="),
    }

    email = new_email()
    resp = await gateway.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert resp.status == 201
    resp = await gateway.post(
        "/v1/auth/login", json={"email": email, "password": PASSWORD + " but wrong"}
    )
    assert resp.status == 401
    secrets["wrong password"] = PASSWORD + " but wrong"

    # An API login (refresh token in the body) and a web login (cookies only).
    resp = await gateway.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert resp.status == 200
    api = await resp.json()
    secrets["access token"] = api["access_token"]
    secrets["refresh token"] = api["refresh_token"]
    resp = await gateway.post(
        "/v1/auth/login", json={"email": email, "password": PASSWORD, "client": "web"}
    )
    assert resp.status == 200
    for cookie in resp.cookies.values():
        secrets[f"cookie {cookie.key}"] = cookie.value
    assert {"cookie kush_access", "cookie kush_refresh", "cookie kush_csrf"} <= set(secrets)

    resp = await gateway.post("/v1/auth/refresh", json={"refresh_token": api["refresh_token"]})
    assert resp.status == 200
    rotated = await resp.json()
    access = rotated["access_token"]
    secrets["refreshed access token"] = access
    secrets["refreshed refresh token"] = rotated["refresh_token"]
    resp = await gateway.post("/v1/auth/refresh", json={"refresh_token": api["refresh_token"]})
    assert resp.status == 401  # the old one is spent (reuse revokes the family)
    resp = await gateway.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    access = (await resp.json())["access_token"]
    secrets["third access token"] = access

    resp = await gateway.post(f"/v1/playback/{film.movie_id}", headers=bearer(access))
    assert resp.status == 201, await resp.text()
    playback = await resp.json()
    manifest = urlsplit(playback["manifest_url"])
    master_path = manifest.path + (f"?{manifest.query}" if manifest.query else "")
    resp = await gateway.get(master_path)
    assert resp.status == 200
    master = await resp.text()
    variant = uris(master)[0]
    media_url = f"/hls/{film.movie_id}/{variant}"
    resp = await gateway.get(media_url)
    assert resp.status == 200
    media = await resp.text()
    rendition = variant.split("/")[0]
    segment_url = f"/hls/{film.movie_id}/{rendition}/{uris(media)[0]}"
    resp = await gateway.get(segment_url)
    assert resp.status == 200
    await resp.read()
    tokens = segment_tokens(master) + segment_tokens(media)
    assert len(tokens) >= 2
    for number, token in enumerate(tokens):
        secrets[f"segment token {number}"] = token
        secrets[f"segment token {number} MAC"] = token[24:]

    # Refusals log too: a forged segment token, a forged JWT, a bogus refresh token.
    bad_segment = segment_url.split("?")[0] + "?t=" + "A" * 44
    assert (await gateway.get(bad_segment)).status in (401, 403)
    assert (await gateway.get("/v1/me", headers=bearer("e30.e30.AAAA"))).status == 401
    assert (
        await gateway.post("/v1/auth/refresh", json={"refresh_token": "not-a-refresh-token"})
    ).status == 401

    resp = await gateway.post(
        "/v1/auth/login", json={"email": "admin@demo.kush", "password": DEMO_PASSWORD}
    )
    assert resp.status == 200
    admin_token = (await resp.json())["access_token"]
    secrets["admin access token"] = admin_token
    assert (await admin.get("/admin/v1/ads", headers=bearer(admin_token))).status == 200
    assert (await admin.get("/admin/v1/ads", headers=bearer(access))).status == 403

    resp = await gateway.delete(f"/v1/playback/{playback['session_id']}", headers=bearer(access))
    assert resp.status == 204
    resp = await gateway.post(
        "/v1/auth/logout", json={"refresh_token": rotated["refresh_token"]}, headers=bearer(access)
    )
    assert resp.status == 204
    assert (await gateway.get("/v1/me", headers=bearer(access))).status == 401

    for name, value in list(secrets.items()):
        assert len(value) >= 8, name  # a short value could match by chance
        if value.count(".") == 2:  # a JWT: its signature alone is a secret too
            secrets[f"{name} signature"] = value.rsplit(".", 1)[1]
    access_lines = [r for r in caplog.records if r.name == "kush.access"]
    assert len(access_lines) >= 15  # the JSON access log was captured, every request
    leaks = [
        (name, record.name, record.getMessage())
        for record in caplog.records
        for text in rendered(record)
        for name, value in secrets.items()
        if value in text
    ]
    assert leaks == []

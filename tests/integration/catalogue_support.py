"""Helpers for the admin catalogue and people tests: accounts of each role, a film
"ingested" from the shared test package, and a session's segment URL."""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
from aiohttp.test_utils import TestClient

from admin.publish import record_package, upload_package
from origin import LocalOrigin
from tests.conftest import DEMO_PASSWORD, Film
from tests.integration.helpers import PASSWORD, bearer, new_email
from tokens.jwt import Role
from tokens.service.auth import create_account


@dataclass(frozen=True)
class Account:
    id: str
    email: str
    token: str
    refresh_token: str

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.token)


async def login(gateway: TestClient, email: str, password: str) -> Account:
    resp = await gateway.post("/v1/auth/login", json={"email": email, "password": password})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    return Account(body["user"]["id"], email, body["access_token"], body["refresh_token"])


async def demo_admin(gateway: TestClient) -> Account:
    return await login(gateway, "admin@demo.kush", DEMO_PASSWORD)


async def new_account(gateway: TestClient, pg: asyncpg.Connection, role: str = "user") -> Account:
    """A fresh account with ``role`` (free plan), signed in. Created with registration's
    code, not its route, so the run's per-address sign-up limit stays untouched."""
    email = new_email()
    await create_account(pg, email, PASSWORD, role=cast(Role, role))
    return await login(gateway, email, PASSWORD)


def unique_title(stem: str) -> str:
    return f"{stem} {secrets.token_hex(4)}"


async def create_film(admin: TestClient, auth: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"title": unique_title("Film"), **fields}
    resp = await admin.post("/admin/v1/movies", json=body, headers=auth)
    assert resp.status == 201, await resp.text()
    created: dict[str, Any] = await resp.json()
    return created


async def ingest(pg: asyncpg.Connection, film: Film, movie_id: str) -> None:
    """What the ingest pipeline leaves behind: the test package on the origin and its
    renditions recorded (the film keeps its status)."""
    origin = LocalOrigin(film.origin_dir)
    try:
        await upload_package(origin, movie_id, film.package.master_path.parent)
    finally:
        await origin.close()
    await record_package(pg, movie_id, film.package, publish=False)


async def published_film(
    admin: TestClient, auth: dict[str, str], pg: asyncpg.Connection, film: Film, **fields: Any
) -> dict[str, Any]:
    created = await create_film(admin, auth, **fields)
    await ingest(pg, film, created["id"])
    resp = await admin.post(f"/admin/v1/movies/{created['id']}/publish", headers=auth)
    assert resp.status == 200, await resp.text()
    published: dict[str, Any] = await resp.json()
    assert published["status"] == "published"
    return published


def _local(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


def _next_uri(playlist: str) -> str:
    return next(line for line in playlist.splitlines() if line and not line.startswith("#"))


def _join(base: str, uri: str) -> str:
    return uri if uri.startswith("/") else base.split("?")[0].rsplit("/", 1)[0] + "/" + uri


async def start_playback(gateway: TestClient, who: Account, movie_id: str) -> dict[str, Any]:
    resp = await gateway.post(f"/v1/playback/{movie_id}", headers=who.auth)
    assert resp.status == 201, await resp.text()
    started: dict[str, Any] = await resp.json()
    return started


async def first_segment(gateway: TestClient, manifest_url: str) -> str:
    """The signed URL of the first segment of the master's first variant."""
    master_url = _local(manifest_url)
    resp = await gateway.get(master_url)
    assert resp.status == 200, await resp.text()
    media_url = _join(master_url, _next_uri(await resp.text()))
    resp = await gateway.get(media_url)
    assert resp.status == 200, await resp.text()
    return _join(media_url, _next_uri(await resp.text()))


async def refused_code(gateway: TestClient, url: str) -> str:
    """Fetch ``url`` until it is refused (gateways cache a live session for half a
    second); the error code."""
    async with asyncio.timeout(10):
        while True:
            resp = await gateway.get(url)
            if resp.status != 200:
                assert resp.status == 403, await resp.text()
                return str((await resp.json())["error"]["code"])
            await resp.read()
            await asyncio.sleep(0.1)

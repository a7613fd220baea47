"""Small playback helpers for the session and fault-drill tests."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient

from tests.integration.conftest import DEMO_PASSWORD
from tests.integration.helpers import bearer


def uris(playlist: str) -> list[str]:
    found = []
    for line in playlist.splitlines():
        if line and not line.startswith("#"):
            found.append(line)
        found.extend(re.findall(r'URI="([^"]+)"', line))
    return found


def local(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


async def demo_login(client: TestClient, plan: str) -> dict[str, Any]:
    resp = await client.post(
        "/v1/auth/login", json={"email": f"{plan}@demo.kush", "password": DEMO_PASSWORD}
    )
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def start(client: TestClient, token: str, movie_id: str, **headers: str) -> Any:
    return await client.post(f"/v1/playback/{movie_id}", headers={**bearer(token), **headers})


async def start_ok(client: TestClient, token: str, movie_id: str) -> dict[str, Any]:
    resp = await start(client, token, movie_id)
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def segment_urls(client: TestClient, manifest_url: str) -> list[str]:
    """The content segment URLs of the session's first variant."""
    resp = await client.get(local(manifest_url))
    assert resp.status == 200, await resp.text()
    master = await resp.text()
    variant = uris(master)[0]
    movie_root = local(manifest_url).split("?")[0].rsplit("/", 1)[0]
    resp = await client.get(f"{movie_root}/{variant}")
    assert resp.status == 200, await resp.text()
    media = await resp.text()
    rendition = variant.split("/")[0]
    return [f"{movie_root}/{rendition}/{uri}" for uri in uris(media)]


async def error_code(resp: Any) -> str:
    body = await resp.json()
    return str(body["error"]["code"])

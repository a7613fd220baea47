"""Small helpers shared by integration tests."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import socket
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from runtime.settings import Settings
from tests.conftest import DEMO_PASSWORD

PASSWORD = "correct horse battery staple"


def new_email() -> str:
    return f"viewer-{secrets.token_hex(5)}@example.ug"


async def register_and_login(client: TestClient, email: str | None = None) -> dict[str, Any]:
    """Register a fresh account and log in; returns the login JSON (plus 'email')."""
    email = email or new_email()
    resp = await client.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert resp.status == 201, await resp.text()
    resp = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    body["email"] = email
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def ffmpeg_reads(url: str, *, limit_s: float = 180) -> str:
    """Play an HLS URL to the end with ffmpeg (video and audio decoded, output discarded);
    asserts a clean exit and returns what ffmpeg said at level ``error``."""
    from admin.ingest import find_ffmpeg

    proc = await asyncio.create_subprocess_exec(
        find_ffmpeg(),
        "-v",
        "error",
        "-i",
        url,
        "-map",
        "0:v:0",
        "-map",
        "0:a:0",
        "-f",
        "null",
        "-",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=limit_s)
    assert proc.returncode == 0, err.decode()[-2000:]
    return err.decode()


def free_port() -> int:
    """A loopback TCP port nobody listens on (bound, read, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_udp_port() -> int:
    """A loopback UDP port nobody is bound to (bound, read, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kush_env(
    settings: Settings, *, port: int, data_dir: Path, inherit_kush_vars: bool = True
) -> dict[str, str]:
    """The environment of a ``kush gateway`` process on the test's database, Redis
    prefix and master key: its gateway on ``port``, the admin service on a free port,
    its data in ``data_dir``. It inherits this process's environment, without the
    ``KUSH_*`` variables unless ``inherit_kush_vars``; callers add their own settings."""
    inherited = {
        k: v for k, v in os.environ.items() if inherit_kush_vars or not k.startswith("KUSH_")
    }
    return {
        **inherited,
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "KUSH_DB_SCHEMA": settings.db_schema,
        "KUSH_REDIS_PREFIX": settings.redis_prefix,
        "KUSH_MASTER_KEY": settings.master_key or "",
        "KUSH_GATEWAY_PORT": str(port),
        "KUSH_ADMIN_PORT": str(free_port()),
        "KUSH_DATA_DIR": str(data_dir),
    }


async def premium_master_playlist(http: aiohttp.ClientSession, base: str, movie_id: str) -> str:
    """The master playlist of a playback session the demo premium viewer starts on the
    gateway process at ``base`` (login, ``POST /v1/playback/{movie_id}``, the manifest)."""
    async with http.post(
        f"{base}/v1/auth/login",
        json={"email": "premium@demo.kush", "password": DEMO_PASSWORD},
    ) as response:
        assert response.status == 200, await response.text()
        token = (await response.json())["access_token"]
    async with http.post(
        f"{base}/v1/playback/{movie_id}", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 201, await response.text()
        manifest = (await response.json())["manifest_url"]
    async with http.get(base + re.sub(r"^https?://[^/]+", "", manifest)) as response:
        assert response.status == 200
        return await response.text()

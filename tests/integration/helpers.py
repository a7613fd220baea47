"""Small helpers shared by integration tests."""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp.test_utils import TestClient

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

"""The replies of the catalogue, profile and people routes fit the schemas their OpenAPI
documents give (the documents are generated from the same models)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator

from admin.app import create_app as create_admin
from gateway.app import create_app as create_gateway
from runtime.settings import Settings
from tests.conftest import Film
from tests.integration.catalogue_support import (
    demo_admin,
    new_account,
    published_film,
    start_playback,
)


@pytest.fixture
async def gateway(play_settings: Settings, aiohttp_client) -> TestClient:
    return await aiohttp_client(create_gateway(play_settings))


@pytest.fixture
async def admin(play_settings: Settings, aiohttp_client) -> TestClient:
    return await aiohttp_client(create_admin(play_settings))


class Document:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.checked = 0

    async def fits(
        self, resp: Any, path: str, method: str = "get", status: int = 200
    ) -> dict[str, Any]:
        """Assert the reply has ``status`` and fits the documented schema; its JSON."""
        assert resp.status == status, await resp.text()
        body: dict[str, Any] = await resp.json()
        responses = self.doc["paths"][path][method]["responses"]
        schema = responses[str(status)]["content"]["application/json"]["schema"]
        Draft202012Validator(
            {**schema, "components": self.doc["components"]},
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        ).validate(body)
        self.checked += 1
        return body


async def test_replies_fit_the_documents(
    gateway: TestClient, admin: TestClient, pg: asyncpg.Connection, film: Film
) -> None:
    public = Document(await (await gateway.get("/v1/openapi.json")).json())
    private = Document(await (await admin.get("/admin/v1/openapi.json")).json())
    boss = await demo_admin(gateway)
    auth = boss.auth
    resp = await admin.post(
        "/admin/v1/categories", json={"slug": "docs-check", "name": "Docs"}, headers=auth
    )
    await private.fits(resp, "/admin/v1/categories", "post", 201)
    movie = await published_film(admin, auth, pg, film, categories=["docs-check"], year=2023)
    mid = movie["id"]
    await private.fits(
        await admin.get("/admin/v1/categories", headers=auth), "/admin/v1/categories"
    )
    await private.fits(
        await admin.get("/admin/v1/movies?limit=1", headers=auth), "/admin/v1/movies"
    )
    await private.fits(
        await admin.get(f"/admin/v1/movies/{mid}", headers=auth), "/admin/v1/movies/{movie_id}"
    )
    await private.fits(
        await admin.patch(f"/admin/v1/movies/{mid}", json={"geo_block": ["ke"]}, headers=auth),
        "/admin/v1/movies/{movie_id}",
        "patch",
    )
    resp = await admin.patch(
        "/admin/v1/categories/docs-check", json={"name": "Documents"}, headers=auth
    )
    await private.fits(resp, "/admin/v1/categories/{slug}", "patch")

    viewer = await new_account(gateway, pg)
    await start_playback(gateway, viewer, mid)
    await public.fits(await gateway.get("/v1/me", headers=viewer.auth), "/v1/me")
    resp = await gateway.patch("/v1/me", json={"birth_year": 1999}, headers=viewer.auth)
    await public.fits(resp, "/v1/me", "patch")
    resp = await gateway.patch("/v1/me", json={"birth_year": 1998}, headers=viewer.auth)
    await public.fits(resp, "/v1/me", "patch", 409)
    await public.fits(await gateway.get("/v1/me/export", headers=viewer.auth), "/v1/me/export")
    await public.fits(await gateway.get("/v1/movies/trending?window=7d"), "/v1/movies/trending")
    await public.fits(await gateway.get("/v1/categories"), "/v1/categories")

    resp = await admin.get("/admin/v1/users", params={"q": viewer.email}, headers=auth)
    await private.fits(resp, "/admin/v1/users")
    path = f"/admin/v1/users/{viewer.id}"
    await private.fits(await admin.get(path, headers=auth), "/admin/v1/users/{user_id}")
    await private.fits(
        await admin.get(path + "/export", headers=auth), "/admin/v1/users/{user_id}/export"
    )
    await private.fits(
        await admin.patch(path, json={"role": "moderator"}, headers=auth),
        "/admin/v1/users/{user_id}",
        "patch",
    )
    await private.fits(
        await admin.delete(path, headers=auth), "/admin/v1/users/{user_id}", "delete"
    )
    resp = await admin.post(
        f"/admin/v1/movies/{mid}/unpublish", json={"reason": "docs"}, headers=auth
    )
    await private.fits(resp, "/admin/v1/movies/{movie_id}/unpublish", "post")
    resp = await admin.post(f"/admin/v1/movies/{mid}/publish", headers=auth)
    await private.fits(resp, "/admin/v1/movies/{movie_id}/publish", "post")
    resp = await admin.post(f"/admin/v1/movies/{mid}/takedown", json={"reason": "x"}, headers=auth)
    await private.fits(resp, "/admin/v1/movies/{movie_id}/takedown", "post")
    resp = await admin.post(f"/admin/v1/movies/{mid}/unpublish", headers=auth)
    await private.fits(resp, "/admin/v1/movies/{movie_id}/unpublish", "post", 409)
    await private.fits(await admin.get("/admin/v1/audit", headers=auth), "/admin/v1/audit")
    await private.fits(
        await admin.get("/admin/v1/reports/views", headers=auth), "/admin/v1/reports/views"
    )
    assert (public.checked, private.checked) == (6, 17)

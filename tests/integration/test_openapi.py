"""The OpenAPI documents of both services: valid OpenAPI 3.1, one operation for every
route, generated from the same models that parse requests (bad input is 422 with the
field path) and describe replies (real replies validate against them)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from admin.app import create_app as create_admin
from gateway.app import create_app as create_gateway
from runtime.settings import Settings
from tests.integration.helpers import bearer, register_and_login

ADMIN_DOC = "/admin/v1/openapi.json"
STRIPE_WEBHOOK = "/billing/stripe/webhook"
MOBILE_MONEY_CALLBACK = "/billing/mobile-money/{provider}/callback"
PUBLIC_DOC = "/v1/openapi.json"

#: Routes that are deliberately not in the documents, and why.
NOT_DOCUMENTED: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "operations: liveness probe, the same on every service",
    ("GET", "/readyz"): "operations: readiness probe, the same on every service",
    ("GET", "/metrics"): "operations: Prometheus scrape, not an API",
    ("GET", ADMIN_DOC): "the document itself",
    ("GET", PUBLIC_DOC): "the document itself",
    ("GET", "/"): "HTML page for browsers",
    ("GET", "/watch/{movie_id}"): "HTML page for browsers",
    ("GET", "/upgrade"): "HTML page for browsers",
    ("GET", "/favicon.ico"): "browser asset",
    ("GET", "/static/{name}"): "scripts and styles of the HTML pages",
}

AppFactory = Callable[[Settings], web.Application]


@pytest.fixture
async def gateway(settings: Settings, aiohttp_client) -> TestClient:
    return await aiohttp_client(create_gateway(settings))


@pytest.fixture
async def admin(settings: Settings, aiohttp_client) -> TestClient:
    return await aiohttp_client(create_admin(settings))


async def document(client: TestClient, path: str) -> dict[str, Any]:
    resp = await client.get(path)
    assert resp.status == 200
    assert resp.content_type == "application/json"
    doc: dict[str, Any] = await resp.json()
    return doc


def check_reply(doc: dict[str, Any], path: str, method: str, status: int, body: Any) -> None:
    """Assert ``body`` fits the schema the document gives for this reply."""
    responses = doc["paths"][path][method]["responses"]
    schema = responses[str(status)]["content"]["application/json"]["schema"]
    validator = Draft202012Validator(
        {**schema, "components": doc["components"]},
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    validator.validate(body)


async def admin_token(gateway: TestClient, pg: asyncpg.Connection) -> str:
    account = await register_and_login(gateway)
    await pg.execute("UPDATE users SET role = 'admin' WHERE email = $1", account["email"])
    resp = await gateway.post(
        "/v1/auth/login",
        json={"email": account["email"], "password": "correct horse battery staple"},
    )
    assert resp.status == 200
    return str((await resp.json())["access_token"])


def field_paths(body: dict[str, Any]) -> list[str]:
    return [f["path"] for f in body["error"]["fields"]]


# ------------------------------------------------------------------ the documents


@pytest.mark.parametrize(
    ("which", "path"), [("gateway", PUBLIC_DOC), ("admin", ADMIN_DOC)], ids=["public", "admin"]
)
async def test_documents_are_valid_openapi_31(
    which: str, path: str, gateway: TestClient, admin: TestClient
) -> None:
    client = gateway if which == "gateway" else admin
    resp = await client.get(path)
    assert resp.headers["Cache-Control"] == "public, max-age=300"
    doc = await document(client, path)
    validate(doc)  # raises on the first problem
    assert doc["openapi"] == "3.1.0"
    for item in doc["paths"].values():
        for op in item.values():
            assert op["summary"]
            assert "default" in op["responses"]


@pytest.mark.parametrize(
    ("factory", "path"),
    [(create_gateway, PUBLIC_DOC), (create_admin, ADMIN_DOC)],
    ids=["public", "admin"],
)
async def test_every_route_is_in_its_document(
    factory: AppFactory, path: str, settings: Settings, aiohttp_client
) -> None:
    app = factory(settings)
    client: TestClient = await aiohttp_client(app)
    doc = await document(client, path)
    documented = {
        (method.upper(), p): op["operationId"]
        for p, item in doc["paths"].items()
        for method, op in item.items()
    }
    routes: dict[tuple[str, str], str] = {}
    for route in app.router.routes():
        assert route.resource is not None
        key = (route.method, route.resource.canonical)
        if route.method == "HEAD":
            continue  # aiohttp answers HEAD for every GET; the GET is checked
        routes[key] = route.handler.__name__
    missing = {k for k in routes if k not in documented and k not in NOT_DOCUMENTED}
    assert not missing, f"routes missing from {path}: {sorted(missing)}"
    stale = {k for k in documented if k not in routes}
    assert not stale, f"documented but not routed: {sorted(stale)}"
    for key, op_id in documented.items():
        assert routes[key] == op_id, key
    excluded_here = {k for k in NOT_DOCUMENTED if k in routes}
    assert not excluded_here & set(documented), "excluded routes must not be documented"


async def test_public_document_covers_auth_catalogue_playback_progress_hls(
    gateway: TestClient,
) -> None:
    doc = await document(gateway, PUBLIC_DOC)
    paths = doc["paths"]
    for path in (
        "/v1/auth/login",
        "/v1/movies",
        "/v1/playback/{id}",
        "/v1/me/progress/{movie_id}",
        "/hls/{movie_id}/master.m3u8",
        "/hls/{movie_id}/{rendition}/{name}",
    ):
        assert path in paths, path
    movies = paths["/v1/movies"]["get"]
    assert {p["name"] for p in movies["parameters"]} == {"q", "category", "cursor", "limit"}
    master = paths["/hls/{movie_id}/master.m3u8"]["get"]
    token = next(p for p in master["parameters"] if p["name"] == "t")
    assert token["in"] == "query"
    assert token["required"] is True
    assert set(master["responses"]["200"]["content"]) == {"application/vnd.apple.mpegurl"}
    segment = paths["/hls/{movie_id}/{rendition}/{name}"]["get"]
    assert {"video/mp2t", "video/mp4"} <= set(segment["responses"]["200"]["content"])
    assert "206" in segment["responses"]
    login = paths["/v1/auth/login"]["post"]
    assert login["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Credentials"
    }
    assert set(doc["components"]["schemas"]["Credentials"]["required"]) == {"email", "password"}
    me = paths["/v1/me"]["get"]
    assert me["security"] == [{"bearer": []}, {"access_cookie": []}]


async def test_admin_document_declares_parameters_and_schemas(admin: TestClient) -> None:
    doc = await document(admin, ADMIN_DOC)
    for path, item in doc["paths"].items():
        for op in item.values():
            names = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
            assert names == [s[1:-1] for s in path.split("/") if s.startswith("{")], path
            if path == STRIPE_WEBHOOK:
                # authenticated by Stripe's signature of the body, not by a token
                assert "security" not in op
                headers = [p["name"] for p in op["parameters"] if p["in"] == "header"]
                assert headers == ["Stripe-Signature"]
                continue
            if path == MOBILE_MONEY_CALLBACK:
                # authenticated by the signed reference in its URL, not by a token
                assert "security" not in op
                queries = [p["name"] for p in op["parameters"] if p["in"] == "query"]
                assert queries == ["sig", "ref"]
                continue
            if path == "/admin/v1/uploads/{upload_id}/data":
                # the streaming upload is authorised by the one-time token in its URL
                assert op["security"] == [{"upload_token": []}]
            else:
                assert op["security"] == [{"bearer": []}, {"access_cookie": []}]
            ok = [s for s in op["responses"] if s.startswith("2")]
            assert ok, path
    report = doc["paths"]["/admin/v1/reports/ads"]["get"]
    assert [p["name"] for p in report["parameters"]] == ["from", "to"]
    assert set(doc["components"]["schemas"]["NewCampaign"]["required"]) == {
        "name",
        "starts_at",
        "ends_at",
    }


# ------------------------------------------------------------------ models parse requests


async def test_bad_bodies_and_queries_are_422_with_the_field_path(
    gateway: TestClient, admin: TestClient, pg: asyncpg.Connection
) -> None:
    resp = await gateway.post("/v1/auth/register", json={"email": 5, "password": "x" * 12})
    assert resp.status == 422
    body = await resp.json()
    assert body["error"]["code"] == "invalid_request"
    assert field_paths(body) == ["email"]
    assert body["error"]["request_id"] == resp.headers["X-Request-ID"]

    resp = await gateway.get("/v1/movies?limit=abc")
    assert resp.status == 422
    assert field_paths(await resp.json()) == ["limit"]

    auth = bearer(await admin_token(gateway, pg))
    now = datetime.now(UTC)
    campaign = {
        "name": "Launch",
        "starts_at": now.isoformat(),
        "ends_at": (now + timedelta(days=1)).isoformat(),
    }
    for bad, paths in (
        ({**campaign, "weight": "x"}, ["weight"]),
        ({**campaign, "target_plans": ["free", "gold"]}, ["target_plans[1]"]),
        ({**campaign, "starts_at": "2026-01-01T00:00:00"}, ["starts_at"]),
        ({**campaign, "ad_ids": ["not-a-uuid"]}, ["ad_ids[0]"]),
        ({"name": " "}, ["name", "starts_at", "ends_at"]),
    ):
        resp = await admin.post("/admin/v1/campaigns", json=bad, headers=auth)
        assert resp.status == 422, bad
        assert field_paths(await resp.json()) == paths, bad
    resp = await admin.post(
        "/admin/v1/ads", json={"name": "x", "click_url": "ftp://x"}, headers=auth
    )
    assert resp.status == 422
    assert field_paths(await resp.json()) == ["click_url"]
    resp = await admin.get("/admin/v1/reports/ads?from=2026-02-01&to=2026-01-01", headers=auth)
    assert resp.status == 422
    assert field_paths(await resp.json()) == ["from"]
    resp = await admin.patch(
        "/admin/v1/campaigns/00000000-0000-0000-0000-000000000000",
        json={"status": "sleeping"},
        headers=auth,
    )
    assert resp.status == 422
    assert field_paths(await resp.json()) == ["status"]


# ------------------------------------------------------------------ replies fit their schemas


async def test_gateway_replies_fit_the_document(gateway: TestClient) -> None:
    doc = await document(gateway, PUBLIC_DOC)
    account = await register_and_login(gateway)
    check_reply(
        doc, "/v1/auth/login", "post", 200, {k: v for k, v in account.items() if k != "email"}
    )
    token = account["access_token"]
    resp = await gateway.get("/v1/me", headers=bearer(token))
    check_reply(doc, "/v1/me", "get", 200, await resp.json())
    resp = await gateway.post("/v1/auth/refresh", json={"refresh_token": account["refresh_token"]})
    assert resp.status == 200
    check_reply(doc, "/v1/auth/refresh", "post", 200, await resp.json())
    resp = await gateway.get("/.well-known/jwks.json")
    check_reply(doc, "/.well-known/jwks.json", "get", 200, await resp.json())
    resp = await gateway.get("/v1/movies?limit=2&q=%20film%20")
    assert resp.status == 200
    check_reply(doc, "/v1/movies", "get", 200, await resp.json())
    resp = await gateway.get("/v1/me/history", headers=bearer(token))
    check_reply(doc, "/v1/me/history", "get", 200, await resp.json())
    resp = await gateway.post("/v1/auth/register", json={"email": 5})
    check_reply(doc, "/v1/auth/register", "post", 422, await resp.json())


async def test_admin_replies_fit_the_document(
    gateway: TestClient, admin: TestClient, pg: asyncpg.Connection
) -> None:
    doc = await document(admin, ADMIN_DOC)
    auth = bearer(await admin_token(gateway, pg))
    resp = await admin.post(
        "/admin/v1/ads",
        json={"name": " Airtel ", "click_url": "https://airtel.example"},
        headers=auth,
    )
    assert resp.status == 201
    ad = await resp.json()
    assert ad["name"] == "Airtel"
    check_reply(doc, "/admin/v1/ads", "post", 201, ad)
    check_reply(
        doc,
        "/admin/v1/ads",
        "get",
        200,
        await (await admin.get("/admin/v1/ads", headers=auth)).json(),
    )
    resp = await admin.get(f"/admin/v1/ads/{ad['id']}", headers=auth)
    check_reply(doc, "/admin/v1/ads/{ad_id}", "get", 200, await resp.json())
    now = datetime.now(UTC)
    resp = await admin.post(
        "/admin/v1/campaigns",
        json={
            "name": "Launch",
            "starts_at": now.isoformat(),
            "ends_at": (now + timedelta(days=1)).isoformat(),
            "target_countries": ["ug", "ke"],
            "target_categories": [],
            "ad_ids": [ad["id"], ad["id"]],
        },
        headers=auth,
    )
    assert resp.status == 201, await resp.text()
    campaign = await resp.json()
    assert campaign["target_countries"] == ["UG", "KE"]
    assert campaign["target_categories"] == []
    assert campaign["ad_ids"] == [ad["id"]]
    assert campaign["weight"] == 1
    check_reply(doc, "/admin/v1/campaigns", "post", 201, campaign)
    resp = await admin.patch(
        f"/admin/v1/campaigns/{campaign['id']}", json={"weight": 7}, headers=auth
    )
    changed = await resp.json()
    assert (changed["weight"], changed["status"]) == (7, "active")
    check_reply(doc, "/admin/v1/campaigns/{campaign_id}", "patch", 200, changed)
    resp = await admin.get("/admin/v1/campaigns", headers=auth)
    check_reply(doc, "/admin/v1/campaigns", "get", 200, await resp.json())
    resp = await admin.put("/admin/v1/break-policies/default", json={}, headers=auth)
    policy = await resp.json()
    assert policy == {
        "target": "default",
        "preroll": True,
        "use_cue_points": True,
        "postroll": False,
        "midroll_every_s": None,
        "max_pod_s": 60,
        "max_ads_per_pod": 2,
    }
    check_reply(doc, "/admin/v1/break-policies/{target}", "put", 200, policy)
    resp = await admin.get("/admin/v1/reports/ads?from=2026-01-01&to=2026-01-31", headers=auth)
    report = await resp.json()
    assert (report["from"], report["to"]) == ("2026-01-01", "2026-01-31")
    check_reply(doc, "/admin/v1/reports/ads", "get", 200, report)

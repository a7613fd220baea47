"""People and law against the real PostgreSQL and Redis: the viewer's profile (birth year
once, age gate), data export and erasure, role checks on every admin route, the audit
log, and the views report."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from admin.app import create_app as create_admin
from gateway.app import create_app as create_gateway
from runtime.api import ApiRoute, api_routes_key
from runtime.settings import Settings
from tests.conftest import Film
from tests.integration.catalogue_support import (
    Account,
    create_film,
    demo_admin,
    first_segment,
    login,
    new_account,
    published_film,
    refused_code,
    start_playback,
)
from tests.integration.helpers import PASSWORD

#: admin writes a moderator may make
MODERATOR_WRITES = {("POST", "/admin/v1/movies/{movie_id}/unpublish")}
#: admin routes that need no token (none: a signed upload URL would be listed here)
#: The streaming upload target: authorised by the one-time token in its URL, which a
#: bearer cannot replace (tests/integration/test_uploads*.py cover the token).
URL_TOKEN_ROUTES: set[tuple[str, str]] = {("PUT", "/admin/v1/uploads/{upload_id}/data")}

#: Admin routes without a bearer token, each authenticated another way.
PUBLIC_ADMIN_ROUTES: set[tuple[str, str]] = {
    ("POST", "/billing/stripe/webhook"),  # Stripe's signature of the body (400 without)
    # the provider's callback: the signed reference in its URL (400 without)
    ("POST", "/billing/mobile-money/{provider}/callback"),
    ("PUT", "/billing/mobile-money/{provider}/callback"),
}


@pytest.fixture
async def gateway(play_settings: Settings, aiohttp_client) -> TestClient:
    return await aiohttp_client(create_gateway(play_settings))


@pytest.fixture
async def admin(play_settings: Settings, aiohttp_client) -> TestClient:
    return await aiohttp_client(create_admin(play_settings))


@pytest.fixture
async def boss(gateway: TestClient) -> Account:
    return await demo_admin(gateway)


def field_paths(body: dict[str, Any]) -> list[str]:
    return [f["path"] for f in body["error"]["fields"]]


# ------------------------------------------------------------------ the viewer's profile


async def test_birth_year_is_set_once_and_opens_the_age_gate(
    gateway: TestClient,
    admin: TestClient,
    boss: Account,
    pg: asyncpg.Connection,
    film: Film,
) -> None:
    adult = await published_film(admin, boss.auth, pg, film, min_age=18)
    viewer = await new_account(gateway, pg)
    resp = await gateway.get("/v1/me", headers=viewer.auth)
    me = await resp.json()
    assert resp.headers["Cache-Control"] == "no-store"
    assert (me["id"], me["email"], me["role"], me["plan"]) == (
        viewer.id,
        viewer.email,
        "user",
        "free",
    )
    assert (me["birth_year"], me["birth_year_locked"], me["display_name"]) == (None, False, None)
    resp = await gateway.post(f"/v1/playback/{adult['id']}", headers=viewer.auth)
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "age_restricted"

    for bad, paths in (
        ({"birth_year": 1800}, ["birth_year"]),
        ({"birth_year": datetime.now(UTC).year + 1}, ["birth_year"]),
        ({"birth_year": "1990"}, ["birth_year"]),
        ({"display_name": " "}, ["display_name"]),
        ({"display_name": "a\u0000b"}, ["display_name"]),
        ({"display_name": "x" * 81}, ["display_name"]),
    ):
        resp = await gateway.patch("/v1/me", json=bad, headers=viewer.auth)
        assert resp.status == 422, bad
        assert field_paths(await resp.json()) == paths, bad

    resp = await gateway.patch(
        "/v1/me", json={"birth_year": 1995, "display_name": "  Aisha N. "}, headers=viewer.auth
    )
    assert resp.status == 200, await resp.text()
    me = await resp.json()
    assert (me["birth_year"], me["birth_year_locked"], me["display_name"]) == (
        1995,
        True,
        "Aisha N.",
    )
    # the same year again is fine; another one is refused, and nothing changed
    resp = await gateway.patch("/v1/me", json={"birth_year": 1995}, headers=viewer.auth)
    assert resp.status == 200
    resp = await gateway.patch(
        "/v1/me", json={"birth_year": 1980, "display_name": "Other"}, headers=viewer.auth
    )
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "birth_year_locked"
    me = await (await gateway.get("/v1/me", headers=viewer.auth)).json()
    assert (me["birth_year"], me["display_name"]) == (1995, "Aisha N.")
    resp = await gateway.patch("/v1/me", json={"display_name": None}, headers=viewer.auth)
    assert (await resp.json())["display_name"] is None

    resp = await gateway.post(f"/v1/playback/{adult['id']}", headers=viewer.auth)
    assert resp.status == 201, await resp.text()
    resp = await gateway.patch("/v1/me", json={}, headers={"Authorization": "Bearer nope"})
    assert resp.status == 401


async def test_two_racing_birth_years_one_wins(gateway: TestClient, pg: asyncpg.Connection) -> None:
    viewer = await new_account(gateway, pg)
    answers = await asyncio.gather(
        *(
            gateway.patch("/v1/me", json={"birth_year": year}, headers=viewer.auth)
            for year in (1990, 1991, 1992, 1993)
        )
    )
    assert sorted(r.status for r in answers) == [200, 409, 409, 409]
    stored = await pg.fetchval("SELECT birth_year FROM users WHERE id = $1", uuid.UUID(viewer.id))
    winner = next(r for r in answers if r.status == 200)
    assert (await winner.json())["birth_year"] == stored


# ------------------------------------------------------------------ data requests


async def test_export_then_erasure(
    gateway: TestClient,
    admin: TestClient,
    boss: Account,
    pg: asyncpg.Connection,
    film: Film,
) -> None:
    movie = await published_film(admin, boss.auth, pg, film)
    viewer = await new_account(gateway, pg)
    tv = await login(gateway, viewer.email, PASSWORD)  # signed in on a second device
    resp = await gateway.patch(
        "/v1/me", json={"birth_year": 2001, "display_name": "Okello"}, headers=viewer.auth
    )
    assert resp.status == 200
    started = await start_playback(gateway, viewer, movie["id"])
    segment = await first_segment(gateway, started["manifest_url"])
    assert (await gateway.get(segment)).status == 200
    resp = await gateway.put(
        f"/v1/me/progress/{movie['id']}", json={"position_s": 7.5}, headers=viewer.auth
    )
    assert resp.status == 204

    # support finds the account by email, and exports it
    found = await (
        await admin.get("/admin/v1/users", params={"q": viewer.email.upper()}, headers=boss.auth)
    ).json()
    assert [u["id"] for u in found["items"]] == [viewer.id]
    resp = await admin.get(f"/admin/v1/users/{viewer.id}/export", headers=boss.auth)
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    export = await resp.json()
    account = export["account"]
    assert (account["id"], account["email"], account["display_name"]) == (
        viewer.id,
        viewer.email,
        "Okello",
    )
    assert account["birth_year"] == 2001
    assert [s["id"] for s in export["sessions"]] == [started["session_id"]]
    assert export["sessions"][0]["movie_title"] == movie["title"]
    assert export["sessions"][0]["client_ip"]
    assert [(p["movie_id"], p["position_s"]) for p in export["progress"]] == [(movie["id"], 7.5)]
    assert len(export["logins"]) == 2  # the phone and the TV
    assert "user.birth_year_set" in {a["action"] for a in export["audit"]}
    # the viewer gets the same document
    own = await (await gateway.get("/v1/me/export", headers=viewer.auth)).json()
    assert own["account"] == account
    assert own["sessions"] == export["sessions"]

    resp = await admin.delete(f"/admin/v1/users/{viewer.id}", headers=boss.auth)
    assert resp.status == 200, await resp.text()
    erased = await resp.json()
    assert erased == {
        "user_id": viewer.id,
        "already_erased": False,
        "logins_revoked": 2,
        "sessions_ended": 1,
        "progress_deleted": 1,
    }
    # no way back in: password login, refresh, the access token, the live session
    resp = await gateway.post("/v1/auth/login", json={"email": viewer.email, "password": PASSWORD})
    assert resp.status == 401
    for device in (viewer, tv):
        resp = await gateway.post("/v1/auth/refresh", json={"refresh_token": device.refresh_token})
        assert resp.status == 401
        assert (await gateway.get("/v1/me", headers=device.auth)).status == 401
    assert await refused_code(gateway, segment) == "session_revoked"
    # what is left is anonymous
    export = await (
        await admin.get(f"/admin/v1/users/{viewer.id}/export", headers=boss.auth)
    ).json()
    account = export["account"]
    assert account["email"] == f"erased-{uuid.UUID(viewer.id).hex}@erased.invalid"
    assert (account["display_name"], account["birth_year"], account["country"]) == (
        None,
        None,
        None,
    )
    assert account["erased_at"]
    assert account["disabled_at"]
    assert export["progress"] == []
    assert [(s["client_ip"], s["user_agent"]) for s in export["sessions"]] == [(None, None)]
    assert all(login["revoked_at"] for login in export["logins"])
    assert viewer.email not in str(export)
    row = await pg.fetchrow(
        "SELECT password_hash, email FROM users WHERE id = $1", uuid.UUID(viewer.id)
    )
    assert row["password_hash"] == ""
    assert await pg.fetchval("SELECT count(*) FROM users WHERE email = $1", viewer.email) == 0
    # the stored session state (address, user agent) is gone too
    states = await pg.fetch(
        "SELECT state FROM playback_sessions WHERE user_id = $1", uuid.UUID(viewer.id)
    )
    assert states
    assert all(r["state"] is None for r in states)
    audit = await (
        await admin.get(
            "/admin/v1/audit",
            params={"target": viewer.id, "action": "user.erase"},
            headers=boss.auth,
        )
    ).json()
    assert [a["actor_id"] for a in audit["items"]] == [boss.id]
    # again: nothing left to do, nothing written
    resp = await admin.delete(f"/admin/v1/users/{viewer.id}", headers=boss.auth)
    assert (await resp.json())["already_erased"] is True
    resp = await admin.delete(f"/admin/v1/users/{boss.id}", headers=boss.auth)
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "cannot_change_self"
    resp = await admin.delete(f"/admin/v1/users/{uuid.uuid4()}", headers=boss.auth)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "user_not_found"


async def test_role_change_revokes_the_old_role(
    gateway: TestClient, admin: TestClient, boss: Account, pg: asyncpg.Connection
) -> None:
    staff = await new_account(gateway, pg, "moderator")
    assert (await admin.get("/admin/v1/movies", headers=staff.auth)).status == 200
    resp = await admin.patch(
        f"/admin/v1/users/{staff.id}", json={"role": "user"}, headers=boss.auth
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["role"] == "user"
    # the moderator's token is revoked, not merely outdated
    assert (await admin.get("/admin/v1/movies", headers=staff.auth)).status == 401
    resp = await admin.patch(
        f"/admin/v1/users/{staff.id}", json={"role": "boss"}, headers=boss.auth
    )
    assert resp.status == 422
    assert field_paths(await resp.json()) == ["role"]
    resp = await admin.patch(f"/admin/v1/users/{boss.id}", json={"role": "user"}, headers=boss.auth)
    assert resp.status == 409
    resp = await admin.patch(
        f"/admin/v1/users/{staff.id}", json={"disabled": True}, headers=boss.auth
    )
    assert (await resp.json())["disabled_at"]
    resp = await gateway.post("/v1/auth/login", json={"email": staff.email, "password": PASSWORD})
    assert resp.status == 401
    audit = await (
        await admin.get("/admin/v1/audit", params={"target": staff.id}, headers=boss.auth)
    ).json()
    assert [(a["action"], a["details"]["after"]) for a in audit["items"]] == [
        ("user.update", {"disabled": True}),
        ("user.update", {"role": "user"}),
    ]
    assert audit["items"][1]["details"]["before"] == {"role": "moderator"}


# ------------------------------------------------------------------ roles and the audit log


def _concrete(path: str) -> str:
    """A path of the route table with every parameter filled (nothing there exists)."""

    def fill(match: re.Match[str]) -> str:
        name = match[1]
        if name == "slug":
            return "no-such-category"
        if name == "target":
            return "default"
        return str(uuid.uuid4())

    return re.sub(r"\{(\w+)(?::[^}]*)?\}", fill, path)


async def test_every_admin_route_checks_the_role(
    gateway: TestClient, admin: TestClient, pg: asyncpg.Connection
) -> None:
    viewer = await new_account(gateway, pg)
    moderator = await new_account(gateway, pg, "moderator")
    table: list[ApiRoute] = admin.app[api_routes_key]
    assert len(table) >= 25
    assert {(r.method, r.path) for r in table if not r.auth} == PUBLIC_ADMIN_ROUTES
    checked = 0
    for route in table:
        if not route.auth:
            continue
        path = _concrete(route.path)
        if (route.method, route.path) in URL_TOKEN_ROUTES:
            for headers in ({}, viewer.auth, moderator.auth):
                resp = await admin.request(route.method, path, data=b"x", headers=headers)
                assert resp.status in (403, 404), (route.path, resp.status)
            checked += 1
            continue
        write = route.method != "GET"
        kwargs: dict[str, Any] = {"json": {}} if write else {}
        what = f"{route.method} {route.path}"
        resp = await admin.request(route.method, path, **kwargs)
        assert resp.status == 401, what
        resp = await admin.request(route.method, path, headers=viewer.auth, **kwargs)
        assert resp.status == 403, what
        assert (await resp.json())["error"]["code"] == "forbidden_role", what
        resp = await admin.request(route.method, path, headers=moderator.auth, **kwargs)
        if write and (route.method, route.path) not in MODERATOR_WRITES:
            assert resp.status == 403, what
            assert (await resp.json())["error"]["code"] == "forbidden_role", what
        else:
            assert resp.status not in (401, 403), (what, await resp.text())
        checked += 1
    assert checked == len(table) - len(PUBLIC_ADMIN_ROUTES)


async def test_audit_log_lists_changes_newest_first_with_filters(
    admin: TestClient, boss: Account
) -> None:
    movie = await create_film(admin, boss.auth, year=2020)
    resp = await admin.patch(
        f"/admin/v1/movies/{movie['id']}",
        json={"year": 2021, "title": movie["title"]},
        headers=boss.auth,
    )
    assert resp.status == 200
    # an edit that changes nothing writes nothing
    await admin.patch(f"/admin/v1/movies/{movie['id']}", json={"year": 2021}, headers=boss.auth)
    resp = await admin.get(
        "/admin/v1/audit", params={"target": movie["id"], "limit": 1}, headers=boss.auth
    )
    page = await resp.json()
    (update,) = page["items"]
    assert update["action"] == "movie.update"
    assert update["details"] == {"before": {"year": 2020}, "after": {"year": 2021}}
    assert (update["actor_id"], update["actor_email"]) == (boss.id, boss.email)
    assert update["request_id"]
    assert update["at"]
    resp = await admin.get(
        "/admin/v1/audit",
        params={"target": movie["id"], "limit": 1, "cursor": page["next_cursor"]},
        headers=boss.auth,
    )
    page = await resp.json()
    (create,) = page["items"]
    assert create["action"] == "movie.create"
    assert create["details"]["after"]["year"] == 2020
    assert page["next_cursor"] is None
    mine = await (
        await admin.get("/admin/v1/audit", params={"actor": boss.id}, headers=boss.auth)
    ).json()
    assert mine["items"]
    assert all(a["actor_id"] == boss.id for a in mine["items"])
    resp = await admin.get("/admin/v1/audit?actor=someone", headers=boss.auth)
    assert resp.status == 422
    assert field_paths(await resp.json()) == ["actor"]
    resp = await admin.get("/admin/v1/audit?cursor=abc", headers=boss.auth)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_cursor"


# ------------------------------------------------------------------ the views report


async def test_views_report_counts_starts_viewers_and_watch_time(
    admin: TestClient, boss: Account, pg: asyncpg.Connection
) -> None:
    movie = await create_film(admin, boss.auth)
    mid = uuid.UUID(movie["id"])
    await pg.execute("UPDATE movies SET duration_s = 600 WHERE id = $1", mid)
    users = [
        await pg.fetchval(
            "INSERT INTO users (email, password_hash) VALUES ($1, 'x') RETURNING id",
            f"report-{uuid.uuid4().hex[:10]}@example.ug",
        )
        for _ in range(2)
    ]
    a, b = users
    day1 = datetime(2024, 3, 10, tzinfo=UTC)
    day2 = day1 + timedelta(days=1)
    for user, at in (
        (a, day1 + timedelta(hours=9)),
        (a, day1 + timedelta(hours=20)),
        (b, day1 + timedelta(hours=10)),
        (a, day2 + timedelta(hours=8)),
    ):
        await pg.execute(
            """INSERT INTO playback_sessions (id, user_id, movie_id, plan_id, renditions,
                   created_at, expires_at) VALUES ($1, $2, $3, 'free', '{}', $4, $5)""",
            f"rep-{uuid.uuid4().hex[:16]}",
            user,
            mid,
            at,
            at + timedelta(hours=4),
        )
    # a got to 100 s on day 1 (after starting); b to 5000 s: capped at the film's 600 s
    await pg.execute(
        """INSERT INTO watch_progress (user_id, movie_id, position_s, updated_at)
           VALUES ($1, $3, 100, $4), ($2, $3, 5000, $5)""",
        a,
        b,
        mid,
        day1 + timedelta(hours=12),
        day1 + timedelta(hours=11),
    )
    resp = await admin.get(
        "/admin/v1/reports/views",
        params={"from": "2024-03-10", "to": "2024-03-11"},
        headers=boss.auth,
    )
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert (report["from"], report["to"]) == ("2024-03-10", "2024-03-11")
    rows = [r for r in report["items"] if r["movie_id"] == movie["id"]]
    assert [(r["day"], r["starts"], r["viewers"], r["watch_time_s"]) for r in rows] == [
        ("2024-03-10", 3, 2, 700.0),
        # a's progress was saved before the day-2 start: nothing new reached that day
        ("2024-03-11", 1, 1, 0.0),
    ]
    assert rows[0]["title"] == movie["title"]
    resp = await admin.get(
        "/admin/v1/reports/views",
        params={"from": "2024-03-12", "to": "2024-03-11"},
        headers=boss.auth,
    )
    assert resp.status == 422
    assert field_paths(await resp.json()) == ["from"]

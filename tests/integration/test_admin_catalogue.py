"""Admin catalogue API against the real PostgreSQL and Redis: films (create, edit,
validation, listing), categories, publishing, and what unpublish and takedown do to the
gateway (new playback, live sessions, search, trending, history)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from admin.app import create_app as create_admin
from gateway.app import create_app as create_gateway
from runtime.settings import Settings
from tests.conftest import Film
from tests.integration.catalogue_support import (
    Account,
    create_film,
    demo_admin,
    first_segment,
    ingest,
    new_account,
    published_film,
    refused_code,
    start_playback,
    unique_title,
)


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


async def category(admin: TestClient, boss: Account, stem: str) -> str:
    slug = f"{stem}-{uuid.uuid4().hex[:8]}"
    resp = await admin.post(
        "/admin/v1/categories", json={"slug": slug, "name": stem.title()}, headers=boss.auth
    )
    assert resp.status == 201, await resp.text()
    return slug


# ------------------------------------------------------------------ films


async def test_create_edit_and_validate(admin: TestClient, boss: Account) -> None:
    drama = await category(admin, boss, "drama")
    title = unique_title("  Kampala Nights")
    resp = await admin.post(
        "/admin/v1/movies",
        json={
            "title": title,
            "description": "A night in the city.",
            "year": 2024,
            "categories": [drama],
            "min_age": 16,
            "geo_allow": ["ug", "KE"],
        },
        headers=boss.auth,
    )
    assert resp.status == 201, await resp.text()
    movie = await resp.json()
    assert movie["status"] == "draft"
    assert movie["title"] == title.strip()
    assert movie["categories"] == [drama]
    assert movie["geo_allow"] == ["UG", "KE"]
    assert movie["geo_block"] == []
    assert movie["renditions"] == []
    assert movie["slug"].startswith("kampala-nights-")

    for bad, paths in (
        ({"title": " "}, ["title"]),
        ({"title": "x", "year": "2024"}, ["year"]),
        ({"title": "x", "min_age": 30}, ["min_age"]),
        ({"title": "x", "geo_allow": ["ug", "uga"]}, ["geo_allow[1]"]),
        ({"title": "x", "categories": [drama, "no-such-category"]}, ["categories[1]"]),
        ({"year": 2020}, ["title"]),
    ):
        resp = await admin.post("/admin/v1/movies", json=bad, headers=boss.auth)
        assert resp.status == 422, bad
        err = (await resp.json())["error"]
        assert err["code"] == "invalid_request", bad
        assert field_paths({"error": err}) == paths, bad

    url = f"/admin/v1/movies/{movie['id']}"
    resp = await admin.patch(
        url, json={"year": None, "categories": [], "geo_allow": None}, headers=boss.auth
    )
    assert resp.status == 200, await resp.text()
    edited = await resp.json()
    assert (edited["year"], edited["categories"], edited["geo_allow"]) == (None, [], None)
    assert edited["title"] == movie["title"]  # absent: unchanged
    for bad, paths in (
        ({"title": None}, ["title"]),
        ({"min_age": -1}, ["min_age"]),
        ({"categories": ["Not A Slug"]}, ["categories[0]"]),
    ):
        resp = await admin.patch(url, json=bad, headers=boss.auth)
        assert resp.status == 422, bad
        assert field_paths(await resp.json()) == paths, bad
    assert (await admin.get(url, headers=boss.auth)).status == 200
    for missing in (str(uuid.uuid4()), "not-a-uuid"):
        resp = await admin.get(f"/admin/v1/movies/{missing}", headers=boss.auth)
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "movie_not_found"


async def test_listing_filters_and_pages(admin: TestClient, boss: Account) -> None:
    stem = unique_title("Listing")
    ids = [(await create_film(admin, boss.auth, title=f"{stem} {i}"))["id"] for i in range(3)]
    resp = await admin.get(
        "/admin/v1/movies", params={"q": stem, "status": "draft", "limit": 2}, headers=boss.auth
    )
    assert resp.status == 200
    first = await resp.json()
    assert [m["id"] for m in first["items"]] == ids[::-1][:2]  # newest first
    assert first["next_cursor"]
    resp = await admin.get(
        "/admin/v1/movies",
        params={"q": stem, "limit": 2, "cursor": first["next_cursor"]},
        headers=boss.auth,
    )
    second = await resp.json()
    assert [m["id"] for m in second["items"]] == [ids[0]]
    assert second["next_cursor"] is None
    resp = await admin.get(
        "/admin/v1/movies", params={"q": stem, "status": "published"}, headers=boss.auth
    )
    assert (await resp.json())["items"] == []
    resp = await admin.get("/admin/v1/movies?status=gone", headers=boss.auth)
    assert resp.status == 422
    assert field_paths(await resp.json()) == ["status"]
    resp = await admin.get("/admin/v1/movies?cursor=%%%", headers=boss.auth)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_cursor"


async def test_categories(gateway: TestClient, admin: TestClient, boss: Account) -> None:
    slug = await category(admin, boss, "comedy")
    resp = await admin.post(
        "/admin/v1/categories", json={"slug": slug, "name": "Again"}, headers=boss.auth
    )
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "category_exists"
    resp = await admin.post(
        "/admin/v1/categories", json={"slug": "Not Valid", "name": ""}, headers=boss.auth
    )
    assert resp.status == 422
    assert field_paths(await resp.json()) == ["slug", "name"]
    resp = await admin.patch(
        f"/admin/v1/categories/{slug}", json={"name": " Stand-up "}, headers=boss.auth
    )
    assert resp.status == 200
    assert await resp.json() == {"slug": slug, "name": "Stand-up", "films": 0, "published_films": 0}
    await create_film(admin, boss.auth, categories=[slug])
    listing = await (await admin.get("/admin/v1/categories", headers=boss.auth)).json()
    mine = next(c for c in listing["items"] if c["slug"] == slug)
    assert (mine["films"], mine["published_films"]) == (1, 0)
    # the public list only shows categories with published films
    public = await (await gateway.get("/v1/categories")).json()
    assert slug not in {c["slug"] for c in public["items"]}
    assert (await admin.delete(f"/admin/v1/categories/{slug}", headers=boss.auth)).status == 204
    resp = await admin.delete(f"/admin/v1/categories/{slug}", headers=boss.auth)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "category_not_found"
    resp = await admin.patch(f"/admin/v1/categories/{slug}", json={"name": "x"}, headers=boss.auth)
    assert resp.status == 404


async def test_publish_needs_renditions_then_film_is_visible_and_playable(
    gateway: TestClient,
    admin: TestClient,
    boss: Account,
    pg: asyncpg.Connection,
    film: Film,
) -> None:
    genre = await category(admin, boss, "thriller")
    created = await create_film(admin, boss.auth, categories=[genre])
    url = f"/admin/v1/movies/{created['id']}"
    resp = await admin.post(url + "/publish", headers=boss.auth)
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "no_renditions"
    viewer = await new_account(gateway, pg)
    resp = await gateway.post(f"/v1/playback/{created['id']}", headers=viewer.auth)
    assert resp.status == 404  # a draft is not playable

    await ingest(pg, film, created["id"])
    resp = await admin.post(url + "/publish", headers=boss.auth)
    assert resp.status == 200, await resp.text()
    published = await resp.json()
    assert published["status"] == "published"
    assert published["published_at"]
    assert published["renditions"]
    found = await (await gateway.get("/v1/movies", params={"q": created["title"]})).json()
    assert [m["id"] for m in found["items"]] == [created["id"]]
    public = await (await gateway.get("/v1/categories")).json()
    assert {"slug": genre, "name": "Thriller", "films": 1} in public["items"]
    started = await start_playback(gateway, viewer, created["id"])
    segment = await first_segment(gateway, started["manifest_url"])
    resp = await gateway.get(segment)
    assert resp.status == 200
    assert len(await resp.read()) > 0
    # publishing again changes nothing
    resp = await admin.post(url + "/publish", headers=boss.auth)
    assert (await resp.json())["published_at"] == published["published_at"]


async def test_takedown_ends_live_playback_and_hides_the_film_everywhere(
    gateway: TestClient,
    admin: TestClient,
    boss: Account,
    pg: asyncpg.Connection,
    film: Film,
) -> None:
    movie = await published_film(admin, boss.auth, pg, film)
    movie_id = movie["id"]
    viewer = await new_account(gateway, pg)
    started = await start_playback(gateway, viewer, movie_id)
    segment = await first_segment(gateway, started["manifest_url"])
    assert (await gateway.get(segment)).status == 200
    resp = await gateway.put(
        f"/v1/me/progress/{movie_id}", json={"position_s": 4}, headers=viewer.auth
    )
    assert resp.status == 204
    history = await (await gateway.get("/v1/me/history", headers=viewer.auth)).json()
    assert movie_id in {h["movie_id"] for h in history["items"]}
    trending = await (await gateway.get("/v1/movies/trending?window=24h")).json()
    assert movie_id in {m["id"] for m in trending["items"]}

    reason = "Rights holder notice #4411"
    resp = await admin.post(
        f"/admin/v1/movies/{movie_id}/takedown", json={"reason": reason}, headers=boss.auth
    )
    assert resp.status == 200, await resp.text()
    taken = await resp.json()
    assert (taken["status"], taken["takedown_reason"]) == ("taken_down", reason)
    assert taken["taken_down_at"]

    # the live session's next segment is refused with a code the player can show
    assert await refused_code(gateway, segment) == "film_unavailable"
    # new playback, the film's page, search, trending and history no longer know it
    other = await new_account(gateway, pg)
    resp = await gateway.post(f"/v1/playback/{movie_id}", headers=other.auth)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "movie_not_found"
    assert (await gateway.get(f"/v1/movies/{movie_id}")).status == 404
    found = await (await gateway.get("/v1/movies", params={"q": movie["title"]})).json()
    assert found["items"] == []
    for window in ("24h", "7d"):
        trending = await (await gateway.get(f"/v1/movies/trending?window={window}")).json()
        assert movie_id not in {m["id"] for m in trending["items"]}
    history = await (await gateway.get("/v1/me/history", headers=viewer.auth)).json()
    assert movie_id not in {h["movie_id"] for h in history["items"]}
    ended = await pg.fetchrow(
        "SELECT ended_at, ended_reason FROM playback_sessions WHERE id = $1",
        started["session_id"],
    )
    assert ended["ended_at"] is not None
    assert ended["ended_reason"] == "film_unavailable"

    # the reason is in the audit log, with who and the state before and after
    resp = await admin.get(
        "/admin/v1/audit",
        params={"target": movie_id, "action": "movie.takedown"},
        headers=boss.auth,
    )
    (row,) = (await resp.json())["items"]
    assert row["actor_id"] == boss.id
    assert row["details"]["reason"] == reason
    assert row["details"]["before"] == {"status": "published"}
    assert row["details"]["after"] == {"status": "taken_down"}
    # taking it down again keeps the first reason and writes nothing
    resp = await admin.post(
        f"/admin/v1/movies/{movie_id}/takedown", json={"reason": "again"}, headers=boss.auth
    )
    assert (await resp.json())["takedown_reason"] == reason
    resp = await admin.post(
        f"/admin/v1/movies/{movie_id}/takedown", json={"reason": " "}, headers=boss.auth
    )
    assert resp.status == 422
    assert field_paths(await resp.json()) == ["reason"]


async def test_moderator_unpublishes_and_admin_publishes_again(
    gateway: TestClient,
    admin: TestClient,
    boss: Account,
    pg: asyncpg.Connection,
    film: Film,
) -> None:
    movie = await published_film(admin, boss.auth, pg, film)
    url = f"/admin/v1/movies/{movie['id']}"
    moderator = await new_account(gateway, pg, "moderator")
    viewer = await new_account(gateway, pg)
    started = await start_playback(gateway, viewer, movie["id"])
    segment = await first_segment(gateway, started["manifest_url"])

    resp = await admin.post(url + "/publish", headers=moderator.auth)
    assert resp.status == 403  # a moderator may not publish...
    resp = await admin.post(url + "/takedown", json={"reason": "x"}, headers=moderator.auth)
    assert resp.status == 403  # ...nor take down
    resp = await admin.post(
        url + "/unpublish", json={"reason": "wrong poster"}, headers=moderator.auth
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["status"] == "unpublished"
    assert await refused_code(gateway, segment) == "film_unavailable"
    assert (await gateway.post(f"/v1/playback/{movie['id']}", headers=viewer.auth)).status == 404
    resp = await admin.post(url + "/unpublish", headers=moderator.auth)
    assert resp.status == 200  # again: nothing left to do
    audit = await (
        await admin.get("/admin/v1/audit", params={"target": movie["id"]}, headers=boss.auth)
    ).json()
    assert [r["action"] for r in audit["items"]][:2] == ["movie.unpublish", "movie.publish"]
    assert audit["items"][0]["actor_id"] == moderator.id
    assert audit["items"][0]["details"]["reason"] == "wrong poster"

    resp = await admin.post(url + "/publish", headers=boss.auth)
    assert resp.status == 200
    again = await start_playback(gateway, viewer, movie["id"])
    assert (await gateway.get(await first_segment(gateway, again["manifest_url"]))).status == 200
    draft = await create_film(admin, boss.auth)
    resp = await admin.post(f"/admin/v1/movies/{draft['id']}/unpublish", headers=boss.auth)
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "not_published"


async def test_trending_counts_starts_per_window_and_follows_the_catalogue(
    gateway: TestClient,
    admin: TestClient,
    boss: Account,
    pg: asyncpg.Connection,
    film: Film,
) -> None:
    recent = await published_film(admin, boss.auth, pg, film)
    older = await published_film(admin, boss.auth, pg, film)
    viewer = await new_account(gateway, pg)

    async def starts(movie_id: str, count: int, age: timedelta) -> None:
        await pg.execute(
            """INSERT INTO playback_sessions (id, user_id, movie_id, plan_id, renditions,
                   created_at, expires_at)
               SELECT 'tr-' || md5(random()::text), $1, $2, 'free', '{}',
                      now() - $3::interval, now() - $3::interval + interval '1 hour'
                 FROM generate_series(1, $4)""",
            uuid.UUID(viewer.id),
            uuid.UUID(movie_id),
            age,
            count,
        )

    await starts(recent["id"], 300, timedelta(hours=1))
    await starts(older["id"], 500, timedelta(days=3))

    async def ranking(window: str) -> list[str]:
        resp = await gateway.get(f"/v1/movies/trending?window={window}")
        assert resp.status == 200
        body = await resp.json()
        assert body["window"] == window
        return [m["id"] for m in body["items"] if m["id"] in (recent["id"], older["id"])]

    assert await ranking("24h") == [recent["id"]]
    assert await ranking("7d") == [older["id"], recent["id"]]
    items = (await (await gateway.get("/v1/movies/trending?window=7d")).json())["items"]
    assert next(m for m in items if m["id"] == older["id"])["starts"] == 500
    assert (await gateway.get("/v1/movies/trending")).status == 200  # 24h by default
    resp = await gateway.get("/v1/movies/trending?window=1y")
    assert resp.status == 422
    assert field_paths(await resp.json()) == ["window"]

    # cached: more starts change nothing until the catalogue changes
    await starts(recent["id"], 400, timedelta(hours=2))
    assert await ranking("7d") == [older["id"], recent["id"]]
    resp = await admin.patch(
        f"/admin/v1/movies/{recent['id']}", json={"description": "Now trending"}, headers=boss.auth
    )
    assert resp.status == 200
    assert await ranking("7d") == [recent["id"], older["id"]]


async def test_pages_neither_repeat_nor_skip_a_film(
    gateway: TestClient, admin: TestClient, boss: Account, pg: asyncpg.Connection
) -> None:
    """Timestamps a microsecond apart (and ties) page exactly, in the public and the
    admin listing alike."""
    stem = unique_title("Paging")
    base = datetime(2026, 1, 1, 0, 0, 0, 123457, tzinfo=UTC)
    expected = []
    for i in range(7):
        at = base + timedelta(microseconds=(i // 2) * 7)  # pairs share a timestamp
        movie_id = await pg.fetchval(
            """INSERT INTO movies (slug, title, status, created_at, published_at)
               VALUES ($1, $2, 'published', $3, $3) RETURNING id""",
            f"paging-{uuid.uuid4().hex[:12]}",
            f"{stem} {i}",
            at,
        )
        expected.append((at, str(movie_id)))
    expected.sort(reverse=True)
    want = [movie_id for _, movie_id in expected]

    async def walk(client: TestClient, path: str, **headers: str) -> list[str]:
        seen: list[str] = []
        cursor = None
        while True:
            params = {"q": stem, "limit": 2, **({"cursor": cursor} if cursor else {})}
            resp = await client.get(path, params=params, headers=headers)
            assert resp.status == 200, await resp.text()
            page = await resp.json()
            seen += [m["id"] for m in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return seen

    assert await walk(gateway, "/v1/movies") == want
    assert await walk(admin, "/admin/v1/movies", **boss.auth) == want

"""Playback sessions under abuse and partial failure (issue 10): the stream limit cannot
be bypassed by pausing, a manifest shared across networks ends, a Redis error in the
middle of a revocation loses nothing, segments never wait on PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
import redis.exceptions
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.keys import playback_key
from kush.worker import sync_step
from runtime import db
from runtime.jobs import WorkerContext
from runtime.redis import create_redis
from runtime.settings import Settings
from runtime.web import pg_key
from tests.integration.conftest import Film
from tests.integration.helpers import bearer, register_and_login
from tests.integration.playing import error_code, segment_urls, start, start_ok
from tokens.service.views import auth_key

# ------------------------------------------------------------------ stream limit


async def test_pausing_cannot_bypass_the_stream_limit(
    play_settings: Settings, film: Film, aiohttp_client: Any
) -> None:
    """A paused stream stops counting; when it resumes it must be re-admitted under the
    limit, on every segment until it is (never throttled away)."""
    settings = dataclasses.replace(play_settings, stream_idle_s=1)
    client: TestClient = await aiohttp_client(create_app(settings))
    token = (await register_and_login(client))["access_token"]  # free plan: 1 stream
    first = await start_ok(client, token, film.movie_id)
    first_segs = await segment_urls(client, first["manifest_url"])
    assert (await client.get(first_segs[0])).status == 200
    await asyncio.sleep(1.6)  # paused longer than the idle window: the slot is free
    second = await start_ok(client, token, film.movie_id)
    second_segs = await segment_urls(client, second["manifest_url"])
    assert (await client.get(second_segs[0])).status == 200
    # the first stream resumes: refused, on this segment and on the next ones
    for url in (first_segs[1], first_segs[0], first_segs[1]):
        resp = await client.get(url)
        assert resp.status == 403
        assert await error_code(resp) == "stream_limit"
    assert (await client.get(second_segs[1])).status == 200
    # the second stream stops: the first may play again, and now holds the slot
    resp = await client.delete(f"/v1/playback/{second['session_id']}", headers=bearer(token))
    assert resp.status == 204
    assert (await client.get(first_segs[1])).status == 200
    third = await start(client, token, film.movie_id)
    assert third.status == 403
    assert await error_code(third) == "stream_limit"


async def test_many_paused_streams_never_play_at_once(
    play_settings: Settings, film: Film, aiohttp_client: Any
) -> None:
    """The reported attack: start, pause, start again... then resume them all."""
    settings = dataclasses.replace(play_settings, stream_idle_s=1)
    client: TestClient = await aiohttp_client(create_app(settings))
    token = (await register_and_login(client))["access_token"]
    segs: list[list[str]] = []
    for _ in range(4):
        body = await start_ok(client, token, film.movie_id)
        segs.append(await segment_urls(client, body["manifest_url"]))
        assert (await client.get(segs[-1][0])).status == 200
        await asyncio.sleep(1.3)
    playing = 0
    for urls in segs:  # every stream resumes, one after the other, and keeps playing
        statuses = [(await client.get(url)).status for url in urls]
        playing += statuses == [200] * len(urls)
    assert playing == 1


# ------------------------------------------------------------------ shared manifests


async def test_manifest_shared_across_networks_ends_the_session(
    play_settings: Settings, film: Film, aiohttp_client: Any, pg: asyncpg.Connection
) -> None:
    settings = dataclasses.replace(
        play_settings, trusted_proxies=("127.0.0.0/8", "::1/128"), max_networks_per_session=2
    )
    client: TestClient = await aiohttp_client(create_app(settings))
    token = (await register_and_login(client))["access_token"]
    body = await start_ok(client, token, film.movie_id)
    segs = await segment_urls(client, body["manifest_url"])

    def via(ip: str) -> dict[str, str]:
        return {"X-Forwarded-For": ip}

    # home Wi-Fi (two devices of one /24), then mobile data: two networks, fine
    for ip in ("10.20.1.5", "10.20.1.77", "10.20.2.5", "10.20.1.5"):
        assert (await client.get(segs[0], headers=via(ip))).status == 200
    # a third network: the manifest is being shared; the session ends
    resp = await client.get(segs[1], headers=via("192.0.2.10"))
    assert resp.status == 403
    assert await error_code(resp) == "session_shared"
    resp = await client.get(segs[0], headers=via("10.20.1.5"))
    assert resp.status == 403
    assert await error_code(resp) == "session_shared"
    reason = await pg.fetchval(
        "SELECT ended_reason FROM playback_sessions WHERE id = $1", body["session_id"]
    )
    assert reason == "session_shared"
    # the ended session no longer holds the account's only stream slot
    again = await start_ok(client, token, film.movie_id)
    await client.delete(f"/v1/playback/{again['session_id']}", headers=bearer(token))


async def test_ipv6_networks_count_per_48(
    play_settings: Settings, film: Film, aiohttp_client: Any
) -> None:
    settings = dataclasses.replace(
        play_settings, trusted_proxies=("127.0.0.0/8", "::1/128"), max_networks_per_session=2
    )
    client: TestClient = await aiohttp_client(create_app(settings))
    token = (await register_and_login(client))["access_token"]
    body = await start_ok(client, token, film.movie_id)
    segs = await segment_urls(client, body["manifest_url"])
    for ip in ("2001:db8:1:1::5", "2001:db8:1:ffff::9", "2001:db8:2::1"):
        assert (await client.get(segs[0], headers={"X-Forwarded-For": ip})).status == 200
    resp = await client.get(segs[0], headers={"X-Forwarded-For": "2001:db8:3::1"})
    assert resp.status == 403
    assert await error_code(resp) == "session_shared"


# ------------------------------------------------------------------ revocation is atomic


class WritesFail:
    """Wraps a Redis client: reads pass, every write fails (Redis erroring mid-way)."""

    WRITES = frozenset(
        {"set", "delete", "unlink", "zadd", "zrem", "sadd", "srem", "expire", "evalsha", "eval"}
    )
    failed = 0

    def __init__(self, real: Any) -> None:
        self.real = real

    def _fail(self, *_: Any, **__: Any) -> Any:
        WritesFail.failed += 1
        raise redis.exceptions.ConnectionError("injected: Redis went away")

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        return _FailingPipeline(self.real.pipeline(*args, **kwargs), self)

    def __getattr__(self, name: str) -> Any:
        if name in self.WRITES:
            return self._fail
        return getattr(self.real, name)


class _FailingPipeline:
    def __init__(self, real: Any, owner: WritesFail) -> None:
        self.real = real
        self.owner = owner
        self.writes = False

    async def __aenter__(self) -> _FailingPipeline:
        await self.real.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.real.__aexit__(*exc)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.real, name)
        if name in WritesFail.WRITES:
            self.writes = True
        return method  # type: ignore[no-any-return]

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        if self.writes:
            await self.real.reset()
            self.owner._fail()
        return await self.real.execute(*args, **kwargs)


def _break_redis(client: TestClient) -> Callable[[], None]:
    """Make every Redis write of this app's auth service and session store fail;
    returns the function that repairs them."""
    auth = client.app[auth_key]
    sessions = client.app[playback_key].sessions
    real = auth.redis
    broken = WritesFail(real)
    auth.redis = broken  # type: ignore[assignment]
    sessions.redis = broken  # type: ignore[assignment]

    def repair() -> None:
        auth.redis = real
        sessions.redis = real

    return repair


async def _worker_step(settings: Settings) -> None:
    """One pass of the ``kush worker`` job that mirrors PostgreSQL into Redis."""
    pool = await db.create_pool(settings)
    rd = create_redis(settings)
    try:
        await sync_step(WorkerContext(settings, pool, rd), None)
    finally:
        await rd.aclose()
        await pool.close()


async def test_logout_with_redis_failing_midway_loses_nothing(
    play_settings: Settings, film: Film, aiohttp_client: Any
) -> None:
    worker_a: TestClient = await aiohttp_client(create_app(play_settings))
    worker_b: TestClient = await aiohttp_client(create_app(play_settings))
    account = await register_and_login(worker_a)
    token, refresh = account["access_token"], account["refresh_token"]
    body = await start_ok(worker_a, token, film.movie_id)
    segs = await segment_urls(worker_b, body["manifest_url"])
    assert (await worker_b.get(segs[0])).status == 200
    assert (await worker_b.get("/v1/me", headers=bearer(token))).status == 200

    repair = _break_redis(worker_a)
    failures = WritesFail.failed
    resp = await worker_a.post(
        "/v1/auth/logout", json={"refresh_token": refresh}, headers=bearer(token)
    )
    repair()
    assert WritesFail.failed > failures  # the fault really happened mid-logout
    assert resp.status == 204, await resp.text()  # PostgreSQL has it: logout is done

    # Redis is back with its data: no revocation key was written, the mirror's
    # "loaded" marker is still there. The worker that saw the failure knows better...
    assert (await worker_a.get("/v1/me", headers=bearer(token))).status == 401
    # ...and the background job brings every other worker in line.
    await _worker_step(play_settings)
    resp = await worker_b.get("/v1/me", headers=bearer(token))
    assert resp.status == 401
    resp = await worker_b.post("/v1/auth/refresh", json={"refresh_token": refresh})
    assert resp.status == 401
    await asyncio.sleep(0.6)  # worker B's one-segment session cache
    for url in segs:
        resp = await worker_b.get(url)
        assert resp.status == 403
        assert await error_code(resp) == "session_revoked"


async def test_refresh_reuse_with_redis_failing_still_revokes_everything(
    play_settings: Settings, film: Film, aiohttp_client: Any
) -> None:
    worker_a: TestClient = await aiohttp_client(create_app(play_settings))
    worker_b: TestClient = await aiohttp_client(create_app(play_settings))
    account = await register_and_login(worker_a)
    first_refresh = account["refresh_token"]
    resp = await worker_a.post("/v1/auth/refresh", json={"refresh_token": first_refresh})
    assert resp.status == 200
    rotated = await resp.json()
    token = rotated["access_token"]
    body = await start_ok(worker_a, token, film.movie_id)
    segs = await segment_urls(worker_b, body["manifest_url"])
    assert (await worker_b.get(segs[0])).status == 200

    repair = _break_redis(worker_a)
    resp = await worker_a.post("/v1/auth/refresh", json={"refresh_token": first_refresh})
    repair()
    assert resp.status == 401  # reuse detected: the family is revoked, not a 503
    assert await error_code(resp) == "token_revoked"

    await _worker_step(play_settings)
    assert (await worker_b.get("/v1/me", headers=bearer(token))).status == 401
    resp = await worker_b.post("/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert resp.status == 401
    await asyncio.sleep(0.6)
    resp = await worker_b.get(segs[0])
    assert resp.status == 403


async def test_session_ended_in_postgres_is_swept_from_redis(
    play_settings: Settings, film: Film, aiohttp_client: Any, pg: asyncpg.Connection
) -> None:
    """A session recorded as ended in PostgreSQL (by a revocation whose Redis write
    failed) stops playing once the worker's sweep ran."""
    client: TestClient = await aiohttp_client(create_app(play_settings))
    token = (await register_and_login(client))["access_token"]
    body = await start_ok(client, token, film.movie_id)
    segs = await segment_urls(client, body["manifest_url"])
    assert (await client.get(segs[0])).status == 200
    await pg.execute(
        "UPDATE playback_sessions SET ended_at = now(), ended_reason = 'revoked' WHERE id = $1",
        body["session_id"],
    )
    await _worker_step(play_settings)
    await asyncio.sleep(0.6)
    resp = await client.get(segs[0])
    assert resp.status == 403
    # the slot is free again
    again = await start_ok(client, token, film.movie_id)
    await client.delete(f"/v1/playback/{again['session_id']}", headers=bearer(token))


# ------------------------------------------------------------------ PostgreSQL stalls


async def test_segments_never_wait_on_postgres(
    play_settings: Settings, film: Film, aiohttp_client: Any
) -> None:
    """Every pool connection is busy (PostgreSQL slow or the pool exhausted): segments
    still flow, anything that needs PostgreSQL answers 503 with Retry-After instead of
    hanging, and the progress the segments carried is written once the pool frees."""
    settings = dataclasses.replace(play_settings, db_pool_size=1)
    client: TestClient = await aiohttp_client(create_app(settings))
    token = (await register_and_login(client))["access_token"]
    body = await start_ok(client, token, film.movie_id)
    segs = await segment_urls(client, body["manifest_url"])
    pool = client.app[pg_key]
    held = await pool.acquire()
    try:
        for url in reversed(segs):  # the 6 s segment first: that is the position written
            resp = await asyncio.wait_for(client.get(url), timeout=15)
            assert resp.status == 200
            await resp.read()
        resp = await asyncio.wait_for(
            client.get("/v1/me/history", headers=bearer(token)), timeout=15
        )
        assert resp.status == 503
        assert int(resp.headers["Retry-After"]) >= 1
    finally:
        await pool.release(held)
    deadline = time.monotonic() + 15
    position = None
    while time.monotonic() < deadline:
        resp = await client.get("/v1/me/history", headers=bearer(token))
        if resp.status == 200:
            items = (await resp.json())["items"]
            if items and items[0]["movie_id"] == film.movie_id and items[0]["position_s"] > 0:
                position = items[0]["position_s"]
                break
        await asyncio.sleep(0.2)
    assert position == pytest.approx(6.0, abs=0.1)  # the second segment starts at 6 s


async def test_unknown_session_id_in_postgres_is_refused(
    play_settings: Settings, film: Film, aiohttp_client: Any
) -> None:
    """A rebuild from PostgreSQL only ever revives a session that exists there."""
    client: TestClient = await aiohttp_client(create_app(play_settings))
    store = client.app[playback_key].sessions
    assert await store.get(f"ps-{uuid.uuid4().hex}") is None

"""The fast path's session lookups (issue 14): lookups that start together share one
Redis read and each still gets its own answer; a session ended by another gateway
worker is refused by this one within ``CACHE_TTL_S``, however hot its cache, even by a
process that does not follow pushed endings (``test_session_push.py`` covers those)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.keys import playback_key
from runtime.settings import Settings
from tests.integration.conftest import Film
from tests.integration.helpers import register_and_login
from tests.integration.playing import start_ok
from tokens.service.sessions import CACHE_TTL_S, SessionGone, SessionStore


class Clock:
    """A monotonic clock the test moves by hand (no sleeping, no timing assertion)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _store(client: TestClient, clock: Clock | None = None) -> SessionStore:
    """Another gateway worker's view of the same Redis and PostgreSQL."""
    pb = client.app[playback_key]
    if clock is None:
        return SessionStore(pb.pool, pb.redis, pb.keys)
    return SessionStore(pb.pool, pb.redis, pb.keys, monotonic=clock)


@pytest.fixture
async def client(play_settings: Settings, aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(create_app(play_settings))


async def test_lookups_started_together_each_get_their_own_answer(
    client: TestClient, film: Film
) -> None:
    token = (await register_and_login(client))["access_token"]
    ended = (await start_ok(client, token, film.movie_id))["session_id"]
    assert await client.app[playback_key].sessions.end(ended, reason="stopped")
    live = (await start_ok(client, token, film.movie_id))["session_id"]  # free: one stream
    store = _store(client)
    ids = [live, ended, "AAAAAAAAAAAAAAAA", live, ended, live]
    results = await asyncio.gather(*(store.live(i) for i in ids), return_exceptions=True)
    for session_id, result in zip(ids, results, strict=True):
        if session_id == live:
            assert not isinstance(result, BaseException)
            assert result.id == live
        else:
            assert isinstance(result, SessionGone), result
    ended_result = results[1]
    assert isinstance(ended_result, SessionGone)
    assert ended_result.reason == "stopped"
    # a waiter that goes away does not break the read the others share
    first = asyncio.ensure_future(_store(client).live(live))
    other = _store(client)
    waiting = asyncio.ensure_future(other.live(live))
    cancelled = asyncio.ensure_future(other.live(live))
    await asyncio.sleep(0)
    cancelled.cancel()
    assert (await waiting).id == live
    assert (await first).id == live
    with pytest.raises(asyncio.CancelledError):
        await cancelled


async def test_a_session_ended_elsewhere_is_refused_within_the_cache_lifetime(
    client: TestClient, film: Film
) -> None:
    token = (await register_and_login(client))["access_token"]
    session_id = (await start_ok(client, token, film.movie_id))["session_id"]
    clock = Clock()
    worker = _store(client, clock)
    assert (await worker.live(session_id)).id == session_id  # cached from here on
    assert await _store(client).end(session_id, reason="logout")  # another worker ends it
    clock.now += CACHE_TTL_S  # the bound: no later than this, whatever was cached
    with pytest.raises(SessionGone) as refused:
        await worker.live(session_id)
    assert refused.value.reason == "logout"

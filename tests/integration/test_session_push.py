"""The pushed session cache: a gateway process that follows ``ps-changed`` trusts its
cached lookups ``cache_s`` (not ``CACHE_TTL_S``), and still refuses a session ended by
any other process as soon as the announcement arrives; without a confirmed subscription
it falls back to ``CACHE_TTL_S``; when Redis loses its data (the sentinel is gone) or
the subscription is made again, the cache is emptied.

Each store here moves on a hand-driven monotonic clock (never advanced past
``CACHE_TTL_S`` unless the test says so), so an answer that changes came from a pushed
message or a cleared cache, not from an entry expiring. Waits are bounded polls; no test
asserts how fast anything happened."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.keys import playback_key
from runtime.settings import Settings
from tests.integration.conftest import Film
from tests.integration.helpers import register_and_login
from tests.integration.playing import start_ok
from tests.support.private_services import PrivateRedis
from tokens.service.session_endings import (
    end_sessions_of,
    ended_key,
    publish_changed,
    session_key,
)
from tokens.service.sessions import CACHE_TTL_S, SessionGone, SessionStore

#: the bound of every poll (a limit on waiting, not an assertion of speed)
WAIT_LIMIT_S = 5.0


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _eventually(check: Callable[[], Awaitable[bool]]) -> bool:
    """Whether ``check`` comes true within ``WAIT_LIMIT_S`` (polled)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_LIMIT_S
    while loop.time() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.02)
    return await check()


async def _refused(store: SessionStore, session_id: str) -> bool:
    try:
        await store.live(session_id)
    except SessionGone:
        return True
    return False


@contextlib.asynccontextmanager
async def _worker(client: TestClient, clock: Clock) -> AsyncIterator[SessionStore]:
    """Another gateway process on the same Redis and PostgreSQL, following changes."""
    pb = client.app[playback_key]
    store = SessionStore(pb.pool, pb.redis, pb.keys, monotonic=clock)
    await store.start()
    try:

        async def subscribed() -> bool:
            return store.pushed

        assert await _eventually(subscribed)
        yield store
    finally:
        await store.close()


@pytest.fixture
async def client(play_settings: Settings, aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(create_app(play_settings))


@pytest.fixture
async def private_redis() -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def private_client(
    play_settings: Settings, private_redis: PrivateRedis, aiohttp_client: Any
) -> TestClient:
    """A gateway on a Redis of its own (the tests flush it or drop its clients)."""
    settings = dataclasses.replace(play_settings, redis_url=private_redis.url)
    return await aiohttp_client(create_app(settings))


async def _play(client: TestClient, film: Film) -> tuple[str, str]:
    """A new viewer's session of ``film``: (session id, user id)."""
    login = await register_and_login(client)
    body = await start_ok(client, login["access_token"], film.movie_id)
    session_id = str(body["session_id"])
    pb = client.app[playback_key]
    return session_id, (await pb.sessions.live(session_id)).user_id


async def _hide_behind_tombstone(redis: Redis, client: TestClient, session_id: str) -> None:
    """End the session in Redis alone, announcing nothing: only a process that reads
    Redis again sees it (reason ``probe``)."""
    keys = client.app[playback_key].keys
    await redis.set(ended_key(keys, session_id), "probe", ex=600)


async def test_cached_lookups_live_long_while_subscribed_and_end_when_announced(
    client: TestClient, film: Film
) -> None:
    pb = client.app[playback_key]
    session_id, _ = await _play(client, film)
    clock = Clock()
    async with _worker(client, clock) as worker:
        assert (await worker.live(session_id)).id == session_id  # cached from here on
        await _hide_behind_tombstone(pb.redis, client, session_id)
        clock.now += CACHE_TTL_S * 20  # far past the unpushed lifetime
        # still the cached answer: this lookup did not read Redis
        assert (await worker.live(session_id)).id == session_id
        await publish_changed(pb.redis, pb.keys, ["AAAAAAAAAAAAAAAA", session_id])
        assert await _eventually(lambda: _refused(worker, session_id))
        with pytest.raises(SessionGone) as refused:
            await worker.live(session_id)
        assert refused.value.reason == "probe"


async def test_a_session_ended_by_another_process_is_refused_when_announced(
    client: TestClient, film: Film
) -> None:
    pb = client.app[playback_key]
    stopped, stopper = await _play(client, film)
    erased, erased_user = await _play(client, film)
    clock = Clock()  # never moved: only the announcement can change an answer
    async with _worker(client, clock) as first, _worker(client, clock) as second:
        for worker in (first, second):
            for session_id in (stopped, erased):
                assert (await worker.live(session_id)).id == session_id

        # the store's own end path (a stop from the second process)
        assert await second.end(stopped, reason="stopped", user_id=stopper)
        assert await _eventually(lambda: _refused(first, stopped))
        with pytest.raises(SessionGone) as refused:
            await first.live(stopped)
        assert refused.value.reason == "stopped"
        assert (await first.live(erased)).id == erased  # the other one plays on

        # ending an account's sessions outside a request (admin, privacy)
        count = await end_sessions_of(
            pb.pool, pb.redis, pb.keys, owner="user", owner_id=erased_user, reason="erased"
        )
        assert count == 1
        for worker in (first, second):
            assert await _eventually(functools.partial(_refused, worker, erased))
            with pytest.raises(SessionGone) as refused:
                await worker.live(erased)
            assert refused.value.reason == "erased"


async def test_without_a_subscription_lookups_are_cached_half_a_second(
    client: TestClient, film: Film
) -> None:
    pb = client.app[playback_key]
    session_id, _ = await _play(client, film)
    clock = Clock()
    unstarted = SessionStore(pb.pool, pb.redis, pb.keys, monotonic=clock)
    stopped_clock = Clock()
    async with _worker(client, stopped_clock) as stopped:
        assert (await unstarted.live(session_id)).id == session_id
        assert (await stopped.live(session_id)).id == session_id
        await stopped.close()  # the subscription is gone: nothing is pushed any more
        assert not stopped.pushed
        await _hide_behind_tombstone(pb.redis, client, session_id)
        # within CACHE_TTL_S both still answer from their caches ...
        assert (await unstarted.live(session_id)).id == session_id
        assert (await stopped.live(session_id)).id == session_id
        # ... and past it both read Redis again, announcement or not
        clock.now += CACHE_TTL_S
        stopped_clock.now += CACHE_TTL_S
        for store in (unstarted, stopped):
            with pytest.raises(SessionGone) as refused:
                await store.live(session_id)
            assert refused.value.reason == "probe"


async def test_redis_losing_its_data_empties_the_cache(
    private_client: TestClient, film: Film
) -> None:
    """FLUSHALL takes the sentinel with it: the next lookup reads Redis, finds nothing,
    and puts the session back from PostgreSQL (so the stream limit counts it again)."""
    pb = private_client.app[playback_key]
    session_id, _ = await _play(private_client, film)
    clock = Clock()  # never moved
    async with _worker(private_client, clock) as worker:
        assert (await worker.live(session_id)).id == session_id
        assert await pb.redis.flushall()
        assert (await worker.live(session_id)).id == session_id  # whether cached or not
        key = session_key(pb.keys, session_id)

        async def reprimed() -> bool:
            await worker.live(session_id)  # a cache hit until the sentinel check clears it
            return bool(await pb.redis.exists(key))

        assert await _eventually(reprimed)


async def test_subscribing_again_empties_the_cache(private_client: TestClient, film: Film) -> None:
    """Messages published while the subscriber was disconnected are lost, so a new
    subscription starts from an empty cache."""
    pb = private_client.app[playback_key]
    session_id, _ = await _play(private_client, film)
    clock = Clock()  # never moved
    async with _worker(private_client, clock) as worker:
        assert (await worker.live(session_id)).id == session_id
        await _hide_behind_tombstone(pb.redis, private_client, session_id)
        assert (await worker.live(session_id)).id == session_id  # cached
        assert await pb.redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1
        assert await _eventually(lambda: _refused(worker, session_id))


async def test_a_lookup_overlapping_an_announcement_is_trusted_half_a_second(
    client: TestClient, film: Film
) -> None:
    """The read may predate the ending the announcement was about (the message can
    arrive before the read's answer): such an answer is cached ``CACHE_TTL_S`` only."""
    pb = client.app[playback_key]
    session_id, _ = await _play(client, film)
    clock = Clock()
    async with _worker(client, clock) as worker:
        lookup = asyncio.ensure_future(worker.live(session_id))
        await asyncio.sleep(0)  # the lookup has started and queued its Redis read
        worker._drop(b"AAAAAAAAAAAAAAAA")  # a message handled while it reads
        assert (await lookup).id == session_id
        await _hide_behind_tombstone(pb.redis, client, session_id)
        clock.now += CACHE_TTL_S
        with pytest.raises(SessionGone):
            await worker.live(session_id)


async def test_close_ends_a_subscriber_that_swallowed_its_cancellation(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancellation that lands as redis-py's read timeout fires can be swallowed; the
    subscriber then blocks in its next read. close() must still end it (this hung test
    apps' teardown before close() cancelled more than once)."""
    pb = client.app[playback_key]
    store = SessionStore(pb.pool, pb.redis, pb.keys)
    swallowed = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.set()  # what the lost cancellation looks like from outside
        await asyncio.Event().wait()  # the next read, which nothing will answer

    monkeypatch.setattr(store, "_subscribed", stubborn)
    await store.start()
    await asyncio.sleep(0)
    async with asyncio.timeout(10):  # a bound on the test, not a timing assertion
        await store.close()
    assert swallowed.is_set()
    assert store._follower is None
    assert not store.pushed

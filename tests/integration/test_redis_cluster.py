"""The session, sign-in guard and ad frequency code unchanged on a real Redis Cluster.

Three ``redis-server --cluster-enabled yes`` nodes on loopback, slots split between them
with CLUSTER ADDSLOTS and joined with CLUSTER MEET (no redis-cli needed), and redis-py's
cluster client in place of the plain one. Any script, MGET or multi-key DEL whose keys
span two slots fails here with CROSSSLOT; a key routed to the wrong node with MOVED.
Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import asyncpg
import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisError

from gateway.ads.inventory import Inventory
from runtime import db
from runtime.redis import Keys
from runtime.settings import Settings
from tests.integration.helpers import free_port
from tests.support.private_services import redis_server_binary
from tokens.service.login_guard import LoginGuard, LoginLimits
from tokens.service.playback_session import PlaybackSession
from tokens.service.session_endings import session_key, streams_key
from tokens.service.sessions import (
    SessionShared,
    SessionStore,
    StreamLimitReached,
    session_id_for,
)

pytestmark = pytest.mark.slow

NODES = 3
SLOTS = 16384
START_TIMEOUT_S = 30.0


async def _wait(check: Callable[[], Awaitable[Any]], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            if await check():
                return
        except (OSError, RedisError):  # not listening yet
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"Redis Cluster: {what} in time")
        await asyncio.sleep(0.1)


def _major_version(binary: str) -> int:
    said = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    version = re.search(r"v=(\d+)", said.stdout)
    return int(version[1]) if version else 0


async def _command(node: Redis, *args: str | int) -> Any:
    return await node.execute_command(*args)  # type: ignore[no-untyped-call]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[RedisCluster]:
    """A three-master Redis Cluster on loopback and a cluster client for it."""
    binary = redis_server_binary()
    if _major_version(binary) < 7:
        pytest.skip("needs redis-server 7 or later (--cluster-port)")
    ports = [free_port() for _ in range(NODES)]
    # the bus ports: by default port + 10000, which may be taken or beyond 65535
    buses = [free_port() for _ in range(NODES)]
    procs = [
        await asyncio.create_subprocess_exec(
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            str(bus),
            "--cluster-config-file",
            str(tmp_path / f"nodes-{port}.conf"),
            "--dir",
            str(tmp_path),
            "--save",
            "",
            "--appendonly",
            "no",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for port, bus in zip(ports, buses, strict=True)
    ]
    nodes = [Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5) for port in ports]
    client: RedisCluster | None = None
    try:
        for node in nodes:
            await _wait(node.ping, "a node did not start")
        step = SLOTS // NODES
        for i, node in enumerate(nodes):
            last = SLOTS - 1 if i == NODES - 1 else (i + 1) * step - 1
            await _command(node, "CLUSTER ADDSLOTS", *range(i * step, last + 1))
        for port, bus in zip(ports[1:], buses[1:], strict=True):
            await _command(nodes[0], "CLUSTER MEET", "127.0.0.1", port, bus)

        async def ready() -> bool:
            for node in nodes:
                info = await _command(node, "CLUSTER INFO")  # parsed by redis-py
                if not isinstance(info, dict):
                    text = info.decode() if isinstance(info, bytes) else str(info)
                    info = dict(line.split(":", 1) for line in text.split())
                state = {str(k): str(v) for k, v in info.items()}
                if state.get("cluster_state") != "ok" or state.get("cluster_known_nodes") != str(
                    NODES
                ):
                    return False
            return True

        await _wait(ready, "the nodes did not agree")
        client = RedisCluster(host="127.0.0.1", port=ports[0], socket_connect_timeout=1.0)
        await client.initialize()
        yield client
    finally:
        if client is not None:
            await client.aclose()
        for node in nodes:
            await node.aclose()
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), timeout=10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _user(pg: asyncpg.Connection) -> str:
    return str(
        await pg.fetchval(
            "INSERT INTO users (email, password_hash) VALUES ($1, 'x') RETURNING id",
            f"cluster-{uuid.uuid4().hex[:12]}@example.test",
        )
    )


async def _movie(pg: asyncpg.Connection) -> str:
    movie_id = uuid.uuid4()
    await pg.execute(
        "INSERT INTO movies (id, slug, title, status) VALUES ($1, $2, 'Cluster', 'draft')",
        movie_id,
        f"cluster-{movie_id.hex[:12]}",
    )
    return str(movie_id)


def _session(user_id: str, movie_id: str) -> PlaybackSession:
    now = int(time.time())
    return PlaybackSession(
        id=session_id_for(user_id),
        user_id=user_id,
        movie_id=movie_id,
        plan="basic",
        renditions=("480p",),
        created_at=now,
        expires_at=now + 3600,
        max_streams=1,
    )


async def test_sessions_on_a_cluster(
    cluster: RedisCluster, settings: Settings, pg: asyncpg.Connection
) -> None:
    """Start (script), read (MGET), heartbeat (script), rebuild from PostgreSQL after a
    lost key (script), share detection ending a session (multi-key DEL), stop."""
    redis = cast(Redis, cluster)  # the same commands, routed by slot
    keys = Keys(settings.redis_prefix)
    pool = await db.create_pool(settings)
    try:
        store = SessionStore(pool, redis, keys, max_networks=2)
        movie_id = await _movie(pg)
        users = [await _user(pg) for _ in range(6)]
        # different users land in different slots: the data really is spread
        assert len({key_slot(streams_key(keys, u).encode()) for u in users}) > 1

        first = _session(users[0], movie_id)
        await store.create(first)
        with pytest.raises(StreamLimitReached):
            await store.create(_session(users[0], movie_id))
        assert (await store.live(first.id)).id == first.id
        assert await store.heartbeat(first, "203.0.113.0/24")
        assert await store.active_count(users[0]) == 1

        # Redis lost the session: the next reader rebuilds it from PostgreSQL
        await cluster.delete(session_key(keys, first.id))
        fresh = SessionStore(pool, redis, keys, max_networks=2)
        assert (await fresh.live(first.id)).id == first.id
        assert await cluster.exists(session_key(keys, first.id))

        # played from too many networks: ended (tombstone, DEL of its keys, slot freed)
        assert await fresh.heartbeat(first, "198.51.100.0/24")
        with pytest.raises(SessionShared):
            await fresh.heartbeat(first, "192.0.2.0/24")
        assert await SessionStore(pool, redis, keys).get(first.id) is None
        assert await store.active_count(users[0]) == 0

        # a new stream fits again; stopping it frees the slot
        second = _session(users[0], movie_id)
        await store.create(second)
        assert await store.end(second.id, reason="stopped", user_id=users[0])
        assert await store.active_count(users[0]) == 0
        for user_id in users[1:]:
            await store.create(_session(user_id, movie_id))
    finally:
        await pool.close()


class _Clock:
    """A monotonic clock that never moves: a cached answer changes only when pushed."""

    now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _until(check: Callable[[], Awaitable[bool]]) -> bool:
    """Whether ``check`` comes true within a bounded poll."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return await check()


async def test_pushed_session_changes_on_a_cluster(
    cluster: RedisCluster, settings: Settings, pg: asyncpg.Connection
) -> None:
    """The session cache's subscriber works with the cluster client: an ending published
    on one node reaches a subscriber on any, and each primary holds a sentinel, so a
    single node losing its data empties the cache too."""
    redis = cast(Redis, cluster)
    keys = Keys(settings.redis_prefix)
    pool = await db.create_pool(settings)
    first = SessionStore(pool, redis, keys, monotonic=_Clock())
    second = SessionStore(pool, redis, keys, monotonic=_Clock())
    try:
        for store in (first, second):
            await store.start()

        async def subscribed() -> bool:
            return first.pushed and second.pushed

        assert await _until(subscribed)
        sentinels = first._sentinel_keys()
        owners = {cluster.get_node_from_key(k).name for k in sentinels}
        assert len(sentinels) == len(owners) == NODES

        movie_id = await _movie(pg)
        ended, lost = _session(await _user(pg), movie_id), _session(await _user(pg), movie_id)
        for session in (ended, lost):
            await first.create(session)
            assert (await first.live(session.id)).id == session.id
            assert (await second.live(session.id)).id == session.id

        assert await second.end(ended.id, reason="stopped")

        async def refused() -> bool:
            return await first.get(ended.id) is None

        assert await _until(refused)

        # the node holding the other session loses its data: the cache empties, and the
        # next lookup puts the session back from PostgreSQL
        key = session_key(keys, lost.id)
        await cluster.flushall(target_nodes=cluster.get_node_from_key(key))

        async def reprimed() -> bool:
            await first.live(lost.id)
            return bool(await cluster.exists(key))

        assert await _until(reprimed)
    finally:
        for store in (first, second):
            await store.close()
        await pool.close()


async def test_login_guard_and_ad_counters_on_a_cluster(
    cluster: RedisCluster, settings: Settings, pg: asyncpg.Connection
) -> None:
    redis = cast(Redis, cluster)
    keys = Keys(settings.redis_prefix)
    guard = LoginGuard(redis, keys, LoginLimits())
    account = uuid.uuid4().hex[:24]
    await guard.check(account, "203.0.113.9")
    await guard.failed(account, "203.0.113.9")
    await guard.succeeded(account, "203.0.113.9")  # DEL of the account's four keys
    await guard.check(account, "203.0.113.9")

    pool = await db.create_pool(settings)
    try:
        inventory = Inventory(pool, redis, keys)
        user_id = await _user(pg)
        campaigns = [str(uuid.uuid4()) for _ in range(5)]
        await inventory.count_frequency(user_id, {campaigns[0]: 2, campaigns[3]: 1})
        counts = await inventory.counts(user_id, campaigns)  # one MGET
        assert counts.viewer_today == {c: {0: 2, 3: 1}.get(i, 0) for i, c in enumerate(campaigns)}
    finally:
        await pool.close()

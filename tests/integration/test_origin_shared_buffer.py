"""The shared-fetch buffer is bounded (issue 10 #5, ``KUSH_SHARED_FETCH_BUFFER_BYTES``).

A shared origin fetch keeps its object until its last reader is done, so clients that
read slowly (or not at all) could pin any number of objects. The store's fetches hold
at most ``shared_buffer_bytes`` between them; beyond it, requests stream straight from
the origin, each with backpressure, and every byte is given back once its readers are
gone.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from origin import S3Origin, object_key
from tests.support.fake_origin import FakeOrigin
from tests.support.origin_app import AnyClient, ClientFactory, origin_app

MiB = 1024 * 1024
SIZE = 8 * MiB
KEYS = [object_key("videos", "m1", "1080p", f"seg_{i:05d}.ts") for i in range(3)]
OBJECTS = {key: i.to_bytes(1, "big") * SIZE for i, key in enumerate(KEYS)}


@pytest.fixture
async def fake() -> AsyncIterator[FakeOrigin]:
    origin = FakeOrigin()
    origin.objects.update(OBJECTS)
    await origin.start()
    yield origin
    if origin.gate is not None:
        origin.gate.set()
    await origin.stop()


def make_store(fake: FakeOrigin, budget: int) -> S3Origin:
    return S3Origin(
        endpoint_url=fake.endpoint_url,
        bucket="films",
        access_key_id="AKIDEXAMPLE",
        secret_access_key="secret",
        region="auto",
        shared_buffer_bytes=budget,
    )


async def until(condition: Callable[[], bool]) -> None:
    """Wait for a condition the store has no event for (bounded by the caller)."""
    while not condition():  # noqa: ASYNC110 -- polled state, bounded by the caller
        await asyncio.sleep(0.02)


async def stalled(client: AnyClient, key: str) -> socket.socket:
    """A client that sends its request and never reads the answer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (str(client.host), int(client.port or 0)))
    await loop.sock_sendall(sock, f"GET /o/{key} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


async def test_stalled_readers_never_hold_more_than_the_budget(
    fake: FakeOrigin, aiohttp_client: ClientFactory
) -> None:
    store = make_store(fake, budget=12 * MiB)  # room for one object, not two
    sockets: list[socket.socket] = []
    try:
        client = await aiohttp_client(origin_app(store))
        async with asyncio.timeout(60):
            sockets.append(await stalled(client, KEYS[0]))
            await until(lambda: store.buffered_bytes == SIZE)
            # The second object does not fit: its reader streams it from the origin
            # (the GET that found it too big, then its own).
            sockets.append(await stalled(client, KEYS[1]))
            await until(lambda: fake.gets == 3)
            # Now new requests go straight to the origin: no wasted GET.
            sockets.append(await stalled(client, KEYS[2]))
            await until(lambda: fake.gets == 4)
            assert store.buffered_bytes == SIZE
            assert store.stats.unshared == 2

            for sock in sockets:
                sock.close()
            sockets.clear()
            await until(lambda: store.buffered_bytes == 0)  # all given back

            response = await client.get(f"/o/{KEYS[1]}")
            assert response.status == 200
            assert await response.read() == OBJECTS[KEYS[1]]
            assert store.buffered_bytes == 0
    finally:
        for sock in sockets:
            sock.close()
        await store.close()


async def test_a_zero_budget_never_shares(fake: FakeOrigin, aiohttp_client: ClientFactory) -> None:
    store = make_store(fake, budget=0)
    fake.gate = asyncio.Event()
    try:
        client = await aiohttp_client(origin_app(store))

        async def fetch() -> bytes:
            response = await client.get(f"/o/{KEYS[0]}")
            assert response.status == 200
            return await response.read()

        async with asyncio.timeout(60):
            tasks = [asyncio.create_task(fetch()) for _ in range(3)]
            await until(lambda: fake.waiting == 3)  # three origin GETs, none shared
            fake.gate.set()
            assert await asyncio.gather(*tasks) == [OBJECTS[KEYS[0]]] * 3
        assert fake.gets == 3
        assert store.stats.collapsed == 0
        assert store.buffered_bytes == 0
        assert await store.read_bytes(KEYS[0], max_size=SIZE) == OBJECTS[KEYS[0]]
    finally:
        await store.close()


async def test_readers_of_a_shared_fetch_give_its_bytes_back(
    fake: FakeOrigin, aiohttp_client: ClientFactory
) -> None:
    store = make_store(fake, budget=64 * MiB)
    fake.gate = asyncio.Event()
    try:
        client = await aiohttp_client(origin_app(store))

        async def fetch() -> bytes:
            response = await client.get(f"/o/{KEYS[2]}")
            return await response.read()

        async with asyncio.timeout(60):
            tasks = [asyncio.create_task(fetch()) for _ in range(4)]
            await until(lambda: fake.waiting == 1 and store.stats.collapsed == 3)
            fake.gate.set()
            assert await asyncio.gather(*tasks) == [OBJECTS[KEYS[2]]] * 4
        assert fake.gets == 1
        assert store.buffered_bytes == 0
    finally:
        await store.close()

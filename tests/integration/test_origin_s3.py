"""S3Origin against moto's S3 server over real HTTP (no mocks of the S3 API).

A tiny aiohttp app serves objects through ``store.serve``; the tests check the HTTP
behaviour a player and a CDN rely on, request collapsing, retries, the circuit breaker
across a real outage (the moto server stopped and restarted on the same port), and a
stream cut mid-body by a fault-injecting TCP proxy in front of moto.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest

from origin import (
    BreakerState,
    ByteRange,
    InvalidObjectKey,
    ObjectNotFound,
    ObjectTooLarge,
    OriginUnavailable,
    RangeNotSatisfiable,
    S3Origin,
    object_key,
    parse_range,
    resolve_range,
)
from tests.support.moto_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, MotoServer
from tests.support.origin_app import (
    CACHE,
    DATA,
    SEGMENT,
    AnyClient,
    ClientFactory,
    no_error_logs,  # noqa: F401 - autouse fixture
    origin_app,
    # the HTTP contract of both stores, run against this module's store:
    test_head,  # noqa: F401
    test_if_none_match_is_304,  # noqa: F401
    test_range,  # noqa: F401
    test_suffix_range,  # noqa: F401
    test_unsatisfiable_range_is_416,  # noqa: F401
)


def make_store(
    server: MotoServer, bucket: str, endpoint_url: str | None = None, **kwargs: object
) -> S3Origin:
    """An S3Origin on moto (or on a proxy in front of it) with dummy credentials."""
    return S3Origin(
        endpoint_url=endpoint_url or server.endpoint_url,
        boto_session=server.boto_session,
        bucket=bucket,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
        region=REGION,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    """One moto server for the module's tests (each test uses its own bucket)."""
    with MotoServer() as server:
        yield server


@pytest.fixture
def bucket(moto: MotoServer) -> str:
    """A fresh bucket."""
    return moto.create_bucket()


@pytest.fixture
async def store(moto: MotoServer, bucket: str) -> AsyncIterator[S3Origin]:
    """An S3Origin on the fresh bucket, holding ``DATA`` under ``SEGMENT``."""
    s3 = make_store(moto, bucket)
    await s3.put_bytes(SEGMENT, DATA)
    yield s3
    await s3.close()


@pytest.fixture
async def client(store: S3Origin, aiohttp_client: ClientFactory) -> AnyClient:
    """A test client of ``origin_app(store)``."""
    return await aiohttp_client(origin_app(store))


class CountingTrace:
    """Counts (and can hold back) the store's HTTP requests, through aiohttp tracing."""

    def __init__(self) -> None:
        self.requests = 0
        self.gets_started = asyncio.Event()
        self.gate: asyncio.Event | None = None
        self.config = aiohttp.TraceConfig()
        self.config.on_request_start.append(self._on_request_start)

    async def _on_request_start(
        self,
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        self.requests += 1
        if params.method == "GET":
            self.gets_started.set()
            if self.gate is not None:
                await self.gate.wait()


class FaultyProxy:
    """A TCP proxy in front of moto that injects network faults.

    ``reset_next``: that many next connections are dropped before any answer.
    ``cut_after``: each answer is cut (connection aborted) after that many bytes.
    """

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.reset_next = 0
        self.cut_after: int | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            if self.reset_next:
                self.reset_next -= 1
                writer.transport.abort()
                return
            await self._relay(reader, writer, self.cut_after)
        except (asyncio.CancelledError, ConnectionError):
            pass  # the proxy's own task: closing down or a peer went away
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, budget: int | None
    ) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)

        async def requests() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()

        forward = asyncio.create_task(requests())
        try:
            while data := await up_reader.read(65536):
                if budget is not None and len(data) >= budget:
                    writer.write(data[:budget])
                    await writer.drain()
                    writer.transport.abort()
                    return
                if budget is not None:
                    budget -= len(data)
                writer.write(data)
                await writer.drain()
        finally:
            forward.cancel()
            await asyncio.gather(forward, return_exceptions=True)
            up_writer.close()


# -- HTTP behaviour -------------------------------------------------------------


async def test_full_get_sends_bytes_and_headers(client: AnyClient) -> None:
    response = await client.get(f"/o/{SEGMENT}")
    assert response.status == 200
    assert await response.read() == DATA
    assert response.headers["Content-Type"] == "video/mp2t"
    assert response.headers["Content-Length"] == str(len(DATA))
    assert response.headers["Cache-Control"] == CACHE
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["ETag"].startswith('"')
    assert "Last-Modified" in response.headers


async def test_missing_object(client: AnyClient, store: S3Origin) -> None:
    missing = object_key("videos", "m1", "720p", "seg_99999.ts")
    assert (await client.get(f"/o/{missing}")).status == 404
    assert (await client.get(f"/o/{missing}", headers={"Range": "bytes=0-1"})).status == 404
    assert (await client.head(f"/o/{missing}")).status == 404
    with pytest.raises(ObjectNotFound):
        await store.head(missing)
    with pytest.raises(ObjectNotFound):
        await store.read_bytes(missing, max_size=1000)
    assert not await store.exists(missing)
    assert await store.exists(SEGMENT)


async def test_invalid_keys_never_reach_the_origin(client: AnyClient, store: S3Origin) -> None:
    before = store.stats.origin_requests
    for key in ["../secret", "videos/../x.ts", "videos//x.ts", "videos/a%2fb.ts", "/etc/passwd"]:
        with pytest.raises(InvalidObjectKey):
            await store.head(key)
    assert (await client.get("/o/videos/..%2f..%2fsecret")).status == 404
    assert store.stats.origin_requests == before


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("index.m3u8", "application/vnd.apple.mpegurl"),
        ("init.mp4", "video/mp4"),
        ("seg_00001.m4s", "video/mp4"),
        ("audio.m4a", "audio/mp4"),
        ("subs.vtt", "text/vtt"),
        ("enc.key", "application/octet-stream"),
        ("poster.jpg", "image/jpeg"),
        ("poster.webp", "image/webp"),
    ],
)
async def test_content_type_comes_from_the_extension(
    client: AnyClient, store: S3Origin, name: str, content_type: str
) -> None:
    key = object_key("videos", "m2", name)
    await store.put_bytes(key, b"x" * 10, content_type="binary/octet-stream")
    response = await client.get(f"/o/{key}")
    assert response.status == 200
    assert response.headers["Content-Type"] == content_type


async def test_reads_writes_and_deletes(store: S3Origin, tmp_path: Path) -> None:
    playlist = object_key("videos", "m3", "720p", "index.m3u8")
    await store.put_bytes(playlist, b"#EXTM3U\n")
    assert await store.read_bytes(playlist, max_size=100) == b"#EXTM3U\n"
    with pytest.raises(ObjectTooLarge):
        await store.read_bytes(playlist, max_size=4)
    source = tmp_path / "poster.jpg"
    source.write_bytes(b"\xff\xd8" + os.urandom(3000))
    poster = object_key("videos", "m3", "poster.jpg")
    await store.put_file(poster, source)
    info = await store.head(poster)
    assert info.size == 3002
    assert info.content_type == "image/jpeg"
    assert info.etag.startswith('"')
    assert info.last_modified is not None
    neighbour = object_key("videos", "m30", "poster.jpg")
    await store.put_bytes(neighbour, b"keep")
    assert await store.delete_prefix("videos/m3") == 2
    assert not await store.exists(poster)
    assert await store.exists(neighbour)
    with pytest.raises(InvalidObjectKey):
        await store.delete_prefix("")


async def test_presigned_urls_are_reused(client: AnyClient, store: S3Origin) -> None:
    for _ in range(3):
        response = await client.get(f"/o/{SEGMENT}")
        assert await response.read() == DATA  # done before the next one starts
    assert store.stats.origin_gets == 3
    assert store.stats.presigns == 1


async def test_check(store: S3Origin, moto: MotoServer) -> None:
    await store.check()
    nowhere = make_store(moto, "no-such-bucket-here")
    try:
        with pytest.raises(OriginUnavailable):
            await nowhere.check()
    finally:
        await nowhere.close()


# -- request collapsing ----------------------------------------------------------


async def test_concurrent_gets_share_one_origin_fetch(
    moto: MotoServer, bucket: str, aiohttp_client: ClientFactory
) -> None:
    data = os.urandom(2 * 1024 * 1024)
    trace = CountingTrace()
    trace.gate = asyncio.Event()
    async with aiohttp.ClientSession(trace_configs=[trace.config]) as session:
        s3 = make_store(moto, bucket, session=session)
        try:
            await s3.put_bytes(SEGMENT, data)
            test_client = await aiohttp_client(origin_app(s3))

            async def fetch() -> bytes:
                response = await test_client.get(f"/o/{SEGMENT}")
                assert response.status == 200
                assert response.headers["Content-Length"] == str(len(data))
                return await response.read()

            async with asyncio.timeout(60):
                tasks = [asyncio.create_task(fetch()) for _ in range(20)]
                await trace.gets_started.wait()  # the first fetch is held at the gate
                # Poll the store's counter (it has no event to wait on); bounded above.
                while s3.stats.collapsed < 19:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                trace.gate.set()
                bodies = await asyncio.gather(*tasks)
        finally:
            await s3.close()
    assert s3.stats.origin_gets == 1
    assert s3.stats.collapsed == 19
    assert all(body == data for body in bodies)


@pytest.fixture
async def gated(moto: MotoServer, bucket: str) -> AsyncIterator[tuple[S3Origin, CountingTrace]]:
    """A store whose origin GETs wait at ``trace.gate`` until the test opens it."""
    trace = CountingTrace()
    trace.gate = asyncio.Event()
    async with aiohttp.ClientSession(trace_configs=[trace.config]) as session:
        s3 = make_store(moto, bucket, session=session)
        await s3.put_bytes(SEGMENT, DATA)
        try:
            yield s3, trace
        finally:
            trace.gate.set()
            await s3.close()


async def test_concurrent_playlist_reads_share_one_fetch(
    gated: tuple[S3Origin, CountingTrace],
) -> None:
    s3, trace = gated
    assert trace.gate is not None
    async with asyncio.timeout(30):
        reads = [asyncio.create_task(s3.read_bytes(SEGMENT, max_size=10_000)) for _ in range(5)]
        too_small = asyncio.create_task(s3.read_bytes(SEGMENT, max_size=10))
        await trace.gets_started.wait()
        while s3.stats.collapsed < 5:  # noqa: ASYNC110 -- bounded by the timeout
            await asyncio.sleep(0.01)
        trace.gate.set()
        assert await asyncio.gather(*reads) == [DATA] * 5
        with pytest.raises(ObjectTooLarge):
            await too_small
    assert s3.stats.origin_gets == 1


async def test_conditional_get_joining_a_fetch_gets_304(
    gated: tuple[S3Origin, CountingTrace], aiohttp_client: ClientFactory
) -> None:
    s3, trace = gated
    assert trace.gate is not None
    test_client = await aiohttp_client(origin_app(s3))
    etag = (await s3.head(SEGMENT)).etag
    async with asyncio.timeout(30):
        plain = asyncio.create_task(test_client.get(f"/o/{SEGMENT}"))
        await trace.gets_started.wait()
        conditional = asyncio.create_task(
            test_client.get(f"/o/{SEGMENT}", headers={"If-None-Match": etag})
        )
        while s3.stats.collapsed < 1:  # noqa: ASYNC110 -- bounded by the timeout
            await asyncio.sleep(0.01)
        trace.gate.set()
        first, second = await plain, await conditional
        assert first.status == 200
        assert await first.read() == DATA
        assert second.status == 304
        assert second.headers["ETag"] == etag
    assert s3.stats.origin_gets == 1


async def test_if_range_gets_the_whole_object(client: AnyClient) -> None:
    headers = {"Range": "bytes=0-9", "If-Range": '"some-etag"'}
    response = await client.get(f"/o/{SEGMENT}", headers=headers)
    assert response.status == 200
    assert await response.read() == DATA


async def test_objects_over_the_collapse_limit_stream_directly(
    moto: MotoServer, bucket: str, aiohttp_client: ClientFactory
) -> None:
    s3 = make_store(moto, bucket, collapse_max_size=1024)
    try:
        await s3.put_bytes(SEGMENT, DATA)
        test_client = await aiohttp_client(origin_app(s3))
        response = await test_client.get(f"/o/{SEGMENT}")
        assert response.status == 200
        assert await response.read() == DATA
        assert await s3.read_bytes(SEGMENT, max_size=len(DATA)) == DATA
    finally:
        await s3.close()


# -- failures: retries, breaker, outage, broken streams ---------------------------


async def test_outage_opens_the_breaker_and_recovery_closes_it(
    aiohttp_client: ClientFactory,
) -> None:
    trace = CountingTrace()
    with MotoServer() as server:
        bucket = server.create_bucket()
        async with aiohttp.ClientSession(trace_configs=[trace.config]) as session:
            s3 = make_store(
                server,
                bucket,
                session=session,
                breaker_threshold=2,
                breaker_cooldown=0.3,
                connect_timeout=1.0,
                first_byte_timeout=2.0,
            )
            try:
                await s3.put_bytes(SEGMENT, DATA)
                test_client = await aiohttp_client(origin_app(s3))
                assert (await test_client.get(f"/o/{SEGMENT}")).status == 200

                server.stop()
                async with asyncio.timeout(20):  # fails fast: no hang on a dead origin
                    for _ in range(2):
                        response = await test_client.get(f"/o/{SEGMENT}")
                        assert response.status == 503
                        assert int(response.headers["Retry-After"]) >= 1
                    assert s3.stats.retries == 2  # one retry per failed operation
                    assert s3.breaker.state is BreakerState.OPEN

                    attempts = trace.requests
                    with pytest.raises(OriginUnavailable) as refused:
                        await s3.read_bytes(SEGMENT, max_size=len(DATA))
                    assert refused.value.retry_after >= 1
                    with pytest.raises(OriginUnavailable):
                        await s3.head(SEGMENT)
                    assert (await test_client.get(f"/o/{SEGMENT}")).status == 503
                    assert trace.requests == attempts  # open breaker: no network at all
                    assert s3.stats.rejected == 3

                    server.restart()
                    # Wait out the cooldown (bounded by the timeout above).
                    while s3.breaker.state is BreakerState.OPEN:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                    response = await test_client.get(f"/o/{SEGMENT}")
                    assert response.status == 200
                    assert await response.read() == DATA
                    assert s3.breaker.state is BreakerState.CLOSED
            finally:
                await s3.close()


async def test_dropped_connection_is_retried_before_the_answer_starts(
    moto: MotoServer, bucket: str, aiohttp_client: ClientFactory
) -> None:
    proxy = FaultyProxy(moto.port)
    s3 = make_store(moto, bucket, await proxy.start())
    try:
        await s3.put_bytes(SEGMENT, DATA)
        test_client = await aiohttp_client(origin_app(s3))
        # aiohttp itself resends an idempotent request once when the server drops the
        # connection (RFC 9112 §9.3.1); the second drop reaches the store, which retries.
        proxy.reset_next = 2
        async with asyncio.timeout(20):
            response = await test_client.get(f"/o/{SEGMENT}", headers={"Range": "bytes=0-99"})
            assert response.status == 206
            assert await response.read() == DATA[:100]
        assert s3.stats.retries == 1
        assert s3.stats.origin_gets == 2
        assert s3.breaker.consecutive_failures == 0
    finally:
        await s3.close()
        await proxy.close()


# The test's own fault proxy (asyncio streams) can leave a StreamWriter to the garbage
# collector when the loop is busy and its handler is cancelled inside open_connection;
# that warning is about the scaffold, not the store (aiohttp uses no StreamWriter).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("ranged", [False, True])
async def test_stream_cut_mid_body_aborts_the_client_without_retry(
    moto: MotoServer, bucket: str, aiohttp_client: ClientFactory, ranged: bool
) -> None:
    data = os.urandom(1024 * 1024)
    proxy = FaultyProxy(moto.port)
    s3 = make_store(moto, bucket, await proxy.start())
    try:
        await s3.put_bytes(SEGMENT, data)
        test_client = await aiohttp_client(origin_app(s3))
        proxy.cut_after = 200_000
        headers = {"Range": f"bytes=0-{len(data) - 2}"} if ranged else {}
        async with asyncio.timeout(20):
            response = await test_client.get(f"/o/{SEGMENT}", headers=headers)
            assert response.status == (206 if ranged else 200)
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
        assert s3.stats.origin_gets == 1  # never retried once the answer had started
        assert s3.stats.aborted_streams == 1
        assert s3.breaker.consecutive_failures == 1
        proxy.cut_after = None
        async with asyncio.timeout(20):
            response = await test_client.get(f"/o/{SEGMENT}")
            assert await response.read() == data
    finally:
        await s3.close()
        await proxy.close()


# -- byte ranges (pure) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size", "expected"),
    [
        ("bytes=100-199", 5000, ByteRange(100, 199)),
        ("bytes=100-", 5000, ByteRange(100, 4999)),
        ("bytes=-10", 5000, ByteRange(4990, 4999)),
        ("bytes=-9000", 5000, ByteRange(0, 4999)),
        ("bytes=4990-9999", 5000, ByteRange(4990, 4999)),
        ("BYTES=0-0", 1, ByteRange(0, 0)),
    ],
)
def test_resolve_range(value: str, size: int, expected: ByteRange) -> None:
    assert resolve_range(value, size) == expected


@pytest.mark.parametrize(
    "value", ["bytes=5000-", "bytes=-0", "bytes=9-1", "bytes=-", "bytes=0-1,3-4", "items=0-1", ""]
)
def test_unsatisfiable_ranges(value: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        resolve_range(value, 5000)
    assert info.value.size == 5000


def test_range_forwarded_to_the_origin_is_normalised() -> None:
    assert parse_range(" bytes=10- ").header() == "bytes=10-"
    assert parse_range("bytes=-5").header() == "bytes=-5"
    assert parse_range("Bytes=1-2").header() == "bytes=1-2"

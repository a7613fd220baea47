"""LocalOrigin over a real directory, served through aiohttp like the gateway does.

Same HTTP behaviours as the S3 store (ranges, 304, 416, HEAD, content types), and
every traversal attempt ends in InvalidObjectKey or ObjectNotFound: never a byte
from outside the root.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
import pytest
import uvloop
from aiohttp import web
from yarl import URL

from origin import (
    InvalidObjectKey,
    LocalOrigin,
    ObjectNotFound,
    ObjectTooLarge,
    OriginError,
    OriginUnavailable,
    content_type_for,
    object_key,
    split_key,
    validate_component,
    validate_prefix,
)
from origin.local import _native_sendfile
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

SECRET = b"outside the origin root"


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file next to (outside) the origin root."""
    path = tmp_path / "secret.txt"
    path.write_bytes(SECRET)
    return path


@pytest.fixture
async def store(tmp_path: Path) -> LocalOrigin:
    """A LocalOrigin holding ``DATA`` under ``SEGMENT``."""
    root = tmp_path / "origin"
    root.mkdir()
    local = LocalOrigin(root)
    await local.put_bytes(SEGMENT, DATA)
    return local


@pytest.fixture
async def client(store: LocalOrigin, aiohttp_client: ClientFactory) -> AnyClient:
    """A test client of ``origin_app(store)``."""
    return await aiohttp_client(origin_app(store))


# -- HTTP behaviour -------------------------------------------------------------


async def test_full_get_sends_bytes_and_headers(client: AnyClient, store: LocalOrigin) -> None:
    response = await client.get(f"/o/{SEGMENT}")
    assert response.status == 200
    assert await response.read() == DATA
    assert response.headers["Content-Type"] == "video/mp2t"
    assert response.headers["Content-Length"] == str(len(DATA))
    assert response.headers["Cache-Control"] == CACHE
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["ETag"] == (await store.head(SEGMENT)).etag
    assert "Last-Modified" in response.headers


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("index.m3u8", "application/vnd.apple.mpegurl"),
        ("init.mp4", "video/mp4"),
        ("seg_00001.m4s", "video/mp4"),
        ("clip.m4v", "video/mp4"),
        ("audio.m4a", "audio/mp4"),
        ("audio.aac", "audio/aac"),
        ("subs.vtt", "text/vtt"),
        ("enc.key", "application/octet-stream"),
        ("poster.jpg", "image/jpeg"),
        ("poster.png", "image/png"),
        ("poster.webp", "image/webp"),
        ("README", "application/octet-stream"),
    ],
)
async def test_content_type_comes_from_the_extension(
    client: AnyClient, store: LocalOrigin, name: str, content_type: str
) -> None:
    key = object_key("videos", "m2", name)
    await store.put_bytes(key, b"x" * 10)
    response = await client.get(f"/o/{key}")
    assert response.status == 200
    assert response.headers["Content-Type"] == content_type
    assert content_type_for(key) == content_type


async def test_missing_object(client: AnyClient, store: LocalOrigin) -> None:
    missing = object_key("videos", "m1", "720p", "seg_99999.ts")
    assert (await client.get(f"/o/{missing}")).status == 404
    assert (await client.head(f"/o/{missing}")).status == 404
    with pytest.raises(ObjectNotFound):
        await store.head(missing)
    with pytest.raises(ObjectNotFound):
        await store.read_bytes(missing, max_size=100)
    assert not await store.exists(missing)
    assert await store.exists(SEGMENT)
    # A directory is not an object.
    with pytest.raises(ObjectNotFound):
        await store.read_bytes("videos/m1", max_size=100)


# -- reads and writes ------------------------------------------------------------


async def test_reads_writes_and_deletes(store: LocalOrigin, tmp_path: Path) -> None:
    playlist = object_key("videos", "m3", "720p", "index.m3u8")
    await store.put_bytes(playlist, b"#EXTM3U\n")
    assert await store.read_bytes(playlist, max_size=100) == b"#EXTM3U\n"
    with pytest.raises(ObjectTooLarge):
        await store.read_bytes(playlist, max_size=4)
    source = tmp_path / "poster-upload.jpg"
    source.write_bytes(b"\xff\xd8" + os.urandom(3000))
    poster = object_key("videos", "m3", "poster.jpg")
    await store.put_file(poster, source)
    info = await store.head(poster)
    assert info.size == 3002
    assert info.content_type == "image/jpeg"
    assert info.last_modified is not None
    await store.put_bytes(poster, b"replaced")  # atomic replace, no temp files left
    assert await store.read_bytes(poster, max_size=100) == b"replaced"
    neighbour = object_key("videos", "m30", "poster.jpg")
    await store.put_bytes(neighbour, b"keep")
    assert await store.delete_prefix("videos/m3/") == 2
    assert not await store.exists(poster)
    assert await store.exists(neighbour)
    assert await store.delete_prefix("videos/nothing-here") == 0
    with pytest.raises(InvalidObjectKey):
        await store.delete_prefix("/")
    assert sorted(p.name for p in (store.root / "videos" / "m30").iterdir()) == ["poster.jpg"]


async def test_check(tmp_path: Path) -> None:
    await LocalOrigin(tmp_path).check()
    with pytest.raises(OriginUnavailable):
        await LocalOrigin(tmp_path / "missing").check()
    await LocalOrigin(tmp_path).close()


# -- keys and traversal ----------------------------------------------------------


@pytest.mark.parametrize(
    "component",
    ["master.m3u8", "seg_00042.ts", "720p", "a", "A-b_c.d", "x" * 128, "9f1c2e"],
)
def test_valid_components(component: str) -> None:
    assert validate_component(component) == component


@pytest.mark.parametrize(
    "component",
    [
        "",
        ".",
        "..",
        "a..b",
        ".hidden",
        "-dash-first",
        "a/b",
        "a\\b",
        "a%2fb",
        "..%2f",
        "a\x00b",
        "a b",
        "é.ts",
        "x" * 129,
        "seg.ts\n",
    ],
)
def test_invalid_components(component: str) -> None:
    with pytest.raises(InvalidObjectKey):
        validate_component(component)


def test_object_key_and_prefixes() -> None:
    assert object_key("videos", "m1", "master.m3u8") == "videos/m1/master.m3u8"
    assert split_key("ads/a1/seg_1.ts") == ("ads", "a1", "seg_1.ts")
    assert validate_prefix("videos/m1") == validate_prefix("videos/m1/") == "videos/m1/"
    with pytest.raises(InvalidObjectKey):
        object_key()
    with pytest.raises(InvalidObjectKey):
        object_key("videos", "../etc")
    for bad in ["", "/", "videos//m1", "/videos/m1", "videos/../m1"]:
        with pytest.raises(InvalidObjectKey):
            validate_prefix(bad)


@pytest.mark.parametrize(
    "key",
    [
        "../secret.txt",
        "videos/../../secret.txt",
        "videos/..%2f..%2fsecret.txt",
        "/etc/passwd",
        "//etc/passwd",
        "videos\\..\\..\\secret.txt",
        "videos/seg.ts\x00.jpg",
        "videos/./seg.ts",
        "videos//seg.ts",
        "",
    ],
)
async def test_traversal_keys_are_invalid(store: LocalOrigin, key: str) -> None:
    with pytest.raises(InvalidObjectKey):
        await store.read_bytes(key, max_size=1000)
    with pytest.raises(InvalidObjectKey):
        await store.head(key)
    with pytest.raises(InvalidObjectKey):
        await store.put_bytes(key, b"x")


@pytest.mark.parametrize(
    "path",
    [
        "/o/../secret.txt",
        "/o/videos/../../secret.txt",
        "/o/videos/..%2f..%2fsecret.txt",
        "/o/videos%2f..%2f..%2fsecret.txt",
        "/o/%2fetc%2fpasswd",
        "/o/videos/%00secret.txt",
        "/o/videos/%5c..%5csecret.txt",
    ],
)
async def test_traversal_requests_get_404(client: AnyClient, secret: Path, path: str) -> None:
    response = await client.get(URL(path, encoded=True))
    assert response.status == 404
    assert SECRET not in await response.read()


async def test_symlink_out_of_the_root_is_not_an_object(
    client: AnyClient, store: LocalOrigin, secret: Path
) -> None:
    videos = store.root / "videos"
    (videos / "evil.ts").symlink_to(secret)
    (videos / "evil-dir").symlink_to(secret.parent, target_is_directory=True)
    for key in ["videos/evil.ts", "videos/evil-dir/secret.txt"]:
        with pytest.raises(ObjectNotFound):
            await store.read_bytes(key, max_size=1000)
        with pytest.raises(ObjectNotFound):
            await store.head(key)
        assert not await store.exists(key)
        response = await client.get(f"/o/{key}")
        assert response.status == 404
        assert SECRET not in await response.read()
    # Writing through a symlinked directory would land outside the root: refused.
    with pytest.raises(OriginError):
        await store.put_bytes("videos/evil-dir/planted.ts", b"x")
    assert not await asyncio.to_thread((secret.parent / "planted.ts").exists)
    # Deleting through it would delete outside the root: refused or a no-op.
    assert await store.delete_prefix("videos/evil-dir") == 0
    assert await asyncio.to_thread(secret.exists)


async def test_symlink_inside_the_root_is_followed(client: AnyClient, store: LocalOrigin) -> None:
    alias = store.root / "videos" / "m1" / "720p" / "alias.ts"
    alias.symlink_to(store.root / SEGMENT)
    response = await client.get("/o/videos/m1/720p/alias.ts")
    assert response.status == 200
    assert await response.read() == DATA


async def test_fifo_directory_and_sibling_root_are_not_objects(
    client: AnyClient, store: LocalOrigin
) -> None:
    """What the hot path opens before it checks: a FIFO must not hang it (it would block
    an open for reading), a directory is no object, and a symlink into a sibling folder
    whose name merely starts with the root's is outside the root."""
    videos = store.root / "videos"
    os.mkfifo(videos / "pipe.ts")
    (videos / "folder.ts").mkdir()
    sibling = store.root.with_name(store.root.name + "-evil")
    sibling.mkdir()
    (sibling / "secret.ts").write_bytes(SECRET)
    (videos / "sibling.ts").symlink_to(sibling / "secret.ts")
    for key in ["videos/pipe.ts", "videos/folder.ts", "videos/sibling.ts"]:
        async with asyncio.timeout(5):
            response = await client.get(f"/o/{key}")
        assert response.status == 404, key
        assert SECRET not in await response.read()


def test_whole_files_under_uvloop_which_has_no_loop_sendfile(tmp_path: Path) -> None:
    """The gateway runs on uvloop: a whole-file GET there goes out with ``sendfile(2)``
    for what the socket takes at once and ``pread`` chunks for the rest (asyncio's own
    loop, which the other tests use, takes its native ``loop.sendfile``)."""
    data = os.urandom(8 * 1024 * 1024 + 123)  # more than a loopback socket takes at once
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "big.ts").write_bytes(data)

    async def fetch() -> tuple[bool, int, bytes, bytes]:
        runner = web.AppRunner(origin_app(LocalOrigin(tmp_path)))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/o/videos/big.ts") as r:
                    body = await r.read()
                    status = r.status
                # a second request on the same connection: the first response ended
                # exactly at its Content-Length
                async with http.get(f"http://127.0.0.1:{port}/o/videos/big.ts") as r:
                    again = await r.read()
            return _native_sendfile(asyncio.get_running_loop()), status, body, again
        finally:
            await runner.cleanup()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        native, status, body, again = runner.run(fetch())
    assert not native
    assert status == 200
    assert body == data
    assert again == data
    asyncio_loop = asyncio.new_event_loop()
    try:
        assert _native_sendfile(asyncio_loop)
    finally:
        asyncio_loop.close()

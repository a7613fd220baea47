"""Stalled clients never pin the gateway's memory (issue 10 #5).

The gateway runs as its own process (``python -m kush gateway --workers 1``) with the S3
origin on moto's server. 200 client sockets each ask for a 4 MiB segment (10 different
ones) and never read a byte. Before the fix a shared origin fetch kept its whole object
for as long as one reader was attached, and a request arriving after a fetch had ended
started a new one: the gateway grew by 4 MiB per stalled client (800 MiB here) and kept
it. Now the shared fetches hold at most ``KUSH_SHARED_FETCH_BUFFER_BYTES`` between them
(beyond it, requests stream straight from the origin with backpressure), and clients
that do not read for ``KUSH_CLIENT_WRITE_TIMEOUT_S`` are dropped. The assertion is on
memory, not on time."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from admin.publish import upload_package
from origin import S3Origin
from runtime.settings import Settings
from tests.conftest import Film
from tests.integration.helpers import free_port, kush_env, premium_master_playlist
from tests.support.moto_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, MotoServer

MiB = 1024 * 1024
SEGMENT_SIZE = 4 * MiB
SEGMENTS = 10  # 200 clients, 20 on each segment
CLIENTS = 200
# What the gateway may hold: the shared-fetch buffer, plus what each direct stream has in
# flight (about half a MiB: the origin connection's read buffers and a chunk) for at most
# the origin pool's 100 connections, plus its per-connection bookkeeping.
BUFFER_BYTES = 16 * MiB
WRITE_TIMEOUT_S = 5
RSS_GROWTH_LIMIT = 100 * MiB
RENDITION = "1080p"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


def _media_playlist() -> str:
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        "#EXT-X-TARGETDURATION:6",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
    ]
    for i in range(SEGMENTS):
        lines += ["#EXTINF:6.000000,", f"seg_{i:05d}.ts"]
    return "\n".join([*lines, "#EXT-X-ENDLIST", ""])


@pytest.fixture
async def bucket(moto: MotoServer, film: Film) -> str:
    """The film in a fresh bucket, its 1080p rendition made of 40 segments of 4 MiB."""
    name = moto.create_bucket()
    store = S3Origin(
        endpoint_url=moto.endpoint_url,
        boto_session=moto.boto_session,
        bucket=name,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
        region=REGION,
    )
    try:
        await upload_package(store, film.movie_id, film.package.master_path.parent)
        folder = f"videos/{film.movie_id}/{RENDITION}"
        await store.put_bytes(f"{folder}/index.m3u8", _media_playlist().encode())
        data = os.urandom(SEGMENT_SIZE)
        for i in range(SEGMENTS):
            await store.put_bytes(f"{folder}/seg_{i:05d}.ts", i.to_bytes(4, "big") + data[4:])
    finally:
        await store.close()
    return name


@pytest.fixture
async def gateway(
    settings: Settings, moto: MotoServer, bucket: str, tmp_path: Path
) -> AsyncIterator[tuple[str, int]]:
    """A gateway process on the S3 origin: its base URL and pid."""
    port = free_port()
    env = {
        **kush_env(settings, port=port, data_dir=tmp_path, inherit_kush_vars=False),
        "KUSH_MODE": "demo",
        "KUSH_SEED_DEMO_FILM": "false",
        "KUSH_LOG_LEVEL": "WARNING",
        "KUSH_ORIGIN": "s3",
        "KUSH_S3_ENDPOINT_URL": moto.endpoint_url,
        "KUSH_S3_BUCKET": bucket,
        "KUSH_S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "KUSH_S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "KUSH_S3_REGION": REGION,
        "KUSH_SHARED_FETCH_BUFFER_BYTES": str(BUFFER_BYTES),
        "KUSH_CLIENT_WRITE_TIMEOUT_S": str(WRITE_TIMEOUT_S),
        # this test is about memory, not the per-session cap: let every request in
        "KUSH_SESSION_MAX_CONCURRENT_SEGMENTS": str(CLIENTS * 2),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kush",
        "gateway",
        "--workers",
        "1",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with asyncio.timeout(60), aiohttp.ClientSession() as http:
            while True:
                assert proc.returncode is None, "the gateway exited"
                try:
                    async with http.get(f"{base}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        yield base, proc.pid
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _rss(pid: int) -> int:
    """Resident memory of a process, in bytes (VmRSS of /proc/PID/status)."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    assert match is not None
    return int(match.group(1)) * 1024


async def _segment_paths(http: aiohttp.ClientSession, base: str, film: Film) -> list[str]:
    master = await premium_master_playlist(http, base, film.movie_id)
    variant = next(line for line in master.splitlines() if line.startswith(f"{RENDITION}/"))
    async with http.get(f"{base}/hls/{film.movie_id}/{variant}") as response:
        assert response.status == 200
        media = await response.text()
    uris = [line for line in media.splitlines() if line and not line.startswith("#")]
    assert len(uris) == SEGMENTS
    return [f"/hls/{film.movie_id}/{RENDITION}/{uri}" for uri in uris]


async def _stalled_client(port: int, path: str) -> socket.socket:
    """A connection that sends its request and never reads the answer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel holds little
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, f"GET {path} HTTP/1.1\r\nHost: edge\r\n\r\n".encode())
    return sock


async def _write_timeouts(http: aiohttp.ClientSession, base: str) -> float:
    async with http.get(f"{base}/metrics") as response:
        text = await response.text()
    match = re.search(r"^kush_http_write_timeouts_total\{[^}]*\} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_200_stalled_clients_keep_memory_bounded(
    gateway: tuple[str, int], film: Film
) -> None:
    base, pid = gateway
    port = int(base.rsplit(":", 1)[1])
    sockets: list[socket.socket] = []
    async with asyncio.timeout(240), aiohttp.ClientSession() as http:
        paths = await _segment_paths(http, base, film)
        # warm up: one segment end to end (allocator arenas, origin connections)
        async with http.get(f"{base}{paths[0]}") as response:
            assert response.status == 200
            assert len(await response.read()) == SEGMENT_SIZE
        baseline = _rss(pid)
        try:
            for i in range(CLIENTS):
                sockets.append(await _stalled_client(port, paths[i % SEGMENTS]))
            # Watch the gateway while it answers them: whatever it buffers, it buffers
            # within seconds (the origin is on loopback); keep the peak.
            peak = baseline
            for _ in range(50):
                peak = max(peak, _rss(pid))
                await asyncio.sleep(0.2)
            growth = peak - baseline
            assert growth < RSS_GROWTH_LIMIT, f"gateway grew by {growth / MiB:.0f} MiB"

            # The clients never read: each is dropped after the write timeout (bounded
            # by the timeout above), and a client that reads is still served.
            while await _write_timeouts(http, base) < CLIENTS:  # noqa: ASYNC110 -- bounded
                await asyncio.sleep(0.5)
            async with http.get(f"{base}{paths[1]}") as response:
                assert response.status == 200
                assert len(await response.read()) == SEGMENT_SIZE
        finally:
            for sock in sockets:
                sock.close()

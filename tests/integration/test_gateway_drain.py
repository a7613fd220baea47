"""Graceful shutdown and rolling restart of gateway workers (issue 10, drills).

Real ``kush gateway`` processes on loopback, the local origin, every wait bounded; the
assertions are on bytes, statuses and exit codes, never on durations.

* SIGTERM to a worker in the middle of a 32 MiB segment sent to a client that is not
  reading: the worker closes its listening socket (new connections go to its sibling on
  the same port), waits for the transfer, which the client then completes byte for byte,
  and exits 0.
* SIGHUP to ``kush gateway --workers 2`` under a load loop of keep-alive clients that
  fetch playlists and segments and never retry: every worker is replaced, one at a time,
  and not one request fails.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil
import pytest

from gateway.playlists import origin_key_for
from runtime.settings import Settings
from tests.conftest import Film
from tests.integration.helpers import free_port, kush_env, premium_master_playlist

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
BIG_SEGMENT = 32 * MiB
START_LIMIT_S = 90.0
DRAIN_TIMEOUT_S = 120  # far above what the drills need: they must never reach it
CLIENTS = 4


def _env(settings: Settings, port: int, origin_dir: Path, data_dir: Path) -> dict[str, str]:
    return {
        **kush_env(settings, port=port, data_dir=data_dir, inherit_kush_vars=False),
        # its own Redis keys: the premium viewer's streams started here stay live for the
        # idle timeout and would count against the stream limit of later tests
        "KUSH_REDIS_PREFIX": f"{settings.redis_prefix}drain:",
        "KUSH_MODE": "demo",
        "KUSH_SEED_DEMO_FILM": "false",
        "KUSH_LOG_LEVEL": "INFO",
        "KUSH_LOG_FORMAT": "text",
        "KUSH_ORIGIN_DIR": str(origin_dir),
        "KUSH_DRAIN_TIMEOUT_S": str(DRAIN_TIMEOUT_S),
        # the slow client below pauses reading: not a stalled client to drop
        "KUSH_CLIENT_WRITE_TIMEOUT_S": "600",
        "KUSH_PLAYBACK_STARTS_PER_MINUTE": "1000",
    }


def _start(env: dict[str, str], args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "kush", "gateway", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _healthz_pid(port: int) -> int | None:
    """The pid of the worker that answers a new connection, or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except OSError:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        return None
    return int(json.loads(body)["pid"])


def _pids_answering(port: int, until: set[int], limit_s: float) -> set[int]:
    """Pids seen on new connections until all of ``until`` answered (or the limit)."""
    seen: set[int] = set()
    deadline = time.monotonic() + limit_s
    while not until <= seen and time.monotonic() < deadline:
        pid = _healthz_pid(port)
        if pid is None:
            time.sleep(0.2)
        else:
            seen.add(pid)
    return seen


async def _until(done: Callable[[], bool], limit_s: float) -> bool:
    """Poll ``done`` until it holds or ``limit_s`` has passed; its last answer."""
    deadline = time.monotonic() + limit_s
    while True:
        if done() or time.monotonic() >= deadline:
            return done()
        await asyncio.sleep(0.05)


def _listening(pid: int, port: int) -> bool:
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns)


async def _session_paths(base: str, film: Film) -> tuple[str, list[str]]:
    """A premium viewer's playback session: its first media playlist and segment paths."""
    async with aiohttp.ClientSession() as http:
        master = await premium_master_playlist(http, base, film.movie_id)
        variant = next(line for line in master.splitlines() if line and line[0] != "#")
        playlist = f"/hls/{film.movie_id}/{variant}"
        async with http.get(base + playlist) as response:
            assert response.status == 200
            media = await response.text()
    rendition = variant.split("/")[0]
    segments = [
        f"/hls/{film.movie_id}/{rendition}/{line}"
        for line in media.splitlines()
        if line and not line.startswith("#")
    ]
    assert segments
    return playlist, segments


@pytest.fixture
def origin_copy(film: Film, tmp_path: Path) -> Path:
    """The film's origin folder, copied: a test may change its files."""
    copy = tmp_path / "origin"
    shutil.copytree(film.origin_dir, copy)
    return copy


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; killed if still running at its end."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        _stop(proc)


# ------------------------------------------------------------------ graceful shutdown


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the response head"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _content_length(head: bytes) -> int:
    match = re.search(rb"(?im)^content-length:\s*(\d+)\r?$", head)
    assert match is not None, head
    return int(match[1])


def _connection_to(pid: int, port: int, limit_s: float) -> socket.socket:
    """A keep-alive connection served by worker ``pid`` (asked on ``/healthz`` first)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        sock = socket.socket()
        # a small receive buffer: the kernel holds little of what the worker sends
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        head, rest = _read_head(sock)
        body = rest
        while len(body) < _content_length(head):
            body += sock.recv(65536)
        if json.loads(body)["pid"] == pid:
            return sock
        sock.close()
    raise AssertionError(f"no connection reached worker {pid}")


async def test_sigterm_lets_an_in_flight_segment_finish(
    settings: Settings,
    film: Film,
    origin_copy: Path,
    tmp_path: Path,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    port = free_port()
    env = _env(settings, port, origin_copy, tmp_path)
    log_path = tmp_path / "gateway.log"
    first = _start(env, ["--workers", "1"], log_path)
    procs.append(first)
    assert _pids_answering(port, {first.pid}, START_LIMIT_S) == {first.pid}
    second = _start(env, ["--workers", "1"], log_path)  # its sibling on the same port
    procs.append(second)
    assert second.pid in _pids_answering(port, {first.pid, second.pid}, START_LIMIT_S)

    _, segments = await _session_paths(f"http://127.0.0.1:{port}", film)
    path = segments[0]
    movie_id, rendition, name = path.split("?")[0].split("/")[2:5]
    big = origin_copy / origin_key_for(movie_id, rendition, name)
    payload = os.urandom(BIG_SEGMENT)
    big.write_bytes(payload)

    sock = await asyncio.to_thread(_connection_to, first.pid, port, START_LIMIT_S)
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        head, received = await asyncio.to_thread(_read_head, sock)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert _content_length(head) == BIG_SEGMENT
        # the client stops reading; most of the segment is still to be sent
        first.send_signal(signal.SIGTERM)
        assert await _until(lambda: not _listening(first.pid, port), START_LIMIT_S)
        # new connections: the sibling takes every one of them
        answered = [await asyncio.to_thread(_healthz_pid, port) for _ in range(20)]
        assert answered == [second.pid] * 20
        assert first.poll() is None  # still sending our segment

        def read_rest() -> bytes:
            data = received
            while len(data) < BIG_SEGMENT:
                chunk = sock.recv(1024 * 1024)
                assert chunk, f"cut after {len(data)} bytes"
                data += chunk
            return data

        body = await asyncio.to_thread(read_rest)
    finally:
        sock.close()
    assert hashlib.sha256(body).digest() == hashlib.sha256(payload).digest()
    assert await asyncio.to_thread(first.wait, DRAIN_TIMEOUT_S) == 0
    assert "SIGTERM: draining" in log_path.read_text()
    assert "drain timeout" not in log_path.read_text()
    assert _healthz_pid(port) == second.pid
    second.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(second.wait, DRAIN_TIMEOUT_S) == 0
    assert _healthz_pid(port) is None  # nobody listens: refused


# ------------------------------------------------------------------ rolling restart


@dataclass
class Tally:
    """What the load clients saw."""

    ok: int = 0
    connection_close: int = 0
    connections: int = 0
    failures: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        assert headers.get("transfer-encoding") == "chunked", headers
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        await reader.readexactly(2)
    return status, headers, body


async def _load_client(port: int, paths: list[str], stop: asyncio.Event, tally: Tally) -> None:
    """Keep-alive requests one after another, never retried: a new connection only after
    a response said ``Connection: close``; any error or non-200 is a failure."""
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    i = 0
    try:
        while not stop.is_set():
            path = paths[i % len(paths)]
            i += 1
            try:
                fresh = conn is None
                if conn is None:
                    conn = await asyncio.open_connection("127.0.0.1", port)
                    tally.connections += 1
                reader, writer = conn
                writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                await writer.drain()
                async with asyncio.timeout(30):
                    status, headers, _ = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                reused = "a reused" if not fresh else "a new"
                tally.failures.append(f"{path.split('?')[0]} on {reused} connection: {exc!r}")
                if conn is not None:
                    conn[1].close()
                conn = None
                continue
            tally.statuses[status] += 1
            if status == 200:
                tally.ok += 1
            else:
                tally.failures.append(f"{path.split('?')[0]}: status {status}")
            if headers.get("connection", "").lower() == "close":
                tally.connection_close += 1
                conn[1].close()
                conn = None
    finally:
        if conn is not None:
            conn[1].close()


async def test_rolling_restart_under_load_drops_no_request(
    settings: Settings,
    film: Film,
    origin_copy: Path,
    tmp_path: Path,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    port = free_port()
    env = _env(settings, port, origin_copy, tmp_path)
    log_path = tmp_path / "gateway.log"
    sup = _start(env, ["--workers", "2"], log_path)
    procs.append(sup)
    deadline = time.monotonic() + START_LIMIT_S
    workers: set[int] = set()
    while len(workers) < 2 and time.monotonic() < deadline:
        workers = {c.pid for c in psutil.Process(sup.pid).children()}
        await asyncio.sleep(0.1)
    assert len(workers) == 2
    assert await asyncio.to_thread(_pids_answering, port, workers, START_LIMIT_S) == workers
    playlist, segments = await _session_paths(f"http://127.0.0.1:{port}", film)
    # the media playlist and a segment in turn, each client from another place in the film
    paths = [p for seg in segments for p in (playlist, seg)]

    tally = Tally()
    stop = asyncio.Event()
    clients = [
        asyncio.create_task(_load_client(port, paths[2 * i :] + paths[: 2 * i], stop, tally))
        for i in range(CLIENTS)
    ]
    try:
        assert await _until(lambda: tally.ok >= 50 or bool(tally.failures), START_LIMIT_S)
        before_roll = tally.ok
        sup.send_signal(signal.SIGHUP)

        # every old worker drained and exited; two new ones serve the port
        deadline = time.monotonic() + 2 * START_LIMIT_S + DRAIN_TIMEOUT_S
        current: set[int] = workers
        while time.monotonic() < deadline:
            current = {c.pid for c in psutil.Process(sup.pid).children()}
            if len(current) == 2 and not current & workers:
                break
            await asyncio.sleep(0.1)
        assert len(current) == 2
        assert not current & workers
        after_roll = tally.ok
        assert await _until(
            lambda: tally.ok >= after_roll + 50 or bool(tally.failures), START_LIMIT_S
        )
    finally:
        stop.set()
        await asyncio.gather(*clients)

    print(
        f"rolling restart under load: {tally.ok} requests answered 200, "
        f"{len(tally.failures)} failed, {tally.connection_close} told Connection: close, "
        f"{tally.connections} connections opened"
    )
    assert tally.failures == []
    assert set(tally.statuses) == {200}
    assert before_roll > 0
    assert tally.ok >= after_roll + 50
    # clients on a draining worker were told to go, then reconnected to the new ones
    assert tally.connection_close >= 1
    assert tally.connections > CLIENTS
    assert sup.poll() is None
    new_pids = await asyncio.to_thread(_pids_answering, port, current, START_LIMIT_S)
    assert new_pids == current
    text = log_path.read_text()
    assert "rolling restart done: 2 of 2 processes replaced" in text
    assert "drain timeout" not in text
    for pid in workers:
        assert f"old pid {pid} exited with status 0" in text
    sup.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(sup.wait, DRAIN_TIMEOUT_S + 30) == 0

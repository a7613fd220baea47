"""Stalled clients (issue 10 #5): a client that stops reading its response is dropped
after ``KUSH_CLIENT_WRITE_TIMEOUT_S``; a request body that trickles in is given up after
``KUSH_BODY_READ_TIMEOUT_S`` with a 408 and a closed connection. A slow client that keeps
reading is never dropped."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import re
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from runtime.settings import Settings
from runtime.web import base_app, json_response, metrics_key, read_json

BODY = os.urandom(8 * 1024 * 1024)
CHUNK = 64 * 1024


async def _stream(request: web.Request) -> web.StreamResponse:
    out = web.StreamResponse()
    out.content_length = len(BODY)
    await out.prepare(request)
    for start in range(0, len(BODY), CHUNK):
        await out.write(BODY[start : start + CHUNK])
    await out.write_eof()
    return out


async def _whole(request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/octet-stream")


async def _echo(request: web.Request) -> web.Response:
    return json_response(await read_json(request))


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[TestServer]:
    app = base_app(
        dataclasses.replace(settings, client_write_timeout_s=2, body_read_timeout_s=1), "test"
    )
    app.router.add_get("/stream", _stream)
    app.router.add_get("/whole", _whole)
    app.router.add_post("/echo", _echo)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    yield test_server
    await test_server.close()


async def _connect(server: TestServer) -> socket.socket:
    """A client socket with a small receive buffer, so the kernel absorbs little."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", int(server.port or 0)))
    return sock


async def _read_all(sock: socket.socket, *, pause: float = 0.0, limit: int | None = None) -> bytes:
    """Everything until the server closes (or resets) the connection, or ``limit``."""
    loop = asyncio.get_running_loop()
    parts: list[bytes] = []
    received = 0
    while limit is None or received < limit:
        try:
            data = await loop.sock_recv(sock, 16 * 1024)
        except ConnectionResetError:
            break
        if not data:
            break
        parts.append(data)
        received += len(data)
        if pause:
            await asyncio.sleep(pause)
    return b"".join(parts)


async def _read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One response with a Content-Length: its head and its body."""
    loop = asyncio.get_running_loop()
    data = b""
    while b"\r\n\r\n" not in data:
        more = await loop.sock_recv(sock, 4096)
        assert more, "connection closed before a response"
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length: *(\d+)", head)[1])  # type: ignore[index]
    while len(body) < length:
        more = await loop.sock_recv(sock, 4096)
        assert more, "connection closed in the body"
        body += more
    return head, body


def _dropped(server: TestServer) -> float:
    registry = server.app[metrics_key].registry
    value = registry.get_sample_value("kush_http_write_timeouts_total", {"service": "test"})
    return value or 0.0


@pytest.mark.parametrize("path", ["/stream", "/whole"])
async def test_client_that_stops_reading_is_dropped(
    server: TestServer, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kush.access")
    sock = await _connect(server)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(30):
            request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            await loop.sock_sendall(sock, request.encode())
            while _dropped(server) < 1:  # noqa: ASYNC110 -- bounded by the timeout
                await asyncio.sleep(0.1)
            received = await _read_all(sock)
    finally:
        sock.close()
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert len(body) < len(BODY)  # cut: the server gave up on this client
    if path == "/stream":  # logged once the handler ends: not a success
        statuses = [
            r.fields["status"]  # type: ignore[attr-defined]
            for r in caplog.records
            if r.name == "kush.access" and r.fields["path"] == path  # type: ignore[attr-defined]
        ]
        assert statuses == [499]


async def test_slow_client_that_keeps_reading_is_not_dropped(server: TestServer) -> None:
    """Far slower than the link allows but moving (about 400 KB/s: the kernel's send
    queue holds megabytes, so the server's own buffer stands still for seconds at a
    time while the client reads): never dropped."""
    sock = await _connect(server)
    loop = asyncio.get_running_loop()
    wanted = 3 * 1024 * 1024
    try:
        async with asyncio.timeout(120):
            request = "GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            await loop.sock_sendall(sock, request.encode())
            received = await _read_all(sock, pause=0.01, limit=wanted)
    finally:
        sock.close()
    assert len(received) >= wanted  # read on, never cut
    assert (
        received.partition(b"\r\n\r\n")[2]
        == BODY[: len(received) - received.index(b"\r\n\r\n") - 4]
    )
    assert _dropped(server) == 0


async def test_body_sent_one_byte_at_a_time_gets_408_and_is_closed(server: TestServer) -> None:
    sock = await _connect(server)
    loop = asyncio.get_running_loop()

    async def trickle() -> None:
        for _ in range(200):
            await loop.sock_sendall(sock, b" ")
            await asyncio.sleep(0.2)

    dribbler: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(20):
            head = (
                "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Content-Length: 200\r\n\r\n{"
            )
            await loop.sock_sendall(sock, head.encode())
            dribbler = asyncio.create_task(trickle())
            head, body = await _read_response(sock)
    finally:
        if dribbler is not None:
            dribbler.cancel()
            await asyncio.gather(dribbler, return_exceptions=True)
        sock.close()
    assert head.startswith(b"HTTP/1.1 408")
    assert b"connection: close" in head.lower()  # the rest of the body is not awaited
    assert json.loads(body)["error"]["code"] == "request_timeout"


async def test_body_sent_in_time_is_read(server: TestServer) -> None:
    sock = await _connect(server)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(20):
            body = b'{"ok": 1}'
            head = (
                "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            await loop.sock_sendall(sock, head.encode() + body)
            received = await _read_all(sock)
    finally:
        sock.close()
    assert received.startswith(b"HTTP/1.1 200")
    assert received.endswith(b'{"ok":1}')

"""A small S3-like origin on loopback whose behaviour a test switches at will.

It answers the presigned GET/HEAD requests `S3Origin` sends (``/{bucket}/{key}?X-Amz-…``;
signatures are not checked) from a dict of objects and, for keys not in it, from files
under ``root``. ``mode`` says how it answers GETs:

``healthy``  the object (``Range`` honoured: 206)
``error``    500 with an S3 error body
``slow``     the headers come ``delay`` seconds late
``cut``      headers and the first ``cut_after`` bytes, then the connection is aborted
``stall``    headers and the first ``cut_after`` bytes, then nothing more

and :meth:`FakeOrigin.stop` takes it down (connections refused) until
:meth:`FakeOrigin.start` brings it back on the same port. ``gets`` counts GET
requests; ``gate``, when set, holds every GET until it is opened.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path
from typing import Literal

from aiohttp import hdrs, web

__all__ = ["FakeOrigin", "Mode"]

Mode = Literal["healthy", "error", "slow", "cut", "stall"]

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")
_LAST_MODIFIED = "Tue, 01 Sep 2026 10:00:00 GMT"


class FakeOrigin:
    """An S3-like origin whose faults a test turns on and off."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root
        self.objects: dict[str, bytes] = {}
        self.mode: Mode = "healthy"
        self.delay = 30.0
        self.cut_after = 100_000
        self.gets = 0
        self.heads = 0
        self.gate: asyncio.Event | None = None
        self.waiting = 0  # GETs held by the gate right now
        self._port = 0
        self._runner: web.AppRunner | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    async def start(self) -> str:
        """Listen (again, on the same port once one was chosen)."""
        app = web.Application()
        app.router.add_route("HEAD", "/{bucket}", self._head_bucket)
        app.router.add_route("*", "/{bucket}/{key:.+}", self._object)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self._port, reuse_address=True)
        await site.start()
        self._port = int(runner.addresses[0][1])
        self._runner = runner
        return self.endpoint_url

    async def stop(self) -> None:
        """Stop listening and drop every connection (an origin that is down)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def _body(self, key: str) -> bytes | None:
        if key in self.objects:
            return self.objects[key]
        if self.root is not None:
            path = self.root / key
            if path.is_file():
                return path.read_bytes()
        return None

    async def _head_bucket(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def _object(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        if request.method == hdrs.METH_HEAD:
            self.heads += 1
        elif request.method == hdrs.METH_GET:
            self.gets += 1
        else:
            return web.Response(status=405)
        if self.gate is not None:
            self.waiting += 1
            try:
                await self.gate.wait()
            finally:
                self.waiting -= 1
        mode = self.mode
        if mode == "error":
            body = "<Error><Code>InternalError</Code><Message>boom</Message></Error>"
            return web.Response(status=500, text=body, content_type="application/xml")
        if mode == "slow":
            await asyncio.sleep(self.delay)
        data = self._body(key)
        if data is None:
            body = "<Error><Code>NoSuchKey</Code></Error>"
            return web.Response(status=404, text=body, content_type="application/xml")
        out = web.StreamResponse()
        out.headers[hdrs.ETAG] = f'"{hashlib.md5(data).hexdigest()}"'
        out.headers[hdrs.LAST_MODIFIED] = _LAST_MODIFIED
        out.headers[hdrs.CONTENT_TYPE] = "application/octet-stream"
        start, end = 0, len(data) - 1
        match = _RANGE.fullmatch(request.headers.get(hdrs.RANGE, ""))
        if match:
            start = int(match.group(1))
            end = min(int(match.group(2) or end), end)
            out.set_status(206)
            out.headers[hdrs.CONTENT_RANGE] = f"bytes {start}-{end}/{len(data)}"
        body_bytes = data[start : end + 1]
        out.content_length = len(body_bytes)
        await out.prepare(request)
        if request.method == hdrs.METH_HEAD:
            return out
        if mode in ("cut", "stall"):
            await out.write(body_bytes[: self.cut_after])
            if mode == "stall":
                await asyncio.sleep(3600)
            assert request.transport is not None
            request.transport.abort()
            return out
        await out.write(body_bytes)
        await out.write_eof()
        return out

"""Streaming an S3 object to a client: Range, ETag/304, 416, and backpressure.

`ObjectStreamer.serve` answers the way ``web.FileResponse`` does for the local store,
so a player or CDN sees the same HTTP from either: HEAD from a HEAD to the origin;
a ``Range`` (RFC 9110 §14) or conditional request forwarded to the origin with those
headers; a plain GET streamed from the fetch shared by every concurrent reader of the
object (`FetchCollapser`). Once the headers are out, an origin failure cuts the client
connection rather than end a body that would look complete.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Final

import aiohttp
from aiohttp import hdrs, web

from origin.base import content_type_for
from origin.errors import RangeNotSatisfiable
from origin.ranges import parse_range, resolve_range, unsatisfied_range
from origin.s3.collapse import FetchCollapser
from origin.s3.upstream import CHUNK_SIZE, StreamBroken, Upstream, read_answer
from runtime.web import CLIENT_CLOSED, UPSTREAM_ABORTED, mark_incomplete

__all__ = ["ObjectStreamer"]

log = logging.getLogger(__name__)

_UNCACHEABLE: Final = "no-store"
_ACTUAL_SIZE = re.compile(rb"<ActualObjectSize>(\d{1,20})</ActualObjectSize>")
_UNSATISFIED = re.compile(r"bytes \*/(\d{1,20})")


def _etag_matches(etag: str, request: web.BaseRequest) -> bool:
    """Weak comparison of If-None-Match with the object's entity-tag (RFC 9110 §13.1.2)."""
    candidates = request.if_none_match
    if not candidates or not etag:
        return False
    value = etag.removeprefix("W/").strip('"')
    return any(c.value == "*" or c.value == value for c in candidates)


def _abort_client(request: web.BaseRequest) -> None:
    """Cut the client connection so a truncated body is never taken as complete."""
    transport = request.transport
    if transport is not None:
        transport.abort()


def _conditionals(request: web.BaseRequest) -> dict[str, str]:
    names = (hdrs.IF_NONE_MATCH, hdrs.IF_MODIFIED_SINCE)
    return {name: request.headers[name] for name in names if name in request.headers}


def _object_headers(
    out: web.StreamResponse,
    key: str,
    etag: str,
    last_modified: datetime | str | None,
    cache_control: str,
) -> None:
    out.headers[hdrs.CONTENT_TYPE] = content_type_for(key)
    out.headers[hdrs.ACCEPT_RANGES] = "bytes"
    out.headers[hdrs.CACHE_CONTROL] = cache_control
    if etag:
        out.headers[hdrs.ETAG] = etag
    if isinstance(last_modified, datetime):
        out.last_modified = last_modified
    elif last_modified:
        out.headers[hdrs.LAST_MODIFIED] = last_modified


async def _send_not_modified(
    request: web.Request, etag: str, cache_control: str
) -> web.StreamResponse:
    out = web.StreamResponse(status=304)
    out.headers[hdrs.CACHE_CONTROL] = cache_control
    if etag:
        out.headers[hdrs.ETAG] = etag
    await out.prepare(request)
    await out.write_eof()
    return out


async def _send_unsatisfiable(request: web.Request, size: int) -> web.StreamResponse:
    # RFC 9110 §15.5.17: a 416 carries the current length; never cache it under
    # the object's key.
    out = web.StreamResponse(status=416)
    out.headers[hdrs.CONTENT_RANGE] = unsatisfied_range(size)
    out.headers[hdrs.CACHE_CONTROL] = _UNCACHEABLE
    out.content_length = 0
    await out.prepare(request)
    await out.write_eof()
    return out


class ObjectStreamer:
    """Answers client requests for objects of one S3 store."""

    def __init__(self, upstream: Upstream, collapser: FetchCollapser) -> None:
        self._upstream = upstream
        self._collapser = collapser

    async def serve(
        self, request: web.Request, key: str, *, cache_control: str
    ) -> web.StreamResponse:
        """Stream the object to the client; ``key`` is already validated.

        HEAD is answered from a HEAD to the origin. Requests with ``Range`` (or
        conditional headers, when no fetch of the object is in flight) go to the origin
        with those headers forwarded; plain GETs share one origin fetch per object.
        ``If-Range`` is not forwarded (S3 lacks it): such requests get the whole object.
        """
        if request.method == hdrs.METH_HEAD:
            return await self._serve_head(request, key, cache_control)
        range_header = request.headers.get(hdrs.RANGE)
        if range_header is not None and hdrs.IF_RANGE in request.headers:
            # S3 has no If-Range; sending the whole object is always a correct answer
            # (RFC 9110 §13.1.5), a part of a changed object never is.
            range_header = None
        if range_header is not None:
            try:
                spec = parse_range(range_header)
            except ValueError:
                spec = None
            if spec is None or spec.suffix == 0:  # RFC 9110 §14.1.2: "-0" is unsatisfiable
                return await self._serve_invalid_range(request, key, range_header, cache_control)
            headers = {hdrs.RANGE: spec.header(), **_conditionals(request)}
            return await self._serve_direct(request, key, cache_control, headers)
        conditionals = _conditionals(request)
        if conditionals and not self._collapser.in_flight(key):
            return await self._serve_direct(request, key, cache_control, conditionals)
        return await self._serve_shared(request, key, cache_control)

    async def _serve_head(
        self, request: web.Request, key: str, cache_control: str
    ) -> web.StreamResponse:
        info = await self._upstream.head(key)
        if _etag_matches(info.etag, request):
            return await _send_not_modified(request, info.etag, cache_control)
        out = web.StreamResponse()
        _object_headers(out, key, info.etag, info.last_modified, cache_control)
        length = info.size
        range_header = request.headers.get(hdrs.RANGE)
        if range_header is not None:  # answered as FileResponse does for HEAD
            try:
                byte_range = resolve_range(range_header, info.size)
            except RangeNotSatisfiable:
                return await _send_unsatisfiable(request, info.size)
            out.set_status(206)
            out.headers[hdrs.CONTENT_RANGE] = byte_range.content_range(info.size)
            length = byte_range.length
        out.content_length = length
        await out.prepare(request)
        await out.write_eof()
        return out

    async def _serve_invalid_range(
        self, request: web.Request, key: str, range_header: str, cache_control: str
    ) -> web.StreamResponse:
        """A malformed or multi-part Range: 416, like ``FileResponse`` (needs the size)."""
        info = await self._upstream.head(key)
        if _etag_matches(info.etag, request):
            return await _send_not_modified(request, info.etag, cache_control)
        log.debug("unsupported Range %r for %s", range_header[:64], key)
        return await _send_unsatisfiable(request, info.size)

    async def _serve_direct(
        self, request: web.Request, key: str, cache_control: str, headers: Mapping[str, str]
    ) -> web.StreamResponse:
        """Forward one GET (with Range/conditionals) and stream its answer."""
        upstream = self._upstream
        async with upstream.request(hdrs.METH_GET, "get_object", key, headers) as response:
            if response.status == 304:
                etag = response.headers.get(hdrs.ETAG, "")
                return await _send_not_modified(request, etag, cache_control)
            if response.status == 416:
                size = await self._unsatisfied_size(response, key)
                return await _send_unsatisfiable(request, size)
            if response.status not in (200, 206):
                await upstream.raise_for_status(response, "get_object", key)
            answer = read_answer(key, response, shared=False)
            out = web.StreamResponse(status=response.status)
            _object_headers(out, key, answer.info.etag, answer.last_modified_header, cache_control)
            if response.status == 206:
                out.headers[hdrs.CONTENT_RANGE] = response.headers.get(hdrs.CONTENT_RANGE, "")
            if answer.content_length is not None:
                out.content_length = answer.content_length

            async def next_chunk() -> bytes:
                return await upstream.read_body(response, key, CHUNK_SIZE)

            await self._pipe(request, out, key, next_chunk)
            return out

    async def _serve_shared(
        self, request: web.Request, key: str, cache_control: str
    ) -> web.StreamResponse:
        """Stream from the fetch shared by every concurrent full GET of ``key``."""
        collapser = self._collapser
        fetch = collapser.join(key)
        if fetch is None:  # the shared-fetch buffer is full: stream it on its own
            return await self._serve_direct(request, key, cache_control, _conditionals(request))
        try:
            answer = await collapser.wait_answer(fetch)
            if answer.shared:
                if _etag_matches(answer.info.etag, request):
                    return await _send_not_modified(request, answer.info.etag, cache_control)
                out = web.StreamResponse()
                _object_headers(
                    out, key, answer.info.etag, answer.last_modified_header, cache_control
                )
                out.content_length = answer.info.size
                index = 0

                async def next_chunk() -> bytes:
                    nonlocal index
                    chunk = await fetch.chunk_at(index)
                    index += 1
                    return chunk

                await self._pipe(request, out, key, next_chunk)
                return out
        finally:
            collapser.leave(fetch)
        # Too big to share: this request streams it on its own.
        return await self._serve_direct(request, key, cache_control, _conditionals(request))

    async def _pipe(
        self,
        request: web.Request,
        out: web.StreamResponse,
        key: str,
        next_chunk: Callable[[], Awaitable[bytes]],
    ) -> None:
        """Send the headers, then copy chunks to the client with backpressure.

        Once the headers are out, an origin failure cannot become an error answer and
        must not be retried (the client has bytes already): cut the connection so the
        client sees a truncated body rather than a short one that looks complete, and
        have the request logged as 502. A client that goes away (or is dropped for not
        reading) is logged as 499: a response that did not complete is never a 200.
        """
        try:
            await out.prepare(request)
        except ConnectionError:
            log.debug("client went away before %s was sent", key)
            mark_incomplete(request, CLIENT_CLOSED)
            return
        while True:
            try:
                chunk = await next_chunk()
            except StreamBroken:
                self._upstream.stats.aborted_streams += 1
                mark_incomplete(request, UPSTREAM_ABORTED)
                _abort_client(request)
                return
            if not chunk:
                break
            try:
                await out.write(chunk)  # waits while the client's buffer is full
            except ConnectionError:
                log.debug("client went away while %s was sent", key)
                mark_incomplete(request, CLIENT_CLOSED)
                return
        try:
            await out.write_eof()
        except ConnectionError:
            log.debug("client went away at the end of %s", key)
            mark_incomplete(request, CLIENT_CLOSED)

    async def _unsatisfied_size(self, response: aiohttp.ClientResponse, key: str) -> int:
        """The object size from a 416 (Content-Range, S3's error body, or a HEAD)."""
        if match := _UNSATISFIED.fullmatch(response.headers.get(hdrs.CONTENT_RANGE, "")):
            return int(match.group(1))
        body = await response.content.read(16 * 1024)
        if match_body := _ACTUAL_SIZE.search(body):
            return int(match_body.group(1))
        return (await self._upstream.head(key)).size

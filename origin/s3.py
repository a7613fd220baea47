"""``S3Origin``: Cloudflare R2 or any S3 API. boto3 signs, aiohttp streams.

The hot path never runs boto3 I/O: reads go to presigned URLs (signed once per object
and reused for most of their lifetime) through one shared ``aiohttp.ClientSession``,
and bytes are streamed to the client chunk by chunk with backpressure. Concurrent full
GETs of one object share a single origin fetch. Origin timeouts and failures are
retried once (before any byte reached the client) and counted by a circuit breaker.
Writes (uploads, deletes, listings) use boto3 in worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, NamedTuple, NoReturn, TypeVar

import aiohttp
import boto3
import botocore.exceptions
from aiohttp import hdrs, web
from boto3.exceptions import Boto3Error
from botocore.config import Config
from yarl import URL

from origin.base import ObjectInfo, content_type_for
from origin.breaker import CircuitBreaker, Permit
from origin.errors import (
    ObjectNotFound,
    ObjectTooLarge,
    OriginError,
    OriginUnavailable,
    RangeNotSatisfiable,
)
from origin.keys import split_key, validate_prefix
from origin.ranges import parse_range, resolve_range, unsatisfied_range

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

__all__ = ["OriginStats", "S3Origin"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_Operation = Literal["get_object", "head_object", "head_bucket"]

CHUNK_SIZE: Final = 64 * 1024
_ATTEMPTS: Final = 2  # one try and one retry
_PRESIGN_REUSE: Final = 0.8  # reuse a presigned URL for 80 % of its lifetime
_UNCACHEABLE: Final = "no-store"
_ERROR_CODE = re.compile(rb"<Code>([^<]{1,64})</Code>")
_ACTUAL_SIZE = re.compile(rb"<ActualObjectSize>(\d{1,20})</ActualObjectSize>")
_UNSATISFIED = re.compile(r"bytes \*/(\d{1,20})")


@dataclass(slots=True)
class OriginStats:
    """Counters of origin traffic (exported as metrics by the gateway)."""

    origin_requests: int = 0  # HTTP requests sent to the origin, retries included
    origin_gets: int = 0  # of which GETs
    collapsed: int = 0  # reads that joined another request's in-flight fetch
    retries: int = 0  # second attempts after a timeout, connection error or 5xx
    failures: int = 0  # operations that failed after their retry (counted by the breaker)
    rejected: int = 0  # operations refused by the open circuit breaker
    aborted_streams: int = 0  # client responses cut off by an origin failure mid-body
    presigns: int = 0  # URLs signed (most requests reuse a cached one)


class _RetryableFailure(Exception):
    """An attempt failed in a way worth retrying (connection, timeout, 5xx, 429)."""


class _StreamBroken(Exception):
    """The origin stream failed after the client response had started."""


class _Answer(NamedTuple):
    """What the origin said about an object in the headers of a full GET."""

    info: ObjectInfo
    last_modified_header: str | None
    content_length: int | None
    shared: bool


@dataclass(eq=False, slots=True)
class _SharedFetch:
    """One in-flight full GET of an object, streamed to every request that wants it.

    The fetch task appends chunks; each reader walks the chunk list at its own pace and
    waits for ``_changed`` when it has caught up. Nothing is kept once the fetch ends
    and the last reader is done.
    """

    key: str
    answer: _Answer | None = None
    error: OriginError | None = None
    chunks: list[bytes] = field(default_factory=list)
    done: bool = False
    broken: bool = False
    readers: int = 0
    task: asyncio.Task[None] | None = None
    head_ready: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def publish(self, answer: _Answer) -> None:
        """The origin answered 200: readers may start their responses."""
        self.answer = answer
        self.head_ready.set()

    def append(self, chunk: bytes) -> None:
        """One more chunk of the body."""
        self.chunks.append(chunk)
        self._notify()

    def fail(self, error: OriginError) -> None:
        """The fetch failed: before the headers, readers raise; after, streams break."""
        if not self.head_ready.is_set():
            self.error = error
            self.head_ready.set()
        else:
            self.broken = True
        self.finish()

    def finish(self) -> None:
        """No more chunks will come."""
        if not self.head_ready.is_set():
            self.error = OriginError(f"origin fetch of {self.key} ended without an answer")
            self.head_ready.set()
        if not self.done:
            self.done = True
            self._notify()

    async def chunk_at(self, index: int) -> bytes:
        """The chunk at ``index``, waiting for it; ``b""`` at the end of the object."""
        while True:
            if index < len(self.chunks):
                return self.chunks[index]
            if self.done:
                if self.broken:
                    raise _StreamBroken(self.key)
                return b""
            await self._changed.wait()


def _like(error: OriginError) -> OriginError:
    """A fresh copy of a shared fetch's error, so each request raises its own."""
    if isinstance(error, ObjectNotFound):
        return ObjectNotFound(error.key)
    if isinstance(error, OriginUnavailable):
        return OriginUnavailable(error.retry_after, str(error))
    return OriginError(str(error))


def _etag_matches(etag: str, request: web.BaseRequest) -> bool:
    """Weak comparison of If-None-Match with the object's entity-tag (RFC 9110 §13.1.2)."""
    candidates = request.if_none_match
    if not candidates or not etag:
        return False
    value = etag.removeprefix("W/").strip('"')
    return any(c.value == "*" or c.value == value for c in candidates)


def _parse_http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


def _describe(err: BaseException) -> str:
    """Name a client failure without its message: some aiohttp messages hold the URL,
    and a presigned URL is a credential that must never reach a log."""
    if isinstance(err, aiohttp.ClientConnectorError) and err.os_error.strerror:
        return f"{type(err).__name__} ({err.os_error.strerror})"
    return type(err).__name__


def _abort_client(request: web.BaseRequest) -> None:
    """Cut the client connection so a truncated body is never taken as complete."""
    transport = request.transport
    if transport is not None:
        transport.abort()


def _translate_boto_error(err: Exception, key: str) -> OriginError:
    """Map a botocore/boto3 failure to a domain error."""
    if isinstance(err, Boto3Error):
        # upload_file wraps the ClientError it met; translate that one when present.
        inner = err.__cause__ or err.__context__
        if isinstance(inner, botocore.exceptions.BotoCoreError | botocore.exceptions.ClientError):
            return _translate_boto_error(inner, key)
        return OriginError(f"origin write of {key} failed: {type(err).__name__}")
    if isinstance(err, botocore.exceptions.ClientError):
        code = str(err.response.get("Error", {}).get("Code", ""))
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if code in {"NoSuchKey", "NotFound", "404"}:
            return ObjectNotFound(key)
        if status >= 500 or status == 429 or code in {"SlowDown", "RequestTimeout"}:
            return OriginUnavailable(1, f"origin unavailable ({code or status})")
        return OriginError(f"origin refused the request for {key} ({code or status})")
    if isinstance(err, botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError):
        return OriginUnavailable(1, f"origin unreachable ({type(err).__name__})")
    return OriginError(f"origin request for {key} failed ({type(err).__name__})")


class _PresignedUrls:
    """Presigned origin URLs per (operation, key), reused for most of their lifetime.

    A presign costs about 0.3 ms of CPU, as much as serving a small response, so each
    URL is signed once and reused until 80 % of its validity has passed. The URLs hold
    a signature: never log them.
    """

    def __init__(
        self, client: S3Client, bucket: str, stats: OriginStats, *, ttl: int, max_entries: int
    ) -> None:
        self._client = client
        self._stats = stats
        self._bucket = bucket
        self._ttl = ttl
        self._reuse_for = ttl * _PRESIGN_REUSE
        self._max_entries = max_entries
        self._urls: OrderedDict[tuple[_Operation, str], tuple[URL, float]] = OrderedDict()

    def get(self, operation: _Operation, key: str) -> URL:
        """A valid presigned URL for ``operation`` on ``key`` (``""`` for the bucket)."""
        now = asyncio.get_running_loop().time()
        entry = self._urls.get((operation, key))
        if entry is not None and entry[1] > now:
            self._urls.move_to_end((operation, key))
            return entry[0]
        params: dict[str, str] = {"Bucket": self._bucket}
        if key:
            params["Key"] = key
        self._stats.presigns += 1
        signed = self._client.generate_presigned_url(operation, Params=params, ExpiresIn=self._ttl)
        # encoded=True: keep the signed query string byte for byte.
        url = URL(signed, encoded=True)
        self._urls[(operation, key)] = (url, now + self._reuse_for)
        self._urls.move_to_end((operation, key))
        while len(self._urls) > self._max_entries:
            self._urls.popitem(last=False)
        return url

    def forget(self, operation: _Operation, key: str) -> None:
        """Drop a URL the origin refused (it will be signed afresh)."""
        self._urls.pop((operation, key), None)


class S3Origin:
    """An :class:`~origin.base.OriginStore` on Cloudflare R2 or any S3-compatible API.

    Path-style addressing (``endpoint/bucket/key``) works with R2, MinIO and moto. The
    ``aiohttp.ClientSession`` is created on first use (inside the running loop) unless
    one is given; a given session is not closed by :meth:`close`. The boto3 client (for
    presigning and writes) is made at construction, from ``boto_session`` if given.
    """

    def __init__(
        self,
        *,
        endpoint_url: str | None,
        bucket: str,
        access_key_id: str,
        secret_access_key: str,
        region: str = "auto",
        session: aiohttp.ClientSession | None = None,
        presign_ttl: int = 3600,
        connect_timeout: float = 2.0,
        first_byte_timeout: float = 5.0,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 10.0,
        max_connections: int = 100,
        collapse_max_size: int = 64 * 1024 * 1024,
        presign_cache_size: int = 50_000,
        boto_session: boto3.session.Session | None = None,
    ) -> None:
        if not 60 <= presign_ttl <= 7 * 24 * 3600:  # SigV4 presigns last at most 7 days
            raise ValueError("presign_ttl must be between 60 s and 7 days")
        self._bucket = bucket
        # A boto3 Session loads its service models once; creating clients from a shared
        # one is cheap (do that from one thread: sessions are not thread-safe).
        session_for_client = boto_session or boto3.session.Session()
        self._client: S3Client = session_for_client.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                connect_timeout=connect_timeout,
                read_timeout=60,
                retries={"max_attempts": 3, "mode": "standard"},
                # Only send/check checksums S3 requires: not every S3 API has the rest.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        self.stats = OriginStats()
        self._presigned = _PresignedUrls(
            self._client, bucket, self.stats, ttl=presign_ttl, max_entries=presign_cache_size
        )
        self._session = session
        self._owns_session = session is None
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=connect_timeout, sock_read=first_byte_timeout
        )
        self._breaker = CircuitBreaker(threshold=breaker_threshold, cooldown=breaker_cooldown)
        self._collapse_max_size = collapse_max_size
        self._inflight: dict[str, _SharedFetch] = {}
        self._fetch_tasks: set[asyncio.Task[None]] = set()  # strong references

    @property
    def breaker(self) -> CircuitBreaker:
        """The circuit breaker guarding the origin (for metrics and tests)."""
        return self._breaker

    # -- the origin HTTP client ------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300),
                timeout=self._timeout,
                auto_decompress=False,
            )
        return self._session

    def _retry_after(self) -> int:
        return max(1, math.ceil(self._breaker.retry_after()))

    async def _attempts(
        self, method: str, operation: _Operation, key: str, headers: Mapping[str, str]
    ) -> aiohttp.ClientResponse:
        """Send the request, retrying once on a connection error, timeout or 5xx."""
        session = self._http()
        request_headers = {hdrs.ACCEPT_ENCODING: "identity", **headers}
        failure = ""
        for attempt in range(_ATTEMPTS):
            if attempt:
                self.stats.retries += 1
                await asyncio.sleep(random.uniform(0.05, 0.25))  # noqa: S311 -- jitter, not crypto
            url = self._presigned.get(operation, key)
            self.stats.origin_requests += 1
            if method == hdrs.METH_GET:
                self.stats.origin_gets += 1
            try:
                response = await session.request(
                    method,
                    url,
                    headers=request_headers,
                    timeout=self._timeout,
                    allow_redirects=False,
                    auto_decompress=False,
                )
            except (aiohttp.ClientError, TimeoutError) as err:
                failure = _describe(err)
            else:
                if response.status < 500 and response.status != 429:
                    return response
                response.release()
                failure = f"status {response.status}"
            log.info("origin %s %s attempt %d failed: %s", method, key, attempt + 1, failure)
        # Not chained to the client error: its message may hold the presigned URL.
        raise _RetryableFailure(f"origin {method} {key} failed: {failure}")

    @asynccontextmanager
    async def _request(
        self, method: str, operation: _Operation, key: str, headers: Mapping[str, str]
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One guarded origin request: breaker, retry, and translation of failures.

        Yields a response with a status below 500; the caller maps it.
        """
        permit = self._breaker.acquire()
        if permit is None:
            self.stats.rejected += 1
            raise OriginUnavailable(self._retry_after(), "origin circuit open")
        try:
            response = await self._attempts(method, operation, key, headers)
        except _RetryableFailure as err:
            self.stats.failures += 1
            self._breaker.record_failure(permit)
            raise OriginUnavailable(self._retry_after(), "origin unavailable") from err
        except BaseException:
            self._breaker.release(permit)
            raise
        self._breaker.record_success(permit)
        try:
            yield response
        finally:
            response.release()

    def _stream_failed(self, key: str, err: BaseException) -> None:
        """The origin failed mid-body: that counts against it."""
        log.warning("origin stream of %s failed mid-body: %s", key, _describe(err))
        self.stats.failures += 1
        self._breaker.record_failure(Permit(trial=False))

    async def _raise_for_status(
        self, response: aiohttp.ClientResponse, operation: _Operation, key: str
    ) -> NoReturn:
        """Raise the domain error for a 4xx answer (5xx were retried already)."""
        if response.status == 404:
            raise ObjectNotFound(key)
        code = ""
        if response.method != hdrs.METH_HEAD:
            body = await response.content.read(16 * 1024)
            if match := _ERROR_CODE.search(body):
                code = match.group(1).decode("ascii", "replace")
        if response.status == 403:
            if code == "NoSuchKey":
                raise ObjectNotFound(key)
            self._presigned.forget(operation, key)  # perhaps expired: sign afresh next time
        log.warning("origin refused %s %s: %d %s", operation, key, response.status, code)
        raise OriginError(f"origin refused {key} ({response.status} {code})".rstrip())

    def _answer(self, key: str, response: aiohttp.ClientResponse, *, shared: bool) -> _Answer:
        last_modified = response.headers.get(hdrs.LAST_MODIFIED)
        size = response.content_length
        if response.status == 206:
            total = response.headers.get(hdrs.CONTENT_RANGE, "").rpartition("/")[2]
            size = int(total) if total.isdigit() else None
        info = ObjectInfo(
            key=key,
            size=-1 if size is None else size,
            etag=response.headers.get(hdrs.ETAG, ""),
            last_modified=_parse_http_date(last_modified),
            content_type=content_type_for(key),
        )
        return _Answer(info, last_modified, response.content_length, shared)

    # -- reads -----------------------------------------------------------------

    async def head(self, key: str) -> ObjectInfo:
        """Metadata of an object (one HEAD request to the origin)."""
        split_key(key)
        async with self._request(hdrs.METH_HEAD, "head_object", key, {}) as response:
            if response.status != 200:
                await self._raise_for_status(response, "head_object", key)
            return self._answer(key, response, shared=False).info

    async def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        try:
            await self.head(key)
        except ObjectNotFound:
            return False
        return True

    async def read_bytes(self, key: str, *, max_size: int) -> bytes:
        """Read a small object whole, sharing the fetch with concurrent readers."""
        split_key(key)
        fetch = self._join(key)
        try:
            answer = await self._wait_answer(fetch)
            if answer.shared:
                if answer.info.size > max_size:
                    raise ObjectTooLarge(key, answer.info.size, max_size)
                parts: list[bytes] = []
                index = 0
                try:
                    while chunk := await fetch.chunk_at(index):
                        parts.append(chunk)
                        index += 1
                except _StreamBroken as err:
                    raise OriginUnavailable(self._retry_after(), "origin stream broke") from err
                return b"".join(parts)
        finally:
            self._leave(fetch)
        return await self._read_direct(key, max_size)

    async def _read_direct(self, key: str, max_size: int) -> bytes:
        async with self._request(hdrs.METH_GET, "get_object", key, {}) as response:
            if response.status != 200:
                await self._raise_for_status(response, "get_object", key)
            if response.content_length is not None and response.content_length > max_size:
                raise ObjectTooLarge(key, response.content_length, max_size)
            try:
                data = await response.content.read(max_size + 1)
                while len(data) <= max_size and (more := await response.content.read(CHUNK_SIZE)):
                    data += more
            except (aiohttp.ClientError, TimeoutError) as err:
                self._stream_failed(key, err)
                broken = _StreamBroken(key)  # not the client error: it may name the URL
                raise OriginUnavailable(self._retry_after(), "origin stream broke") from broken
            if len(data) > max_size:
                raise ObjectTooLarge(key, len(data), max_size)
            return data

    # -- request collapsing ----------------------------------------------------

    def _join(self, key: str) -> _SharedFetch:
        """Join the in-flight fetch of ``key``, or start one."""
        fetch = self._inflight.get(key)
        if fetch is None:
            fetch = _SharedFetch(key)
            self._inflight[key] = fetch
            fetch.task = asyncio.create_task(self._fetch(fetch), name=f"origin-fetch:{key}")
            self._fetch_tasks.add(fetch.task)
            fetch.task.add_done_callback(self._fetch_tasks.discard)
        else:
            self.stats.collapsed += 1
        fetch.readers += 1
        return fetch

    def _leave(self, fetch: _SharedFetch) -> None:
        """A reader is done; the last one out stops a fetch nobody wants any more."""
        fetch.readers -= 1
        if fetch.readers == 0 and fetch.task is not None and not fetch.task.done():
            self._forget(fetch)
            fetch.task.cancel()

    def _forget(self, fetch: _SharedFetch) -> None:
        if self._inflight.get(fetch.key) is fetch:
            del self._inflight[fetch.key]

    async def _wait_answer(self, fetch: _SharedFetch) -> _Answer:
        await fetch.head_ready.wait()
        if fetch.error is not None:
            raise _like(fetch.error) from fetch.error
        assert fetch.answer is not None
        return fetch.answer

    async def _fetch(self, fetch: _SharedFetch) -> None:
        """The shared fetch task: one GET whose chunks every reader streams."""
        key = fetch.key
        try:
            async with self._request(hdrs.METH_GET, "get_object", key, {}) as response:
                if response.status != 200:
                    await self._raise_for_status(response, "get_object", key)
                size = response.content_length
                shared = size is not None and size <= self._collapse_max_size
                fetch.publish(self._answer(key, response, shared=shared))
                if not shared:
                    return  # too big to hold in memory: each reader streams it directly
                try:
                    while chunk := await response.content.read(CHUNK_SIZE):
                        fetch.append(chunk)
                except (aiohttp.ClientError, TimeoutError) as err:
                    self._stream_failed(key, err)
                    fetch.fail(OriginUnavailable(self._retry_after(), "origin stream broke"))
        except OriginError as err:
            fetch.fail(err)
        except asyncio.CancelledError:
            fetch.fail(OriginError("origin fetch cancelled"))
            raise
        except Exception as err:
            log.exception("origin fetch of %s failed", key)
            fetch.fail(OriginError(f"origin fetch failed: {type(err).__name__}"))
        finally:
            fetch.finish()
            self._forget(fetch)

    # -- serving ---------------------------------------------------------------

    async def serve(
        self, request: web.Request, key: str, *, cache_control: str
    ) -> web.StreamResponse:
        """Stream the object to the client (see :meth:`OriginStore.serve`).

        HEAD is answered from a HEAD to the origin. Requests with ``Range`` (or
        conditional headers, when no fetch of the object is in flight) go to the origin
        with those headers forwarded; plain GETs share one origin fetch per object.
        ``If-Range`` is not forwarded (S3 lacks it): such requests get the whole object.
        """
        split_key(key)
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
            headers = {hdrs.RANGE: spec.header(), **self._conditionals(request)}
            return await self._serve_direct(request, key, cache_control, headers)
        conditionals = self._conditionals(request)
        if conditionals and key not in self._inflight:
            return await self._serve_direct(request, key, cache_control, conditionals)
        return await self._serve_shared(request, key, cache_control)

    @staticmethod
    def _conditionals(request: web.BaseRequest) -> dict[str, str]:
        names = (hdrs.IF_NONE_MATCH, hdrs.IF_MODIFIED_SINCE)
        return {name: request.headers[name] for name in names if name in request.headers}

    async def _serve_head(
        self, request: web.Request, key: str, cache_control: str
    ) -> web.StreamResponse:
        info = await self.head(key)
        if _etag_matches(info.etag, request):
            return await self._send_not_modified(request, info.etag, cache_control)
        out = web.StreamResponse()
        self._object_headers(out, key, info.etag, info.last_modified, cache_control)
        length = info.size
        range_header = request.headers.get(hdrs.RANGE)
        if range_header is not None:  # answered as FileResponse does for HEAD
            try:
                byte_range = resolve_range(range_header, info.size)
            except RangeNotSatisfiable:
                return await self._send_unsatisfiable(request, info.size)
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
        info = await self.head(key)
        if _etag_matches(info.etag, request):
            return await self._send_not_modified(request, info.etag, cache_control)
        log.debug("unsupported Range %r for %s", range_header[:64], key)
        return await self._send_unsatisfiable(request, info.size)

    async def _serve_direct(
        self, request: web.Request, key: str, cache_control: str, headers: Mapping[str, str]
    ) -> web.StreamResponse:
        """Forward one GET (with Range/conditionals) and stream its answer."""
        async with self._request(hdrs.METH_GET, "get_object", key, headers) as response:
            if response.status == 304:
                etag = response.headers.get(hdrs.ETAG, "")
                return await self._send_not_modified(request, etag, cache_control)
            if response.status == 416:
                size = await self._unsatisfied_size(response, key)
                return await self._send_unsatisfiable(request, size)
            if response.status not in (200, 206):
                await self._raise_for_status(response, "get_object", key)
            answer = self._answer(key, response, shared=False)
            out = web.StreamResponse(status=response.status)
            self._object_headers(
                out, key, answer.info.etag, answer.last_modified_header, cache_control
            )
            if response.status == 206:
                out.headers[hdrs.CONTENT_RANGE] = response.headers.get(hdrs.CONTENT_RANGE, "")
            if answer.content_length is not None:
                out.content_length = answer.content_length

            async def next_chunk() -> bytes:
                try:
                    return await response.content.read(CHUNK_SIZE)
                except (aiohttp.ClientError, TimeoutError) as err:
                    self._stream_failed(key, err)
                    raise _StreamBroken(key) from None  # the cause may name the URL

            await self._pipe(request, out, key, next_chunk)
            return out

    async def _serve_shared(
        self, request: web.Request, key: str, cache_control: str
    ) -> web.StreamResponse:
        """Stream from the fetch shared by every concurrent full GET of ``key``."""
        fetch = self._join(key)
        try:
            answer = await self._wait_answer(fetch)
            if answer.shared:
                if _etag_matches(answer.info.etag, request):
                    return await self._send_not_modified(request, answer.info.etag, cache_control)
                out = web.StreamResponse()
                self._object_headers(
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
            self._leave(fetch)
        # Too big to share: this request streams it on its own.
        return await self._serve_direct(request, key, cache_control, self._conditionals(request))

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
        client sees a truncated body rather than a short one that looks complete.
        """
        try:
            await out.prepare(request)
        except ConnectionError:
            log.debug("client went away before %s was sent", key)
            return
        while True:
            try:
                chunk = await next_chunk()
            except _StreamBroken:
                self.stats.aborted_streams += 1
                _abort_client(request)
                return
            if not chunk:
                break
            try:
                await out.write(chunk)  # waits while the client's buffer is full
            except ConnectionError:
                log.debug("client went away while %s was sent", key)
                return
        try:
            await out.write_eof()
        except ConnectionError:
            log.debug("client went away at the end of %s", key)

    async def _unsatisfied_size(self, response: aiohttp.ClientResponse, key: str) -> int:
        """The object size from a 416 (Content-Range, S3's error body, or a HEAD)."""
        if match := _UNSATISFIED.fullmatch(response.headers.get(hdrs.CONTENT_RANGE, "")):
            return int(match.group(1))
        body = await response.content.read(16 * 1024)
        if match_body := _ACTUAL_SIZE.search(body):
            return int(match_body.group(1))
        return (await self.head(key)).size

    @staticmethod
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

    @staticmethod
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

    @staticmethod
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

    # -- writes (boto3 in worker threads; not on the hot path) -----------------

    async def _boto(self, key: str, call: Callable[[], _T]) -> _T:
        try:
            return await asyncio.to_thread(call)
        except (
            botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError,
            Boto3Error,
        ) as err:
            raise _translate_boto_error(err, key) from err

    async def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        """Upload ``data`` with one PutObject."""
        split_key(key)
        ctype = content_type or content_type_for(key)
        await self._boto(
            key,
            lambda: self._client.put_object(
                Bucket=self._bucket, Key=key, Body=data, ContentType=ctype
            ),
        )

    async def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> None:
        """Upload a file (multipart when large) without reading it into memory."""
        split_key(key)
        ctype = content_type or content_type_for(key)
        await self._boto(
            key,
            lambda: self._client.upload_file(
                str(path), self._bucket, key, ExtraArgs={"ContentType": ctype}
            ),
        )

    def _delete_all(self, prefix: str) -> int:
        deleted = 0
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
            keys: list[ObjectIdentifierTypeDef] = [
                {"Key": obj["Key"]} for obj in page.get("Contents", []) if "Key" in obj
            ]
            if not keys:
                continue
            result = self._client.delete_objects(
                Bucket=self._bucket, Delete={"Objects": keys, "Quiet": True}
            )
            errors = result.get("Errors", [])
            if errors:
                raise OriginError(f"origin could not delete {len(errors)} objects under {prefix}")
            deleted += len(keys)
        return deleted

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix/``; return how many were deleted."""
        normalised = validate_prefix(prefix)
        return await self._boto(normalised, lambda: self._delete_all(normalised))

    # -- lifecycle -------------------------------------------------------------

    async def check(self) -> None:
        """Readiness: a HEAD of the bucket answers 200 (refused at once if the breaker is open)."""
        async with self._request(hdrs.METH_HEAD, "head_bucket", "", {}) as response:
            if response.status != 200:
                self._presigned.forget("head_bucket", "")
                raise OriginUnavailable(5, f"bucket check answered {response.status}")

    async def close(self) -> None:
        """Stop in-flight fetches and close the HTTP session (if this store made it)."""
        tasks = list(self._fetch_tasks)
        self._inflight.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None
        self._client.close()

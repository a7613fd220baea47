"""The guarded HTTP client to the S3 API: presigned requests, one retry, a circuit breaker.

Every read of the S3 store goes through `Upstream.request`: the breaker may refuse it
at once; otherwise the request is sent to a presigned URL through one shared
``aiohttp.ClientSession`` and retried once (with jitter) on a connection error, a
timeout, a 5xx or a 429. What still fails counts against the breaker and becomes an
`OriginUnavailable`. 4xx answers are the caller's to map (`Upstream.raise_for_status`).
No exception or log line ever carries a presigned URL: it is a credential.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Final, NamedTuple, NoReturn

import aiohttp
from aiohttp import hdrs

from origin.base import ObjectInfo, content_type_for
from origin.breaker import CircuitBreaker, Permit
from origin.errors import ObjectNotFound, OriginError, OriginUnavailable
from origin.s3.presign import Operation, PresignedUrls
from origin.s3.stats import OriginStats

__all__ = ["CHUNK_SIZE", "Answer", "StreamBroken", "Upstream", "describe", "read_answer"]

log = logging.getLogger(__name__)

CHUNK_SIZE: Final = 64 * 1024
"""How much of a body is read from the origin (and written to a client) at a time."""

_ATTEMPTS: Final = 2  # one try and one retry
_ERROR_CODE = re.compile(rb"<Code>([^<]{1,64})</Code>")


class _RetryableFailure(Exception):
    """An attempt failed in a way worth retrying (connection, timeout, 5xx, 429)."""


class StreamBroken(Exception):
    """The origin stream failed after the client response had started."""


class Answer(NamedTuple):
    """What the origin said about an object in the headers of a full GET."""

    info: ObjectInfo
    last_modified_header: str | None
    content_length: int | None
    shared: bool


def _parse_http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


def describe(err: BaseException) -> str:
    """Name a client failure without its message: some aiohttp messages hold the URL,
    and a presigned URL is a credential that must never reach a log."""
    if isinstance(err, aiohttp.ClientConnectorError) and err.os_error.strerror:
        return f"{type(err).__name__} ({err.os_error.strerror})"
    return type(err).__name__


def read_answer(key: str, response: aiohttp.ClientResponse, *, shared: bool) -> Answer:
    """The object's metadata from a 200 or 206 answer (a 206 states the whole size)."""
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
    return Answer(info, last_modified, response.content_length, shared)


class Upstream:
    """Requests to the S3 API for one store: the session, the breaker, the counters.

    The ``aiohttp.ClientSession`` is created on first use (inside the running loop)
    unless one is given; a given session is not closed by :meth:`close`.
    """

    def __init__(
        self,
        presigned: PresignedUrls,
        stats: OriginStats,
        *,
        session: aiohttp.ClientSession | None,
        max_connections: int,
        connect_timeout: float,
        first_byte_timeout: float,
        breaker: CircuitBreaker,
    ) -> None:
        self.presigned = presigned
        self.stats = stats
        self.breaker = breaker
        self._session = session
        self._owns_session = session is None
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=connect_timeout, sock_read=first_byte_timeout
        )

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300),
                timeout=self._timeout,
                auto_decompress=False,
            )
        return self._session

    def retry_after(self) -> int:
        """Seconds a client should wait before asking again (for ``Retry-After``)."""
        return max(1, math.ceil(self.breaker.retry_after()))

    async def _attempts(
        self, method: str, operation: Operation, key: str, headers: Mapping[str, str]
    ) -> aiohttp.ClientResponse:
        """Send the request, retrying once on a connection error, timeout or 5xx."""
        session = self._http()
        request_headers = {hdrs.ACCEPT_ENCODING: "identity", **headers}
        failure = ""
        for attempt in range(_ATTEMPTS):
            if attempt:
                self.stats.retries += 1
                await asyncio.sleep(random.uniform(0.05, 0.25))  # noqa: S311 -- jitter, not crypto
            url = self.presigned.get(operation, key)
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
                failure = describe(err)
            else:
                if response.status < 500 and response.status != 429:
                    return response
                response.release()
                failure = f"status {response.status}"
            log.info("origin %s %s attempt %d failed: %s", method, key, attempt + 1, failure)
        # Not chained to the client error: its message may hold the presigned URL.
        raise _RetryableFailure(f"origin {method} {key} failed: {failure}")

    @asynccontextmanager
    async def request(
        self, method: str, operation: Operation, key: str, headers: Mapping[str, str]
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One guarded origin request: breaker, retry, and translation of failures.

        Yields a response with a status below 500; the caller maps it.
        """
        permit = self.breaker.acquire()
        if permit is None:
            self.stats.rejected += 1
            raise OriginUnavailable(self.retry_after(), "origin circuit open")
        try:
            response = await self._attempts(method, operation, key, headers)
        except _RetryableFailure as err:
            self.stats.failures += 1
            self.breaker.record_failure(permit)
            raise OriginUnavailable(self.retry_after(), "origin unavailable") from err
        except BaseException:
            self.breaker.release(permit)
            raise
        self.breaker.record_success(permit)
        try:
            yield response
        finally:
            response.release()

    async def read_body(self, response: aiohttp.ClientResponse, key: str, size: int) -> bytes:
        """Up to ``size`` more bytes of a body (``b""`` at its end).

        An origin failure mid-body counts against the origin and raises `StreamBroken`,
        raised outside the handler so that it carries no trace of the client error,
        whose message may hold the presigned URL.
        """
        try:
            chunk = await response.content.read(size)
        except (aiohttp.ClientError, TimeoutError) as err:
            failure = describe(err)
        else:
            self.stats.bytes_read += len(chunk)
            return chunk
        log.warning("origin stream of %s failed mid-body: %s", key, failure)
        self.stats.failures += 1
        self.breaker.record_failure(Permit(trial=False))
        raise StreamBroken(key)

    async def raise_for_status(
        self, response: aiohttp.ClientResponse, operation: Operation, key: str
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
            self.presigned.forget(operation, key)  # perhaps expired: sign afresh next time
        log.warning("origin refused %s %s: %d %s", operation, key, response.status, code)
        raise OriginError(f"origin refused {key} ({response.status} {code})".rstrip())

    async def head(self, key: str) -> ObjectInfo:
        """Metadata of an object (one HEAD request); ``key`` is already validated."""
        async with self.request(hdrs.METH_HEAD, "head_object", key, {}) as response:
            if response.status != 200:
                await self.raise_for_status(response, "head_object", key)
            return read_answer(key, response, shared=False).info

    async def close(self) -> None:
        """Close the HTTP session if this client made it."""
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

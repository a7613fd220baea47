"""``S3Origin``: Cloudflare R2 or any S3 API. boto3 signs, aiohttp streams.

The hot path never runs boto3 I/O: reads go to presigned URLs (signed once per object
and reused for most of their lifetime, `origin.s3.presign`) through one shared
``aiohttp.ClientSession``, retried once and counted by a circuit breaker
(`origin.s3.upstream`); concurrent full GETs of one object share a single origin fetch
(`origin.s3.collapse`), and bytes are streamed to the client chunk by chunk with
backpressure (`origin.s3.serve`). This module wires those parts into the store and
does the writes (uploads, deletes, listings) with boto3 in worker threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import aiohttp
import boto3
import botocore.exceptions
from aiohttp import hdrs, web
from boto3.exceptions import Boto3Error
from botocore.config import Config

from origin.base import ObjectInfo, content_type_for
from origin.breaker import CircuitBreaker
from origin.errors import ObjectNotFound, ObjectTooLarge, OriginError, OriginUnavailable
from origin.keys import split_key, validate_prefix
from origin.s3.collapse import FetchBudget, FetchCollapser
from origin.s3.presign import PresignedUrls
from origin.s3.serve import ObjectStreamer
from origin.s3.stats import OriginStats
from origin.s3.upstream import CHUNK_SIZE, StreamBroken, Upstream

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

__all__ = ["S3Origin"]

_T = TypeVar("_T")


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
        shared_buffer_bytes: int = 64 * 1024 * 1024,
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
        presigned = PresignedUrls(
            self._client, bucket, self.stats, ttl=presign_ttl, max_entries=presign_cache_size
        )
        self._upstream = Upstream(
            presigned,
            self.stats,
            session=session,
            max_connections=max_connections,
            connect_timeout=connect_timeout,
            first_byte_timeout=first_byte_timeout,
            breaker=CircuitBreaker(threshold=breaker_threshold, cooldown=breaker_cooldown),
        )
        self._collapser = FetchCollapser(
            self._upstream, max_size=collapse_max_size, budget=FetchBudget(shared_buffer_bytes)
        )
        self._streamer = ObjectStreamer(self._upstream, self._collapser)

    @property
    def breaker(self) -> CircuitBreaker:
        """The circuit breaker guarding the origin (for metrics and tests)."""
        return self._upstream.breaker

    @property
    def buffered_bytes(self) -> int:
        """Bytes held now by shared fetches (at most ``shared_buffer_bytes``)."""
        return self._collapser.buffered

    # -- reads -----------------------------------------------------------------

    async def head(self, key: str) -> ObjectInfo:
        """Metadata of an object (one HEAD request to the origin)."""
        split_key(key)
        return await self._upstream.head(key)

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
        collapser = self._collapser
        fetch = collapser.join(key)
        if fetch is None:  # the shared-fetch buffer is full
            return await self._read_direct(key, max_size)
        try:
            answer = await collapser.wait_answer(fetch)
            if answer.shared:
                if answer.info.size > max_size:
                    raise ObjectTooLarge(key, answer.info.size, max_size)
                parts: list[bytes] = []
                index = 0
                try:
                    while chunk := await fetch.chunk_at(index):
                        parts.append(chunk)
                        index += 1
                except StreamBroken as err:
                    retry_after = self._upstream.retry_after()
                    raise OriginUnavailable(retry_after, "origin stream broke") from err
                return b"".join(parts)
        finally:
            collapser.leave(fetch)
        return await self._read_direct(key, max_size)

    async def _read_direct(self, key: str, max_size: int) -> bytes:
        upstream = self._upstream
        async with upstream.request(hdrs.METH_GET, "get_object", key, {}) as response:
            if response.status != 200:
                await upstream.raise_for_status(response, "get_object", key)
            if response.content_length is not None and response.content_length > max_size:
                raise ObjectTooLarge(key, response.content_length, max_size)
            try:
                data = await upstream.read_body(response, key, max_size + 1)
                while len(data) <= max_size and (
                    more := await upstream.read_body(response, key, CHUNK_SIZE)
                ):
                    data += more
            except StreamBroken as broken:
                raise OriginUnavailable(upstream.retry_after(), "origin stream broke") from broken
            if len(data) > max_size:
                raise ObjectTooLarge(key, len(data), max_size)
            return data

    # -- serving ---------------------------------------------------------------

    async def serve(
        self, request: web.Request, key: str, *, cache_control: str
    ) -> web.StreamResponse:
        """Stream the object to the client (see :meth:`OriginStore.serve`).

        How each kind of request is answered is `ObjectStreamer.serve`'s to say.
        """
        split_key(key)
        return await self._streamer.serve(request, key, cache_control=cache_control)

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

    async def get_file(self, key: str, dest: Path) -> int:
        """Download the object to ``dest`` (multipart, never whole in memory)."""
        split_key(key)
        await self._boto(key, lambda: self._client.download_file(self._bucket, key, str(dest)))
        return (await asyncio.to_thread(dest.stat)).st_size

    def presign_put(
        self, key: str, *, content_type: str, content_length: int, expires_in: int
    ) -> str:
        """A presigned PutObject URL for ``key``: the client sends the bytes straight to
        the bucket with these ``Content-Type`` and ``Content-Length`` (both signed). The
        URL is a credential: never log it."""
        split_key(key)
        return self._client.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": self._bucket,
                "Key": key,
                "ContentType": content_type,
                "ContentLength": content_length,
            },
            ExpiresIn=expires_in,
        )

    def presign_get(self, key: str, *, expires_in: int, filename: str | None = None) -> str:
        """A presigned GetObject URL for ``key``, valid ``expires_in`` seconds (an offline
        download: the client fetches the bytes straight from the bucket, with Range).
        ``filename`` asks the origin to answer with ``Content-Disposition: attachment``
        under that name. The URL is a credential: never log it."""
        split_key(key)
        params: dict[str, str] = {"Bucket": self._bucket, "Key": key}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return self._client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=expires_in
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
        async with self._upstream.request(hdrs.METH_HEAD, "head_bucket", "", {}) as response:
            if response.status != 200:
                self._upstream.presigned.forget("head_bucket", "")
                raise OriginUnavailable(5, f"bucket check answered {response.status}")

    async def close(self) -> None:
        """Stop in-flight fetches and close the HTTP session (if this store made it)."""
        await self._collapser.close()
        await self._upstream.close()
        self._client.close()

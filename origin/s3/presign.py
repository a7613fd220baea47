"""Presigned S3 URLs per (operation, key), signed once and reused for most of their life.

A presign costs about 0.3 ms of CPU, as much as serving a small response, so the hot
path signs each URL once and reuses it until 80 % of its validity has passed. The URLs
hold a signature: never log them.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import TYPE_CHECKING, Final, Literal

from yarl import URL

from origin.s3.stats import OriginStats

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["Operation", "PresignedUrls"]

Operation = Literal["get_object", "head_object", "head_bucket"]
"""The S3 operations the read path presigns."""

_PRESIGN_REUSE: Final = 0.8  # reuse a presigned URL for 80 % of its lifetime


class PresignedUrls:
    """A bounded LRU of presigned URLs, each reused until 80 % of its ``ttl`` is gone."""

    def __init__(
        self, client: S3Client, bucket: str, stats: OriginStats, *, ttl: int, max_entries: int
    ) -> None:
        self._client = client
        self._stats = stats
        self._bucket = bucket
        self._ttl = ttl
        self._reuse_for = ttl * _PRESIGN_REUSE
        self._max_entries = max_entries
        self._urls: OrderedDict[tuple[Operation, str], tuple[URL, float]] = OrderedDict()

    def get(self, operation: Operation, key: str) -> URL:
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

    def forget(self, operation: Operation, key: str) -> None:
        """Drop a URL the origin refused (it will be signed afresh)."""
        self._urls.pop((operation, key), None)

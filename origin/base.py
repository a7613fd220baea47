"""The ``OriginStore`` port: where video bytes live, and how they reach a client."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Final, Protocol

from aiohttp import web

__all__ = ["CONTENT_TYPES", "DEFAULT_CONTENT_TYPE", "ObjectInfo", "OriginStore", "content_type_for"]

DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"

# Types players check (RFC 8216 §4: playlists are application/vnd.apple.mpegurl; TS
# segments video/mp2t; fMP4 segments and init sections video/mp4). Fixed here rather than
# taken from the ``mimetypes`` database, which differs from one machine to the next.
CONTENT_TYPES: Final = MappingProxyType(
    {
        ".ts": "video/mp2t",
        ".m4s": "video/mp4",
        ".mp4": "video/mp4",
        ".m4v": "video/mp4",
        ".m4a": "audio/mp4",
        ".aac": "audio/aac",
        ".vtt": "text/vtt",
        ".m3u8": "application/vnd.apple.mpegurl",
        ".key": "application/octet-stream",
        ".jpg": "image/jpeg",
        ".jpeg": "image/jpeg",
        ".png": "image/png",
        ".webp": "image/webp",
        ".json": "application/json",
    }
)


def content_type_for(key: str) -> str:
    """The Content-Type for an object, from the extension of its key."""
    name = key.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    if dot <= 0:
        return DEFAULT_CONTENT_TYPE
    return CONTENT_TYPES.get(name[dot:].lower(), DEFAULT_CONTENT_TYPE)


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectInfo:
    """Metadata of one stored object.

    ``etag`` is the entity-tag as it appears in the ``ETag`` header, quotes included.
    """

    key: str
    size: int
    etag: str
    last_modified: datetime | None
    content_type: str


class OriginStore(Protocol):
    """Where the bytes live (S3/R2 or a local directory).

    Keys are ``/``-joined components built with :func:`origin.keys.object_key`; every
    method re-validates them and raises :class:`~origin.errors.InvalidObjectKey` for a
    bad one. Failures are :class:`~origin.errors.OriginError` subclasses only.
    """

    async def read_bytes(self, key: str, *, max_size: int) -> bytes:
        """Read a small object (a playlist) whole; ``ObjectTooLarge`` above ``max_size``."""
        ...

    async def head(self, key: str) -> ObjectInfo:
        """Metadata of an object; ``ObjectNotFound`` if there is none."""
        ...

    async def serve(
        self, request: web.Request, key: str, *, cache_control: str
    ) -> web.StreamResponse:
        """Send the object to the client and return the (prepared) response.

        Handles GET and HEAD, one ``Range`` (206, or 416 with ``Content-Range: bytes
        */size``), ``If-None-Match`` (304), and sets Content-Type (from the key),
        Content-Length, ETag, Last-Modified, ``Accept-Ranges: bytes`` and the given
        Cache-Control. Raises ``ObjectNotFound``/``OriginUnavailable`` before any byte
        is sent; after that, an origin failure aborts the client connection instead.
        """
        ...

    async def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        """Store ``data`` under ``key`` (replacing any object there)."""
        ...

    async def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> None:
        """Store the file at ``path`` under ``key`` without loading it into memory."""
        ...

    async def get_file(self, key: str, dest: Path) -> int:
        """Copy the object to the file ``dest`` without loading it into memory; returns
        its size (``ObjectNotFound`` if there is none)."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object under the "directory" ``prefix``; return how many."""
        ...

    async def check(self) -> None:
        """Readiness probe: return if the origin answers, else raise ``OriginUnavailable``."""
        ...

    async def close(self) -> None:
        """Release connections and background work."""
        ...

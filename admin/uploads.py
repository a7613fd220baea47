"""Uploads: a source video (a film or an ad creative) sent to the origin, then ingested.

``POST /admin/v1/uploads {filename, size, content_type}`` answers where to send the
bytes and how (``{upload_id, url, method, headers, expires_at}``):

* S3/R2 origin: a presigned PUT straight to the bucket (``uploads/{id}/source``); the
  bytes never pass through our servers, and the signed ``Content-Length`` makes the
  bucket refuse any other size.
* local origin: this service's own ``PUT /admin/v1/uploads/{id}/data?token=...``,
  authorised by the one-time token in the URL (so ``curl -T`` needs no bearer). The body
  is written to disk as it arrives, never held in memory; more than the declared size
  (or ``KUSH_MAX_UPLOAD_BYTES``) is 413, a full disk 507, and a partial file is removed.

Either way the ingest (``POST /admin/v1/movies/{id}/ingest``) checks the object is
there with the declared size before it queues a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import hmac
import logging
import os
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, BinaryIO, Literal

import asyncpg
from aiohttp import web
from pydantic import Field, StringConstraints

from admin.keys import admin_origin_key
from origin import LocalOrigin, ObjectNotFound, OriginStore, S3Origin, object_key
from runtime.api import (
    BodyModel,
    DateTimeStr,
    PathParam,
    ReplyModel,
    Routes,
    UuidStr,
    parse_body,
)
from runtime.errors import ApiError, Conflict, Forbidden, NotFound, PayloadTooLarge, Unprocessable
from runtime.web import json_response, pg_key, settings_key
from tokens.service.views import SIGNED_IN, require_role

log = logging.getLogger(__name__)

ADMIN = frozenset({"admin"})
CHUNK_BYTES = 1024 * 1024

routes = Routes(tags=("uploads",))

#: The local upload URL carries its own one-time token (no bearer, so ``curl -T`` works).
UPLOAD_SECURITY_SCHEMES = {
    "upload_token": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "The one-time token in the `url` that `POST /admin/v1/uploads` "
        "answered (local origin), valid until `expires_at`",
    }
}


class InsufficientStorage(ApiError):
    """507: the disk filled up while an upload was written."""

    status, code, message = 507, "insufficient_storage", "The server's disk is full"


# ------------------------------------------------------------------ models

ContentType = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=200, pattern=r"^[\w.+-]+/[\w.+-]+$"
    ),
]


class NewUpload(BodyModel):
    """The file about to be sent."""

    filename: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)
    ] = Field(description="The file's name (kept for the record; never a path on the server)")
    size: Annotated[int, Field(ge=1)] = Field(
        description="Bytes, exactly; at most KUSH_MAX_UPLOAD_BYTES"
    )
    content_type: ContentType = Field(description="e.g. `video/mp4`; sent again with the PUT")


class UploadTicket(ReplyModel):
    """Where and how to send the bytes."""

    upload_id: UuidStr
    url: str = Field(description="Send the file's bytes here (a credential: keep it private)")
    method: Literal["PUT"]
    headers: dict[str, str] = Field(description="Headers the request must carry")
    expires_at: DateTimeStr


class UploadReceived(ReplyModel):
    """The bytes arrived whole."""

    upload_id: UuidStr
    size: int


# ------------------------------------------------------------------ domain


@dataclass(frozen=True, slots=True, kw_only=True)
class Upload:
    """An upload ready to be ingested."""

    id: uuid.UUID
    object_key: str
    size: int


def upload_key(upload_id: uuid.UUID) -> str:
    """Where an upload's bytes live on the origin."""
    return object_key("uploads", str(upload_id), "source")


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def ready_upload(pool: asyncpg.Pool, origin: OriginStore, upload_id: uuid.UUID) -> Upload:
    """The upload if its bytes are on the origin with the declared size: 404
    ``upload_not_found``, 409 ``upload_incomplete``, 422 ``upload_size_mismatch``."""
    row = await pool.fetchrow("SELECT * FROM uploads WHERE id = $1", upload_id)
    if row is None:
        raise NotFound("No such upload", code="upload_not_found")
    if row["status"] == "pending":
        if isinstance(origin, LocalOrigin):
            raise Conflict("The upload's bytes have not arrived yet", code="upload_incomplete")
        try:
            info = await origin.head(row["object_key"])
        except ObjectNotFound:
            raise Conflict(
                "The upload's bytes have not arrived yet", code="upload_incomplete"
            ) from None
        if info.size != row["size"]:
            raise Unprocessable(
                f"The stored file has {info.size} bytes, {row['size']} were declared",
                code="upload_size_mismatch",
            )
        await pool.execute(
            """UPDATE uploads SET status = 'uploaded', received = $2, uploaded_at = now()
                WHERE id = $1""",
            upload_id,
            info.size,
        )
    return Upload(id=upload_id, object_key=row["object_key"], size=row["size"])


# ------------------------------------------------------------------ handlers


@routes.post(
    "/admin/v1/uploads",
    summary="Start an upload: where to PUT the file (a presigned S3/R2 URL, or this "
    "service's streaming upload for the local origin) (admin)",
    body=NewUpload,
    replies={201: UploadTicket},
    auth=SIGNED_IN,
    errors={
        403: "Your role may not do this (`forbidden_role`)",
        413: "Larger than KUSH_MAX_UPLOAD_BYTES (`upload_too_large`)",
    },
)
async def create_upload(request: web.Request) -> web.Response:
    """POST /admin/v1/uploads {filename, size, content_type} -> 201 a ticket."""
    claims = await require_role(request, ADMIN)
    new = await parse_body(request, NewUpload)
    app = request.app
    settings = app[settings_key]
    if new.size > settings.max_upload_bytes:
        raise PayloadTooLarge(
            f"The file is larger than the limit of {settings.max_upload_bytes} bytes",
            code="upload_too_large",
        )
    origin = app[admin_origin_key]
    upload_id = uuid.uuid4()
    key = upload_key(upload_id)
    expires_at = datetime.now(UTC) + timedelta(seconds=settings.upload_url_seconds)
    headers = {"Content-Type": new.content_type}
    token_hash: bytes | None = None
    if isinstance(origin, S3Origin):
        url = origin.presign_put(
            key,
            content_type=new.content_type,
            content_length=new.size,
            expires_in=settings.upload_url_seconds,
        )
    else:
        token = secrets.token_urlsafe(32)
        token_hash = _token_hash(token)
        url = str(
            request.url.with_path(f"/admin/v1/uploads/{upload_id}/data").with_query(token=token)
        )
    await app[pg_key].execute(
        """INSERT INTO uploads (id, filename, content_type, size, object_key, token_hash,
               created_by, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        upload_id,
        new.filename,
        new.content_type,
        new.size,
        key,
        token_hash,
        uuid.UUID(claims.sub),
        expires_at,
    )
    ticket = UploadTicket(
        upload_id=str(upload_id),
        url=url,
        method="PUT",
        headers=headers,
        expires_at=expires_at.isoformat(),
    )
    return json_response(ticket, status=201)


def _write_chunk(file: BinaryIO, chunk: bytes) -> None:
    """One chunk to disk (a function of its own so tests can fill the disk)."""
    file.write(chunk)


def _open_partial(origin: LocalOrigin, key: str) -> tuple[Path, Path, BinaryIO]:
    target = origin.writable_path(key)
    partial = target.with_name(f".{target.name}.{secrets.token_hex(6)}.partial")
    return target, partial, partial.open("xb")


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"More bytes than the {limit} declared; the partial file was removed",
        code="upload_too_large",
    )


@routes.put(
    "/admin/v1/uploads/{upload_id}/data",
    summary="Send an upload's bytes (local origin; authorised by the token in the URL)",
    replies={200: UploadReceived},
    path_params={"upload_id": PathParam("The upload's id", "uuid")},
    auth=("upload_token",),
    errors={
        400: "Fewer bytes than declared (`incomplete_upload`)",
        403: "Wrong or expired token (`invalid_upload_token`, `upload_expired`)",
        404: "No such upload, or the origin is not local (`upload_not_found`)",
        409: "Already uploaded (`already_uploaded`)",
        413: "More bytes than declared (`upload_too_large`)",
        507: "The disk is full (`insufficient_storage`)",
    },
)
async def put_upload_data(request: web.Request) -> web.Response:
    """PUT /admin/v1/uploads/{id}/data?token= (the raw bytes) -> 200 {upload_id, size}."""
    app = request.app
    origin = app[admin_origin_key]
    try:
        upload_id = uuid.UUID(request.match_info["upload_id"])
    except ValueError:
        raise NotFound("No such upload", code="upload_not_found") from None
    if not isinstance(origin, LocalOrigin):
        raise NotFound("No such upload", code="upload_not_found")
    pool = app[pg_key]
    row = await pool.fetchrow("SELECT * FROM uploads WHERE id = $1", upload_id)
    if row is None or row["token_hash"] is None:
        raise NotFound("No such upload", code="upload_not_found")
    token = request.query.get("token", "")
    if not hmac.compare_digest(_token_hash(token), bytes(row["token_hash"])):
        raise Forbidden("Wrong upload token", code="invalid_upload_token")
    if row["expires_at"] < datetime.now(UTC):
        raise Forbidden("This upload URL has expired; start a new upload", code="upload_expired")
    if row["status"] != "pending":
        raise Conflict("This upload already has its bytes", code="already_uploaded")
    declared = min(int(row["size"]), app[settings_key].max_upload_bytes)
    if request.content_length is not None and request.content_length > declared:
        raise _too_large(declared)
    received = await _receive(request, origin, row["object_key"], declared)
    await pool.execute(
        "UPDATE uploads SET status = 'uploaded', received = $2, uploaded_at = now() WHERE id = $1",
        upload_id,
        received,
    )
    log.info("upload %s received (%d bytes)", upload_id, received)
    return json_response(UploadReceived(upload_id=str(upload_id), size=received))


async def _receive(request: web.Request, origin: LocalOrigin, key: str, declared: int) -> int:
    """Stream the body into a partial file beside the object, then rename it in place.

    Anything but a whole body of exactly ``declared`` bytes removes the partial file."""
    target, partial, file = await asyncio.to_thread(_open_partial, origin, key)
    received = 0
    done = False
    try:
        with file:
            async for chunk in request.content.iter_chunked(CHUNK_BYTES):
                received += len(chunk)
                if received > declared:
                    raise _too_large(declared)
                await asyncio.to_thread(_write_chunk, file, chunk)
            await asyncio.to_thread(file.flush)
            await asyncio.to_thread(os.fsync, file.fileno())
        if received != declared:
            raise ApiError(
                f"Received {received} of the {declared} bytes declared; send the file again",
                code="incomplete_upload",
                status=400,
            )
        await asyncio.to_thread(os.replace, partial, target)
        done = True
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            log.error("upload to %s failed: the disk is full", key)
            raise InsufficientStorage(
                "The server's disk is full: the partial upload was removed. Free space "
                "(or ask an operator to) and send the file again."
            ) from None
        raise
    finally:
        if not done:
            with contextlib.suppress(OSError):
                await asyncio.shield(asyncio.to_thread(partial.unlink, missing_ok=True))
    return received


def setup_routes(app: web.Application) -> None:
    """Mount the upload API."""
    routes.mount(app)

"""Offline downloads (premium): ``POST /v1/downloads/{movie_id}``, ``GET
/v1/me/downloads`` and the gateway's own file route for the local origin,
``GET /v1/downloads/{download_id}/file?token=``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from aiohttp import hdrs, web
from pydantic import Field

from gateway.downloads.repository import Download
from gateway.downloads.service import (
    authorize_file,
    count_served,
    file_name,
    issue_download,
    list_downloads,
)
from gateway.errors import TokenRequired
from gateway.keys import playback_key
from gateway.views.playback import base_url
from runtime import ratelimit
from runtime.api import Content, DateTimeStr, Param, PathParam, ReplyModel, Routes, UuidStr
from runtime.net import trusted_header
from runtime.web import json_response, pg_key, redis_key, rkeys_key, settings_key
from tokens.service.views import SIGNED_IN, authenticate, keystore_key

routes = Routes(tags=("downloads",))
#: Download URLs one account may ask for per hour: an app refreshes a few films' URLs,
#: not hundreds (each presigned URL counts the whole file as data use).
DOWNLOADS_PER_HOUR = 60
NO_STORE = {"Cache-Control": "no-store"}
#: The file is one viewer's, fetched with a short-lived token: nobody keeps it.
FILE_CACHE_CONTROL = "private, no-store"
#: The name a browser saves the file under (set on the response as it is prepared).
download_name_key = web.RequestKey("download_name", str)

DownloadStatus = Literal["active", "expired", "revoked"]


class DownloadLink(ReplyModel):
    """Where to fetch the film's offline MP4, for a short while."""

    download_id: str = Field(description="The download, as `GET /v1/me/downloads` lists it")
    url: str = Field(
        description="A short-lived signed URL of the MP4 (480p, H.264 + AAC, faststart): "
        "the origin's presigned GET, or this gateway's file route; both answer Range"
    )
    expires_at: DateTimeStr = Field(
        description="The URL works until then (`KUSH_DOWNLOAD_URL_TTL_S` after now); a "
        "download that started goes on, a new one needs a new URL"
    )
    offline_expires_at: DateTimeStr = Field(
        description="The offline copy may be played until then: the end of the "
        "subscription's current period (ask again after a renewal); the `expires_at` "
        "of `GET /v1/me/downloads`"
    )
    bytes: int = Field(description="Size of the file")


class DownloadItem(ReplyModel):
    """A film taken offline."""

    download_id: str
    movie_id: UuidStr
    title: str
    bytes: int = Field(description="Size of the file")
    bytes_delivered: int = Field(
        description="Bytes counted against your data use for this download"
    )
    status: DownloadStatus = Field(
        description="`active`; `expired` (past `expires_at`: ask again); `revoked` (your "
        "plan no longer includes downloads)"
    )
    created_at: DateTimeStr
    expires_at: DateTimeStr = Field(
        description="The offline copy may be played until then (the subscription's period end)"
    )
    revoked_at: DateTimeStr | None


class DownloadList(ReplyModel):
    """Your downloads, newest first."""

    items: list[DownloadItem]


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(d: Download, now: datetime) -> DownloadStatus:
    if d.revoked_at is not None:
        return "revoked"
    return "expired" if d.expires_at <= now else "active"


@routes.post(
    "/v1/downloads/{movie_id}",
    summary="Download a film for offline viewing (premium): a short-lived signed URL",
    replies={201: DownloadLink},
    auth=SIGNED_IN,
    errors={
        403: "Your plan does not include downloads (`premium_required`), or not allowed "
        "(`geo_blocked`, `age_restricted`, `account_disabled`, `csrf_failed`)",
        404: "No such published film (`movie_not_found`)",
        409: "The film has no offline copy yet (`download_unavailable`)",
        429: f"More than {DOWNLOADS_PER_HOUR} download URLs an hour (`rate_limited`)",
    },
    path_params={"movie_id": PathParam("The film's id", "uuid")},
)
async def create_download(request: web.Request) -> web.Response:
    """POST /v1/downloads/{movie_id} -> 201 {download_id, url, expires_at,
    offline_expires_at, bytes}."""
    claims = await authenticate(request)
    app = request.app
    settings = app[settings_key]
    await ratelimit.hit(
        app[redis_key],
        app[rkeys_key],
        "download",
        claims.sub,
        limit=DOWNLOADS_PER_HOUR,
        window_s=3600,
    )
    issued = await issue_download(
        settings=settings,
        pool=app[pg_key],
        origin=app[playback_key].origin,
        ring=app[keystore_key].keys.segments,
        user_id=claims.sub,
        movie_id=request.match_info["movie_id"],
        country=trusted_header(request, settings.trusted_proxies, settings.geo_header),
        base_url=base_url(request),
    )
    download = issued.download
    return json_response(
        DownloadLink(
            download_id=download.id,
            url=issued.url,
            expires_at=_iso(download.url_expires_at),
            offline_expires_at=_iso(download.expires_at),
            bytes=download.bytes,
        ),
        status=201,
        headers=NO_STORE,
    )


@routes.get(
    "/v1/me/downloads",
    summary="The films you downloaded, with when each stops playing offline",
    replies={200: DownloadList},
    auth=SIGNED_IN,
)
async def my_downloads(request: web.Request) -> web.Response:
    """GET /v1/me/downloads -> {items: [{download_id, movie_id, title, bytes, expires_at,
    status, ...}]}."""
    claims = await authenticate(request)
    app = request.app
    found = await list_downloads(settings=app[settings_key], pool=app[pg_key], user_id=claims.sub)
    now = datetime.now(UTC)
    items = [
        DownloadItem(
            download_id=d.id,
            movie_id=d.movie_id,
            title=d.title,
            bytes=d.bytes,
            bytes_delivered=d.bytes_delivered,
            status=_status(d, now),
            created_at=_iso(d.created_at),
            expires_at=_iso(d.expires_at),
            revoked_at=_iso(d.revoked_at) if d.revoked_at is not None else None,
        )
        for d in found
    ]
    return json_response(DownloadList(items=items), headers=NO_STORE)


_FILE_TYPES = ("video/mp4",)


@routes.get(
    "/v1/downloads/{download_id}/file",
    summary="A download's MP4 (the local origin's download URL; Range supported)",
    replies={
        200: Content(
            "The MP4 (Content-Disposition: attachment)",
            _FILE_TYPES,
            headers={"Cache-Control": FILE_CACHE_CONTROL},
        ),
        206: Content("The requested byte range", _FILE_TYPES),
        304: None,
        416: None,
    },
    errors={
        401: "No token (`token_required`)",
        403: "Token invalid, tampered or expired (`invalid_token`, `token_expired`), the "
        "download revoked by a downgrade (`download_revoked`) or expired "
        "(`download_expired`), or the film withdrawn (`film_unavailable`)",
        404: "No such download (`download_not_found`) or file (`not_found`)",
        409: "The film has no offline copy any more (`download_unavailable`)",
        503: "The video origin is unavailable (`origin_unavailable`)",
    },
    path_params={"download_id": PathParam("The `download_id` of the download")},
    params=(
        Param("token", "query", "The token of the URL `POST /v1/downloads` returned", True),
        Param("Range", "header", "One byte range, e.g. `bytes=0-1048575` (answered 206)"),
    ),
)
async def download_file(request: web.Request) -> web.StreamResponse:
    """GET /v1/downloads/{download_id}/file?token= -> the MP4 bytes; counted as data use."""
    token = request.query.get("token")
    if not token:
        raise TokenRequired("A download token is required")
    app = request.app
    pool = app[pg_key]
    download, key = await authorize_file(
        settings=app[settings_key],
        pool=pool,
        ring=app[keystore_key].keys.segments,
        download_id=request.match_info["download_id"],
        token=token,
    )
    request[download_name_key] = file_name(download.slug)
    response = await app[playback_key].origin.serve(request, key, cache_control=FILE_CACHE_CONTROL)
    await count_served(pool, download, served_bytes(request, response))
    return response


def served_bytes(request: web.Request, response: web.StreamResponse) -> int:
    """The bytes a file answer carried: its Content-Length for a 200 or 206 to a GET
    (what the gateway committed to send), nothing for HEAD, 304 or 416."""
    if request.method != hdrs.METH_GET or response.status not in (200, 206):
        return 0
    return response.content_length or 0


def add_download_headers(request: web.Request, response: web.StreamResponse) -> None:
    """A response hook (``runtime.web.response_hooks_key``): a download's MP4 is saved
    under the film's name."""
    name = request.get(download_name_key)
    if name is not None and response.status in (200, 206):
        response.headers[hdrs.CONTENT_DISPOSITION] = f'attachment; filename="{name}"'

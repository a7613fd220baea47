"""Offline downloads (premium): issuing a short-lived URL for a film's MP4, listing a
viewer's downloads, and authorizing every request of the gateway's file route.

No HTTP here: the views parse, call these and answer; errors are ``gateway.errors``.

Where the bytes come from: an S3/R2 origin hands out its own presigned GET (the client
downloads straight from the bucket; the gateway cannot see or stop that transfer, so
the URL lives only ``KUSH_DOWNLOAD_URL_TTL_S``); the local origin is served by the
gateway at ``/v1/downloads/{id}/file?token=`` (``tokens.download``), which checks the
download and the viewer's plan again at every request, so a downgrade stops it at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from billing.downloads import PLAN_CHANGED, offline_until, revoke_downloads
from billing.store import grace_of, load_user_plan
from gateway import repository
from gateway.downloads import repository as store
from gateway.downloads.repository import Delivery, Download
from gateway.errors import (
    DownloadExpired,
    DownloadNotFound,
    DownloadRevoked,
    DownloadTokenRejected,
    DownloadUnavailable,
    FilmUnavailable,
    PremiumRequired,
)
from gateway.playback import check_rules, now_year
from gateway.repository import Viewer
from origin import OriginStore, S3Origin
from runtime.settings import Settings
from tokens import SegmentKeyring, TokenError
from tokens.download import download_file_path, new_download_id, sign_download, verify_download

__all__ = [
    "DOWNLOAD_HEIGHT_LABEL",
    "IssuedDownload",
    "authorize_file",
    "issue_download",
    "list_downloads",
]

#: The offline copy's rendition, in the file name a browser saves it under.
DOWNLOAD_HEIGHT_LABEL = "480p"
LIST_LIMIT = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedDownload:
    """A download and where to fetch it until ``url_expires_at``."""

    download: Download
    url: str


def file_name(slug: str) -> str:
    """The name a browser saves the MP4 under (a slug is ``[a-z0-9-]`` only)."""
    return f"{slug}-{DOWNLOAD_HEIGHT_LABEL}.mp4"


async def issue_download(
    *,
    settings: Settings,
    pool: asyncpg.Pool,
    origin: OriginStore,
    ring: SegmentKeyring,
    user_id: str,
    movie_id: str,
    country: str | None,
    base_url: str,
) -> IssuedDownload:
    """Check the plan (downloads included: premium), the film (published, with its MP4)
    and the geo and age rules, record the download and sign its URL.

    Raises `PremiumRequired`, `MovieNotFound`, `DownloadUnavailable`, `GeoBlocked`,
    `AgeRestricted` or `AccountDisabled`."""
    movie = await repository.load_movie(pool, movie_id)
    birth_year = await store.load_birth_year(pool, user_id)
    now = datetime.now(UTC)
    plan = await load_user_plan(pool, user_id, grace=grace_of(settings), now=now)
    if not plan.limits.downloads:
        raise PremiumRequired()
    viewer = Viewer(
        id=user_id,
        birth_year=birth_year,
        plan=plan.plan,
        max_height=plan.limits.max_height,
        max_streams=plan.limits.max_streams,
        ads=plan.limits.ads,
    )
    check_rules(movie, viewer, country, year=now_year())
    copy = await store.load_offline_copy(pool, movie.id)
    if copy is None:
        raise DownloadUnavailable()
    ttl = settings.download_url_ttl_s
    # whole seconds: the token carries Unix seconds, and the reply should say the same
    url_expires_at = now.replace(microsecond=0) + timedelta(seconds=ttl)
    delivery: Delivery = "presigned" if isinstance(origin, S3Origin) else "gateway"
    download = await store.issue(
        pool,
        new_id=new_download_id(),
        user_id=user_id,
        movie_id=movie.id,
        size=copy.size,
        delivery=delivery,
        url_expires_at=url_expires_at,
        expires_at=offline_until(plan.effective, now=now),
    )
    if isinstance(origin, S3Origin):
        url = origin.presign_get(copy.key, expires_in=ttl, filename=file_name(copy.slug))
    else:
        token = sign_download(ring, download.id, int(url_expires_at.timestamp()))
        url = f"{base_url}{download_file_path(download.id)}?token={token}"
    return IssuedDownload(download=download, url=url)


async def list_downloads(*, settings: Settings, pool: asyncpg.Pool, user_id: str) -> list[Download]:
    """The viewer's downloads, newest first, their offline expiry following the
    subscription: a renewal moves it to the new period end (the app reads its new
    expiry here). A plan that no longer includes downloads revokes the live ones first
    (should its enforcement not have run yet)."""
    now = datetime.now(UTC)
    plan = await load_user_plan(pool, user_id, grace=grace_of(settings), now=now)
    if plan.limits.downloads:
        await store.extend_live(pool, user_id, offline_until(plan.effective, now=now))
    else:
        await revoke_downloads(pool, user_id, reason=PLAN_CHANGED)
    return await store.list_downloads(pool, user_id, limit=LIST_LIMIT)


async def authorize_file(
    *,
    settings: Settings,
    pool: asyncpg.Pool,
    ring: SegmentKeyring,
    download_id: str,
    token: str,
) -> tuple[Download, str]:
    """Everything a file request must pass, in order: the token (pure), the download
    (exists, not revoked, not expired), the film (still published, still has its MP4)
    and the viewer's plan, read fresh (no downloads any more: the download is revoked
    now). Returns the download and the origin key to serve."""
    try:
        verify_download(ring, token, download_id, now=int(time.time()))
    except TokenError as err:
        raise DownloadTokenRejected(code=err.code) from err
    download = await store.load_download(pool, download_id)
    if download is None:
        raise DownloadNotFound()
    if download.revoked_at is not None:
        raise DownloadRevoked()
    if download.expires_at <= datetime.now(UTC):
        raise DownloadExpired()
    if download.movie_status != "published":
        raise FilmUnavailable()
    await store.load_birth_year(pool, download.user_id)
    plan = await load_user_plan(pool, download.user_id, grace=grace_of(settings))
    if not plan.limits.downloads:
        await revoke_downloads(pool, download.user_id, reason=PLAN_CHANGED)
        raise DownloadRevoked()
    if download.download_key is None:
        raise DownloadUnavailable()
    return download, download.download_key


async def count_served(pool: asyncpg.Pool, download: Download, size: int) -> None:
    """Count bytes the file route sent (data use, README "Offline downloads")."""
    if size > 0:
        await store.record_delivery(pool, download, size)

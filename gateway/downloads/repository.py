"""The SQL of offline downloads: the film's offline copy, the viewer's download rows and
the bytes delivered (``runtime/migrations/0009_downloads.sql``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg

from gateway.errors import AccountDisabled

Delivery = Literal["gateway", "presigned"]


@dataclass(frozen=True, slots=True, kw_only=True)
class OfflineCopy:
    """A film's progressive MP4 on the origin."""

    key: str
    size: int
    slug: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Download:
    """One film a viewer took offline, with what the file route checks."""

    id: str
    user_id: str
    movie_id: str
    title: str
    slug: str
    movie_status: str
    download_key: str | None
    bytes: int
    bytes_delivered: int
    delivery: Delivery
    created_at: datetime
    issued_at: datetime
    url_expires_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_reason: str | None


_COLUMNS = """d.id, d.user_id, d.movie_id, m.title, m.slug, m.status AS movie_status,
              m.download_key, d.bytes, d.bytes_delivered, d.delivery, d.created_at,
              d.issued_at, d.url_expires_at, d.expires_at, d.revoked_at, d.revoked_reason"""


def _download(r: Any) -> Download:
    return Download(
        id=r["id"],
        user_id=str(r["user_id"]),
        movie_id=str(r["movie_id"]),
        title=r["title"],
        slug=r["slug"],
        movie_status=r["movie_status"],
        download_key=r["download_key"],
        bytes=r["bytes"],
        bytes_delivered=r["bytes_delivered"],
        delivery=r["delivery"],
        created_at=r["created_at"],
        issued_at=r["issued_at"],
        url_expires_at=r["url_expires_at"],
        expires_at=r["expires_at"],
        revoked_at=r["revoked_at"],
        revoked_reason=r["revoked_reason"],
    )


async def load_birth_year(pool: asyncpg.Pool, user_id: str) -> int | None:
    """The account's birth year (age rules); `AccountDisabled` for a disabled account."""
    row = await pool.fetchrow(
        "SELECT birth_year FROM users WHERE id = $1 AND disabled_at IS NULL", uuid.UUID(user_id)
    )
    if row is None:
        raise AccountDisabled()
    year: int | None = row["birth_year"]
    return year


async def load_offline_copy(pool: asyncpg.Pool, movie_id: str) -> OfflineCopy | None:
    """The film's current offline MP4 (None: it has none)."""
    row = await pool.fetchrow(
        "SELECT download_key, download_bytes, slug FROM movies WHERE id = $1",
        uuid.UUID(movie_id),
    )
    if row is None or not row["download_key"] or not row["download_bytes"]:
        return None
    return OfflineCopy(key=row["download_key"], size=row["download_bytes"], slug=row["slug"])


async def issue(
    pool: asyncpg.Pool,
    *,
    new_id: str,
    user_id: str,
    movie_id: str,
    size: int,
    delivery: Delivery,
    url_expires_at: datetime,
    expires_at: datetime,
) -> Download:
    """Record a download: a new row, or the viewer's live row for this film refreshed
    (new URL expiry and offline expiry). A presigned URL counts the file's size as
    delivered (the origin's transfer is not seen by the gateway)."""
    delivered = size if delivery == "presigned" else 0
    uid, mid = uuid.UUID(user_id), uuid.UUID(movie_id)
    async with pool.acquire() as conn, conn.transaction():
        download_id: str = await conn.fetchval(
            """INSERT INTO downloads (id, user_id, movie_id, bytes, bytes_delivered, delivery,
                   url_expires_at, expires_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               ON CONFLICT (user_id, movie_id) WHERE revoked_at IS NULL DO UPDATE
                  SET bytes = EXCLUDED.bytes,
                      bytes_delivered = downloads.bytes_delivered + EXCLUDED.bytes_delivered,
                      delivery = EXCLUDED.delivery, issued_at = now(),
                      url_expires_at = EXCLUDED.url_expires_at,
                      expires_at = EXCLUDED.expires_at
               RETURNING id""",
            new_id,
            uid,
            mid,
            size,
            delivered,
            delivery,
            url_expires_at,
            expires_at,
        )
        if delivered:
            await conn.execute(
                """INSERT INTO download_deliveries (download_id, user_id, movie_id, bytes)
                   VALUES ($1, $2, $3, $4)""",
                download_id,
                uid,
                mid,
                delivered,
            )
        row = await conn.fetchrow(
            f"""SELECT {_COLUMNS} FROM downloads d JOIN movies m ON m.id = d.movie_id
                 WHERE d.id = $1""",  # noqa: S608 (fixed column list)
            download_id,
        )
    return _download(row)


async def load_download(pool: asyncpg.Pool, download_id: str) -> Download | None:
    """One download with its film, or None."""
    row = await pool.fetchrow(
        f"""SELECT {_COLUMNS} FROM downloads d JOIN movies m ON m.id = d.movie_id
             WHERE d.id = $1""",  # noqa: S608 (fixed column list)
        download_id,
    )
    return None if row is None else _download(row)


async def list_downloads(pool: asyncpg.Pool, user_id: str, *, limit: int) -> list[Download]:
    """The viewer's downloads, newest first (revoked ones included)."""
    rows = await pool.fetch(
        f"""SELECT {_COLUMNS} FROM downloads d JOIN movies m ON m.id = d.movie_id
             WHERE d.user_id = $1
             ORDER BY d.created_at DESC, d.id LIMIT $2""",  # noqa: S608 (fixed column list)
        uuid.UUID(user_id),
        limit,
    )
    return [_download(r) for r in rows]


async def extend_live(pool: asyncpg.Pool, user_id: str, expires_at: datetime) -> None:
    """Move the offline expiry of the viewer's live downloads to ``expires_at`` (the
    subscription's period end as it is now: a renewal moved it on)."""
    await pool.execute(
        """UPDATE downloads SET expires_at = $2
            WHERE user_id = $1 AND revoked_at IS NULL AND expires_at <> $2""",
        uuid.UUID(user_id),
        expires_at,
    )


async def record_delivery(pool: asyncpg.Pool, download: Download, size: int) -> None:
    """Count bytes the gateway's file route sent for a download."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE downloads SET bytes_delivered = bytes_delivered + $2 WHERE id = $1",
            download.id,
            size,
        )
        await conn.execute(
            """INSERT INTO download_deliveries (download_id, user_id, movie_id, bytes)
               VALUES ($1, $2, $3, $4)""",
            download.id,
            uuid.UUID(download.user_id),
            uuid.UUID(download.movie_id),
            size,
        )

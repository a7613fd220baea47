"""Publishing an HLS package: upload to the origin and record it in the catalogue.

Used by the demo seed now and by the ingest pipeline: the package directory holds
``master.m3u8``, ``{rendition}/index.m3u8``, ``{rendition}/seg_NNNNN.ts`` and
``poster.jpg``; they go to ``videos/{movie_id}/...`` on the origin.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from admin.ingest import HlsPackage, build_demo_film, transcode_to_hls
from origin import OriginStore, object_key

log = logging.getLogger(__name__)

DEMO_SLUG = "kush-demo"
DEMO_TITLE = "Kush Films Demo: Test Pattern"
DEMO_DESCRIPTION = (
    "A generated test film: a moving test pattern with a running clock and a tone, "
    "in 1080p, 720p, 480p and 360p."
)


async def _upload(origin: OriginStore, prefix: str, owner_id: str, package_dir: Path) -> int:
    """Upload every file of a package under ``{prefix}/{owner_id}/``; the master last,
    so a reader never finds a master whose renditions are missing."""
    files = await asyncio.to_thread(
        lambda: sorted(p for p in package_dir.rglob("*") if p.is_file())
    )
    master = package_dir / "master.m3u8"
    ordered = [p for p in files if p != master] + ([master] if master in files else [])
    for path in ordered:
        parts = path.relative_to(package_dir).parts
        await origin.put_file(object_key(prefix, owner_id, *parts), path)
    return len(ordered)


async def _build_and_upload(
    origin: OriginStore,
    prefix: str,
    owner_id: str,
    work_dir: Path,
    build: Callable[[Path], Awaitable[HlsPackage]],
) -> HlsPackage:
    """Build a package in a scratch folder under ``work_dir``, upload it under
    ``{prefix}/{owner_id}/`` and drop the scratch copy."""
    await asyncio.to_thread(work_dir.mkdir, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        out = Path(tmp) / "package"
        package = await build(out)
        await _upload(origin, prefix, owner_id, out)
    return package


async def upload_package(origin: OriginStore, movie_id: str, package_dir: Path) -> int:
    """Upload a film's package under ``videos/{movie_id}/``; returns the file count."""
    return await _upload(origin, "videos", movie_id, package_dir)


async def record_package(
    conn: asyncpg.Connection, movie_id: str, package: HlsPackage, *, publish: bool
) -> None:
    """Write the renditions, duration and keys of a package; bump the version."""
    mid = uuid.UUID(movie_id)
    async with conn.transaction():
        await conn.execute("DELETE FROM renditions WHERE movie_id = $1", mid)
        for r in package.renditions:
            await conn.execute(
                """INSERT INTO renditions (movie_id, name, width, height, bandwidth, codecs,
                       segment_count) VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                mid,
                r.name,
                r.width or None,
                r.height or None,
                r.bandwidth,
                r.codecs,
                r.segment_count,
            )
        await conn.execute(
            """UPDATE movies SET duration_s = $2, master_key = $3, poster_key = $4,
                      version = version + 1, updated_at = now(),
                      status = CASE WHEN $5 THEN 'published' ELSE status END,
                      published_at = CASE WHEN $5 THEN coalesce(published_at, now())
                                          ELSE published_at END
                WHERE id = $1""",
            mid,
            package.duration_s,
            object_key("videos", movie_id, "master.m3u8"),
            object_key("videos", movie_id, "poster.jpg"),
            publish,
        )


async def seed_demo_film(
    conn: asyncpg.Connection,
    origin: OriginStore,
    *,
    duration_s: float,
    work_dir: Path,
    on_progress: Callable[[float], None] | None = None,
) -> str:
    """Make sure the demo film exists and is playable; returns its id. Idempotent:
    it is generated (ffmpeg) only when the catalogue or the origin lacks it.
    ``on_progress`` gets the fraction done while it is generated (default: a line on
    stdout every 10 %)."""
    row = await conn.fetchrow(
        "SELECT id, status, master_key FROM movies WHERE slug = $1", DEMO_SLUG
    )
    ready = row is not None and row["status"] == "published" and row["master_key"]
    if ready and row is not None and await origin.exists(row["master_key"]):
        return str(row["id"])
    if row is None:
        movie_id = await conn.fetchval(
            """INSERT INTO movies (slug, title, description, year, rating, status)
               VALUES ($1, $2, $3, 2026, 'G', 'processing') RETURNING id""",
            DEMO_SLUG,
            DEMO_TITLE,
            DEMO_DESCRIPTION,
        )
        category = await conn.fetchval(
            """INSERT INTO categories (slug, name) VALUES ('demo', 'Demo')
               ON CONFLICT (slug) DO UPDATE SET name = EXCLUDED.name RETURNING id"""
        )
        await conn.execute(
            "INSERT INTO movie_categories VALUES ($1, $2) ON CONFLICT DO NOTHING",
            movie_id,
            category,
        )
    else:
        movie_id = row["id"]
    print(f"Generating the demo film ({duration_s:.0f} s, 4 renditions) with ffmpeg...", flush=True)
    package = await _build_and_upload(
        origin,
        "videos",
        str(movie_id),
        work_dir,
        lambda out: build_demo_film(
            out, duration_s=duration_s, on_progress=on_progress or _progress_printer()
        ),
    )
    if on_progress is None:
        print("", flush=True)
    await record_package(conn, str(movie_id), package, publish=True)
    log.info("demo film %s published", movie_id)
    return str(movie_id)


def _progress_printer() -> Callable[[float], None]:
    shown = [-1]

    def show(fraction: float) -> None:
        pct = int(fraction * 100)
        if pct // 10 != shown[0] // 10:
            shown[0] = pct
            sys.stdout.write(f"\r  transcoding {pct:3d}%")
            sys.stdout.flush()

    return show


async def upload_ad_package(origin: OriginStore, ad_id: str, package_dir: Path) -> int:
    """Upload an ad creative's HLS package under ``ads/{ad_id}/`` (master last)."""
    return await _upload(origin, "ads", ad_id, package_dir)


async def record_ad_package(conn: asyncpg.Connection, ad_id: str, package: HlsPackage) -> None:
    """Mark a creative ready with its duration and master key."""
    await conn.execute(
        """UPDATE ads SET status = 'ready', duration_s = $2, master_key = $3 WHERE id = $1""",
        uuid.UUID(ad_id),
        package.duration_s,
        object_key("ads", ad_id, "master.m3u8"),
    )


async def build_ad(
    origin: OriginStore, ad_id: str, *, duration_s: float, work_dir: Path
) -> HlsPackage:
    """Encode a synthetic video ad in the film ladder and upload it (no database: an
    encode takes seconds to minutes and must not hold a connection)."""
    return await _build_and_upload(
        origin,
        "ads",
        ad_id,
        work_dir,
        lambda out: build_demo_film(out, duration_s=duration_s, label="ADVERT - Kush Films"),
    )


async def generate_ad(
    conn: asyncpg.Connection, origin: OriginStore, ad_id: str, *, duration_s: float, work_dir: Path
) -> None:
    """Generate a synthetic video ad in the film ladder (until uploads are ingested)."""
    package = await build_ad(origin, ad_id, duration_s=duration_s, work_dir=work_dir)
    await record_ad_package(conn, ad_id, package)


DEMO_AD_NAME = "Kush Films demo ad"


async def seed_demo_ads(
    conn: asyncpg.Connection, origin: OriginStore, *, duration_s: float, work_dir: Path
) -> str:
    """Make sure a demo ad creative, a campaign for the free plan and a default break
    policy (pre-roll, a mid-roll every minute) exist; returns the ad id. Idempotent."""
    row = await conn.fetchrow(
        "SELECT id, status, master_key FROM ads WHERE name = $1 ORDER BY created_at LIMIT 1",
        DEMO_AD_NAME,
    )
    if row is None:
        ad_id = str(
            await conn.fetchval(
                """INSERT INTO ads (name, advertiser, status, click_url)
                   VALUES ($1, 'Kush Films', 'processing', 'https://kushfilms.example/')
                   RETURNING id""",
                DEMO_AD_NAME,
            )
        )
    else:
        ad_id = str(row["id"])
    ready = row is not None and row["status"] == "ready" and row["master_key"]
    if not (ready and row is not None and await origin.exists(row["master_key"])):
        print(f"Generating the demo ad ({duration_s:.0f} s) with ffmpeg...", flush=True)
        await generate_ad(conn, origin, ad_id, duration_s=duration_s, work_dir=work_dir)
    has_campaign = await conn.fetchval(
        "SELECT 1 FROM campaign_ads WHERE ad_id = $1 LIMIT 1", uuid.UUID(ad_id)
    )
    if not has_campaign:
        campaign_id = await conn.fetchval(
            """INSERT INTO campaigns (name, advertiser, starts_at, ends_at, weight, target_plans)
               VALUES ('Demo campaign', 'Kush Films', now() - interval '1 day',
                       now() + interval '5 years', 1, '{free}') RETURNING id"""
        )
        await conn.execute(
            "INSERT INTO campaign_ads VALUES ($1, $2)", campaign_id, uuid.UUID(ad_id)
        )
    await conn.execute(
        """INSERT INTO break_policies (movie_id, preroll, midroll_every_s, max_pod_s,
               max_ads_per_pod)
           SELECT NULL, true, 60, 40, 1
            WHERE NOT EXISTS (SELECT 1 FROM break_policies WHERE movie_id IS NULL)"""
    )
    return ad_id


def slug_for(title: str) -> str:
    """A URL slug from a title (lower-case letters, digits, dashes), with a random tail
    so that two films of the same title never collide."""
    base = "".join(c if c.isalnum() and c.isascii() else "-" for c in title.lower())
    base = "-".join(p for p in base.split("-") if p)[:100] or "film"
    return f"{base}-{uuid.uuid4().hex[:6]}"


async def ingest_file(
    conn: asyncpg.Connection,
    origin: OriginStore,
    source: Path,
    *,
    title: str,
    work_dir: Path,
    publish: bool,
    on_progress: Callable[[float], None] | None = None,
) -> str:
    """Transcode a local video file into the HLS ladder (no rung above the source),
    upload it and record it in the catalogue; returns the new film's id."""
    movie_id = str(
        await conn.fetchval(
            """INSERT INTO movies (slug, title, status) VALUES ($1, $2, 'processing')
               RETURNING id""",
            slug_for(title),
            title,
        )
    )
    try:
        package = await _build_and_upload(
            origin,
            "videos",
            movie_id,
            work_dir,
            lambda out: transcode_to_hls(source, out, on_progress=on_progress),
        )
        await record_package(conn, movie_id, package, publish=publish)
        if not publish:
            await conn.execute(
                "UPDATE movies SET status = 'draft' WHERE id = $1", uuid.UUID(movie_id)
            )
    except BaseException:
        await conn.execute("DELETE FROM movies WHERE id = $1", uuid.UUID(movie_id))
        raise
    return movie_id

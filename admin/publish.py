"""Publishing an HLS package: upload to the origin and record it in the catalogue.

The package directory holds ``master.m3u8``, ``{rendition}/index.m3u8``,
``{rendition}/seg_NNNNN.ts``, ``poster.jpg`` and the offline copy ``download.mp4``. The
demo seed uploads it as is under ``videos/{movie_id}/``. The ingest pipeline
(`ingest_movie`, used by ingest jobs and ``kush ingest``) publishes each encode as a new
*version* of the film, so a re-ingest replaces the renditions atomically:

1. upload under new names: ``videos/{id}/v{n}-{rendition}/...``, the offline MP4 at
   ``videos/{id}/v{n}/download.mp4`` and the master at ``videos/{id}/v{n}/master.m3u8``
   (its variants are ``v{n}-{rendition}/index.m3u8``), the master last;
2. switch in one transaction: the film's renditions, ``master_key``, ``download_key``
   and ``version = n`` (only if nobody switched it meanwhile). Gateways key their
   compiled playlists by ``(film, version)`` and read the film's row per playback start,
   so every worker plays version ``n`` from the next start on, with no cache to
   invalidate;
3. delete the previous version's objects. A failure before the switch deletes the new
   objects instead: the origin never keeps half a version.

The gateway needs no change for this: rendition folders are one path component, as
before, only named after the version.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal

import asyncpg

from admin.ingest import DOWNLOAD_FILE, HlsPackage, build_demo_film, transcode_to_hls
from admin.ingest.ffmpeg import (
    FfmpegError,
    Limits,
    MediaInfo,
    SourceRefused,
    check_source,
    probe,
)
from admin.ingest.transcode import render_master_playlist
from origin import OriginError, OriginStore, object_key

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
                                          ELSE published_at END,
                      download_key = $6, download_bytes = $7
                WHERE id = $1""",
            mid,
            package.duration_s,
            object_key("videos", movie_id, "master.m3u8"),
            object_key("videos", movie_id, "poster.jpg"),
            publish,
            object_key("videos", movie_id, DOWNLOAD_FILE) if package.download else None,
            package.download.size if package.download else None,
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
        "SELECT id, status, master_key, download_key FROM movies WHERE slug = $1", DEMO_SLUG
    )
    # a film seeded before offline downloads existed lacks its MP4: made once more
    ready = (
        row is not None
        and row["status"] == "published"
        and row["master_key"]
        and row["download_key"]
    )
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


async def record_ad_package(
    conn: asyncpg.Connection | asyncpg.Pool, ad_id: str, package: HlsPackage
) -> None:
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
        # audio-only too: ingested films have that rung, and an ad must play in each
        lambda out: build_demo_film(
            out,
            duration_s=duration_s,
            label="ADVERT - Kush Films",
            include_audio_only=True,
            download=False,
        ),
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


Stage = Literal["probing", "transcoding", "uploading"]
#: Each stage's share of a job's progress: probing is instant, uploading a copy.
_STAGE_SPAN: dict[Stage, tuple[float, float]] = {
    "probing": (0.0, 0.02),
    "transcoding": (0.02, 0.9),
    "uploading": (0.9, 1.0),
}
#: No file of an encode (a segment, a playlist) may grow past this.
MAX_OUTPUT_FILE_BYTES = 2 * 1024**3
#: The CPU time an encode may use is this many seconds at least.
MIN_CPU_SECONDS = 600


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class IngestOptions:
    """How the pipeline encodes (from ``Settings``; tests pick a faster preset)."""

    work_dir: Path
    max_source_seconds: float
    cpu_factor: int = 20
    preset: str = "veryfast"


class Reporter:
    """Stage and progress callbacks of the pipeline: ``stage`` is awaited when a stage
    starts, ``progress`` gets the overall fraction in [0, 1] (from ffmpeg's reports)."""

    def __init__(
        self,
        stage: Callable[[Stage], Awaitable[None]] | None = None,
        progress: Callable[[float], None] | None = None,
    ) -> None:
        self._stage = stage
        self._progress = progress
        self._span = (0.0, 1.0)

    async def enter(self, stage: Stage) -> None:
        self._span = _STAGE_SPAN[stage]
        if self._stage is not None:
            await self._stage(stage)
        self.fraction(0.0)

    def fraction(self, within_stage: float) -> None:
        low, high = self._span
        if self._progress is not None:
            self._progress(low + (high - low) * min(max(within_stage, 0.0), 1.0))


def _limits(info: MediaInfo, options: IngestOptions) -> Limits:
    cpu = max(MIN_CPU_SECONDS, int((info.duration_s or 3600) * options.cpu_factor))
    return Limits(cpu_seconds=cpu, file_bytes=MAX_OUTPUT_FILE_BYTES)


async def _encode(
    source: Path, out: Path, options: IngestOptions, report: Reporter, *, download: bool
) -> HlsPackage:
    """Probe and refuse (`SourceRefused`), then transcode into ``out`` (with the offline
    MP4 when ``download``)."""
    await report.enter("probing")
    try:
        info = await probe(source)
    except FfmpegError as err:
        raise SourceRefused("unreadable", f"ffmpeg cannot read the file: {err}") from err
    check_source(info, max_seconds=options.max_source_seconds)
    await report.enter("transcoding")
    return await transcode_to_hls(
        source,
        out,
        info=info,
        limits=_limits(info, options),
        preset=options.preset,
        on_progress=report.fraction,
        download=download,
    )


def _version_names(version: int, package: HlsPackage) -> list[tuple[str, str]]:
    """(folder in the package, folder on the origin) of every rendition."""
    return [(r.name, f"v{version}-{r.name}") for r in package.renditions]


async def _upload_version(
    origin: OriginStore,
    movie_id: str,
    version: int,
    package_dir: Path,
    package: HlsPackage,
    report: Reporter,
) -> None:
    """Upload a package as version ``version`` of a film (master last)."""
    names = _version_names(version, package)
    files = await asyncio.to_thread(
        lambda: [
            (folder, path)
            for local, folder in names
            for path in sorted((package_dir / local).iterdir())
            if path.is_file()
        ]
    )
    for done, (folder, path) in enumerate(files, start=1):
        await origin.put_file(object_key("videos", movie_id, folder, path.name), path)
        report.fraction(done / (len(files) + 2))
    await origin.put_file(object_key("videos", movie_id, "poster.jpg"), package.poster_path)
    if package.download is not None:
        await origin.put_file(
            object_key("videos", movie_id, f"v{version}", DOWNLOAD_FILE), package.download.path
        )
    renamed = [
        dataclasses.replace(r, name=folder)
        for r, (_, folder) in zip(package.renditions, names, strict=True)
    ]
    await origin.put_bytes(
        object_key("videos", movie_id, f"v{version}", "master.m3u8"),
        render_master_playlist(renamed).encode(),
    )
    report.fraction(1.0)


async def _delete_version(
    origin: OriginStore, movie_id: str, folders: list[str], master_key: str | None
) -> None:
    """Best effort: delete rendition folders and a versioned master's folder."""
    prefixes = [object_key("videos", movie_id, folder) for folder in folders]
    if master_key and master_key.count("/") == 3:  # videos/{id}/v{n}/master.m3u8
        prefixes.append(master_key.rsplit("/", 1)[0])
    for prefix in prefixes:
        try:
            await origin.delete_prefix(prefix)
        except OriginError as err:
            log.warning("could not delete %s from the origin: %s", prefix, err)


class VersionConflict(Exception):
    """Another ingest switched the film while this one was encoding."""


async def _switch(
    pool: asyncpg.Pool | asyncpg.Connection,
    movie_id: str,
    version: int,
    package: HlsPackage,
    *,
    publish: bool | None,
) -> tuple[list[str], str | None]:
    """Point the film at version ``version``; returns the old folders and master key."""
    mid = uuid.UUID(movie_id)
    names = dict(_version_names(version, package))
    async with contextlib.AsyncExitStack() as stack:
        conn: asyncpg.Connection = (
            await stack.enter_async_context(pool.acquire())
            if isinstance(pool, asyncpg.Pool)
            else pool
        )
        await stack.enter_async_context(conn.transaction())
        row = await conn.fetchrow(
            "SELECT version, master_key FROM movies WHERE id = $1 FOR UPDATE", mid
        )
        if row is None or row["version"] != version - 1:
            raise VersionConflict(f"film {movie_id} changed while it was encoded")
        old = [
            r["name"]
            for r in await conn.fetch("SELECT name FROM renditions WHERE movie_id = $1", mid)
        ]
        await conn.execute("DELETE FROM renditions WHERE movie_id = $1", mid)
        for r in package.renditions:
            await conn.execute(
                """INSERT INTO renditions (movie_id, name, width, height, bandwidth, codecs,
                       segment_count) VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                mid,
                names[r.name],
                r.width or None,
                r.height or None,
                r.bandwidth,
                r.codecs,
                r.segment_count,
            )
        await conn.execute(
            """UPDATE movies SET duration_s = $2, master_key = $3, poster_key = $4,
                      version = $5, updated_at = now(),
                      status = CASE WHEN $6::boolean IS NULL THEN
                                        CASE WHEN status = 'processing' THEN 'draft'
                                             ELSE status END
                                    WHEN $6 THEN 'published' ELSE 'draft' END,
                      published_at = CASE WHEN $6 THEN coalesce(published_at, now())
                                          ELSE published_at END,
                      download_key = $7, download_bytes = $8
                WHERE id = $1""",
            mid,
            package.duration_s,
            object_key("videos", movie_id, f"v{version}", "master.m3u8"),
            object_key("videos", movie_id, "poster.jpg"),
            version,
            publish,
            object_key("videos", movie_id, f"v{version}", DOWNLOAD_FILE)
            if package.download
            else None,
            package.download.size if package.download else None,
        )
    return old, row["master_key"]


async def ingest_movie(
    pool: asyncpg.Pool | asyncpg.Connection,
    origin: OriginStore,
    movie_id: str,
    source: Path,
    options: IngestOptions,
    *,
    report: Reporter | None = None,
    publish: bool | None = None,
) -> HlsPackage:
    """The ingest pipeline of a film: probe and refuse, encode the ladder, upload it as
    a new version, switch, delete the old version (module docstring). ``publish``:
    True publishes, False makes it a draft, None keeps the film's status (a new film in
    ``processing`` becomes a draft). Raises `SourceRefused`, `FfmpegError`,
    `OriginError` or `VersionConflict`; nothing new is left on the origin then."""
    report = report or Reporter()
    version = 1 + await pool.fetchval(
        "SELECT version FROM movies WHERE id = $1", uuid.UUID(movie_id)
    )
    await asyncio.to_thread(options.work_dir.mkdir, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=options.work_dir) as tmp:
        out = Path(tmp) / "package"
        package = await _encode(source, out, options, report, download=True)
        await report.enter("uploading")
        new_folders = [folder for _, folder in _version_names(version, package)]
        new_master = object_key("videos", movie_id, f"v{version}", "master.m3u8")
        try:
            # a clean slate: an earlier attempt killed mid-upload left some of these
            await _delete_version(origin, movie_id, new_folders, new_master)
            await _upload_version(origin, movie_id, version, out, package, report)
            old_folders, old_master = await _switch(
                pool, movie_id, version, package, publish=publish
            )
        except BaseException:
            await asyncio.shield(_delete_version(origin, movie_id, new_folders, new_master))
            raise
    await _delete_version(origin, movie_id, old_folders, old_master)
    log.info("film %s is now version %d (%d renditions)", movie_id, version, len(new_folders))
    return package


async def ingest_ad(
    pool: asyncpg.Pool | asyncpg.Connection,
    origin: OriginStore,
    ad_id: str,
    source: Path,
    options: IngestOptions,
    *,
    report: Reporter | None = None,
) -> HlsPackage:
    """The same pipeline for an ad creative: the film ladder (audio-only included) under
    ``ads/{ad_id}/``; the creative becomes ``ready``. On failure its objects are
    deleted (`SourceRefused`, `FfmpegError`, `OriginError` propagate)."""
    report = report or Reporter()
    await asyncio.to_thread(options.work_dir.mkdir, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=options.work_dir) as tmp:
        out = Path(tmp) / "package"
        package = await _encode(source, out, options, report, download=False)
        await report.enter("uploading")
        prefix = object_key("ads", ad_id)
        try:
            await origin.delete_prefix(prefix)
            await upload_ad_package(origin, ad_id, out)
            await record_ad_package(pool, ad_id, package)
        except BaseException:
            with contextlib.suppress(OriginError):
                await asyncio.shield(origin.delete_prefix(prefix))
            raise
    return package


async def ingest_file(
    conn: asyncpg.Connection,
    origin: OriginStore,
    source: Path,
    *,
    title: str,
    work_dir: Path,
    publish: bool,
    on_progress: Callable[[float], None] | None = None,
    max_source_seconds: float = 24 * 3600,
    preset: str = "veryfast",
) -> str:
    """``kush ingest``: a new film from a local file, through `ingest_movie` (the code
    ingest jobs run); returns the film's id. The film row is removed on failure."""
    movie_id = str(
        await conn.fetchval(
            """INSERT INTO movies (slug, title, status) VALUES ($1, $2, 'processing')
               RETURNING id""",
            slug_for(title),
            title,
        )
    )
    options = IngestOptions(work_dir=work_dir, max_source_seconds=max_source_seconds, preset=preset)
    try:
        await ingest_movie(
            conn,
            origin,
            movie_id,
            source,
            options,
            report=Reporter(progress=on_progress),
            publish=publish,
        )
    except BaseException:
        await conn.execute("DELETE FROM movies WHERE id = $1", uuid.UUID(movie_id))
        raise
    return movie_id

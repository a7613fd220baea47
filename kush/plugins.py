"""Registers the start-up hooks and extra commands of the other packages."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kush import cli
from kush.settings import Settings

DEMO_AD_SECONDS = 12.0


async def _ensure_keys(settings: Settings, conn: Any) -> None:
    from tokens.keys import parse_master_key
    from tokens.keystore import ensure_signing_keys

    await ensure_signing_keys(conn, parse_master_key(settings.resolve_master_key()))


async def _seed_demo_film(settings: Settings, conn: Any) -> None:
    if not settings.seed_demo_film:
        return
    from admin.publish import seed_demo_ads, seed_demo_film
    from gateway.origins import create_origin

    origin = create_origin(settings)
    try:
        await seed_demo_film(
            conn,
            origin,
            duration_s=settings.demo_film_seconds,
            work_dir=settings.data_dir / "work",
        )
        await seed_demo_ads(
            conn, origin, duration_s=DEMO_AD_SECONDS, work_dir=settings.data_dir / "work"
        )
    finally:
        await origin.close()


def _ingest_parser(sub: Any) -> None:
    ingest = sub.add_parser("ingest", help="transcode a video file into the HLS ladder")
    ingest.add_argument("file", help="the source video")
    ingest.add_argument("--title", help="film title (default: the file name)")
    ingest.add_argument("--draft", action="store_true", help="do not publish it yet")


def _ingest_command(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from admin.ingest import IngestError
    from admin.publish import ingest_file
    from gateway.origins import create_origin
    from kush import db

    source = Path(args.file)
    if not source.is_file():
        print(f"kush ingest: no such file: {source}", file=sys.stderr)
        return 2

    async def run() -> int:
        conn = await db.connect(settings)
        origin = create_origin(settings)
        try:
            await db.migrate(conn, settings.db_schema)
            movie_id = await ingest_file(
                conn,
                origin,
                source,
                title=args.title or source.stem,
                work_dir=settings.data_dir / "work",
                publish=not args.draft,
                on_progress=lambda f: print(f"\r  transcoding {f:4.0%}", end="", flush=True),
            )
        except IngestError as err:
            print(f"\nkush ingest: {err}", file=sys.stderr)
            return 1
        finally:
            await origin.close()
            await conn.close()
        print(f"\n{'draft' if args.draft else 'published'}: {movie_id}")
        return 0

    return cli._run(run())


def _keys_parser(sub: Any) -> None:
    keys = sub.add_parser("keys", help="signing keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    keys_sub.add_parser("rotate", help="make new current keys; old ones verify until expiry")


def _keys_command(settings: Settings, args: argparse.Namespace) -> int:
    from kush import db
    from tokens.keys import parse_master_key
    from tokens.keystore import ensure_signing_keys, rotate_keys

    async def rotate() -> int:
        master = parse_master_key(settings.resolve_master_key())
        conn = await db.connect(settings)
        try:
            await db.migrate(conn, settings.db_schema)
            if not await ensure_signing_keys(conn, master):
                await rotate_keys(conn, master)
            rows = await conn.fetch(
                """SELECT kid, purpose FROM signing_keys WHERE retired_at IS NULL
                   ORDER BY purpose"""
            )
        finally:
            await conn.close()
        for row in rows:
            print(f"current {row['purpose']} key: {row['kid']}")
        return 0

    return cli._run(rotate())


def _register_jobs() -> None:
    from gateway.ads.writer import ad_events_job
    from kush import worker

    if ad_events_job not in worker.JOBS:
        worker.JOBS.append(ad_events_job)


_register_jobs()
cli.PREPARE_HOOKS.append(_ensure_keys)
cli.DEMO_SEED_HOOKS.append(_seed_demo_film)
cli.EXTRA_COMMANDS.append(_keys_parser)
cli.COMMAND_HANDLERS["keys"] = _keys_command
cli.EXTRA_COMMANDS.append(_ingest_parser)
cli.COMMAND_HANDLERS["ingest"] = _ingest_command

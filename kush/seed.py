"""What ``kush up`` prepares before the services start: migrations, signing keys and,
in demo mode, the demo accounts, the demo film and the demo ad."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from admin.publish import seed_demo_ads, seed_demo_film
from kush.progress import ProgressReporter
from origin.factory import create_origin
from runtime import db
from runtime.settings import Settings, SettingsError, demo_problems
from tokens.keys import parse_master_key
from tokens.passwords import hash_password, verify_password
from tokens.service.keystore import ensure_signing_keys

log = logging.getLogger(__name__)

DEMO_AD_SECONDS = 12.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoAccount:
    """One seeded account (DESIGN.md "Command line")."""

    email: str
    plan: str
    role: str = "user"


DEMO_ACCOUNTS: tuple[DemoAccount, ...] = (
    DemoAccount(email="free@demo.kush", plan="free"),
    DemoAccount(email="basic@demo.kush", plan="basic"),
    DemoAccount(email="premium@demo.kush", plan="premium"),
    DemoAccount(email="admin@demo.kush", plan="premium", role="admin"),
)


async def seed_demo_accounts(conn: asyncpg.Connection, password: str) -> int:
    """Create the demo accounts if missing (idempotent); returns how many were created.

    An existing account keeps its data; its password is reset to the demo password only
    if it no longer matches, so ``KUSH_DEMO_PASSWORD`` changes take effect.
    """
    created = 0
    for account in DEMO_ACCOUNTS:
        async with conn.transaction():
            row = await conn.fetchrow(
                "SELECT id, password_hash FROM users WHERE email = $1", account.email
            )
            if row is None:
                user_id = await conn.fetchval(
                    """INSERT INTO users (email, password_hash, role, birth_year, country)
                       VALUES ($1, $2, $3, 1990, 'UG') RETURNING id""",
                    account.email,
                    hash_password(password),
                    account.role,
                )
                created += 1
            else:
                user_id = row["id"]
                if not verify_password(row["password_hash"], password):
                    await conn.execute(
                        "UPDATE users SET password_hash = $2 WHERE id = $1",
                        user_id,
                        hash_password(password),
                    )
            if account.plan != "free":
                await conn.execute(
                    """INSERT INTO subscriptions (user_id, plan_id, status, provider)
                       SELECT $1, $2, 'active', 'demo'
                       WHERE NOT EXISTS (
                           SELECT 1 FROM subscriptions WHERE user_id = $1
                             AND status IN ('active', 'trialing', 'past_due'))
                       ON CONFLICT (user_id, provider) DO NOTHING""",
                    user_id,
                    account.plan,
                )
    if created:
        log.info("seeded %d demo accounts", created)
    return created


async def prepare(settings: Settings) -> None:
    """Migrations, signing keys and (in demo mode) demo data: what ``kush up`` runs first.

    Demo data (accounts with a published password) is only ever written to embedded or
    loopback services: settings that point elsewhere are refused before connecting,
    even when they were built in code rather than by :meth:`Settings.from_env`.
    """
    problems = demo_problems(settings)
    if problems:
        raise SettingsError(*problems)
    conn = await db.connect(settings)
    try:
        await db.migrate(conn, settings.db_schema)
        await ensure_signing_keys(conn, parse_master_key(settings.resolve_master_key()))
        if settings.is_demo:
            await seed_demo_accounts(conn, settings.demo_password)
            await seed_demo_media(settings, conn)
    finally:
        await conn.close()


async def seed_demo_media(settings: Settings, conn: asyncpg.Connection) -> None:
    """The generated demo film and demo ad, unless ``KUSH_SEED_DEMO_FILM`` turns them off."""
    if not settings.seed_demo_film:
        return
    origin = create_origin(settings)
    work_dir = settings.data_dir / "work"
    try:
        with ProgressReporter("demo film", media_seconds=settings.demo_film_seconds) as progress:
            await seed_demo_film(
                conn,
                origin,
                duration_s=settings.demo_film_seconds,
                work_dir=work_dir,
                on_progress=progress,
            )
        await seed_demo_ads(conn, origin, duration_s=DEMO_AD_SECONDS, work_dir=work_dir)
    finally:
        await origin.close()

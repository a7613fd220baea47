"""Demo data for ``kush up`` in demo mode: the four demo accounts with their plans."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from tokens.passwords import hash_password, verify_password

log = logging.getLogger(__name__)


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
                             AND status IN ('active', 'trialing', 'past_due'))""",
                    user_id,
                    account.plan,
                )
    if created:
        log.info("seeded %d demo accounts", created)
    return created

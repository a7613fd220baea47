"""The admin service's SQL about accounts and the audit log."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


@dataclass(frozen=True, slots=True, kw_only=True)
class UserRecord:
    """An account as support sees it."""

    id: str
    email: str
    role: str
    plan: str
    display_name: str | None
    birth_year: int | None
    country: str | None
    created_at: datetime
    disabled_at: datetime | None
    erased_at: datetime | None


_USER_SQL = """
SELECT u.id, u.email, u.role, u.display_name, u.birth_year, u.country, u.created_at,
       u.disabled_at, u.erased_at,
       coalesce((SELECT s.plan_id FROM subscriptions s
                  WHERE s.user_id = u.id AND s.status IN ('active', 'trialing', 'past_due')
                  ORDER BY s.created_at DESC LIMIT 1), 'free') AS plan
  FROM users u"""


def _user(row: Any) -> UserRecord:
    return UserRecord(
        id=str(row["id"]),
        email=row["email"],
        role=row["role"],
        plan=row["plan"],
        display_name=row["display_name"],
        birth_year=row["birth_year"],
        country=row["country"],
        created_at=row["created_at"],
        disabled_at=row["disabled_at"],
        erased_at=row["erased_at"],
    )


async def get_user(conn: Conn, user_id: uuid.UUID, *, lock: bool = False) -> UserRecord | None:
    """One account (``lock``: hold its row until the transaction ends)."""
    if (
        lock
        and await conn.fetchval("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", user_id) is None
    ):
        return None
    row = await conn.fetchrow(_USER_SQL + " WHERE u.id = $1", user_id)
    return None if row is None else _user(row)


@dataclass(frozen=True, slots=True)
class UserPage:
    """A page of accounts, newest first, and where the next starts (None: the last)."""

    items: list[UserRecord]
    next_after: tuple[datetime, str] | None


async def list_users(
    conn: Conn, *, q: str, role: str | None, after: tuple[datetime, str] | None, limit: int
) -> UserPage:
    """Accounts, newest first, whose email contains ``q`` (or whose id is ``q``)."""
    where: list[str] = []
    args: list[Any] = []
    if q:
        args.append(q.lower())
        where.append(f"(u.email LIKE '%' || ${len(args)} || '%' OR u.id::text = ${len(args)})")
    if role:
        args.append(role)
        where.append(f"u.role = ${len(args)}")
    if after is not None:
        args.extend([after[0], uuid.UUID(after[1])])
        where.append(f"(u.created_at, u.id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit + 1)
    sql = _USER_SQL + (" WHERE " + " AND ".join(where) if where else "")
    sql += f" ORDER BY u.created_at DESC, u.id DESC LIMIT ${len(args)}"
    rows = await conn.fetch(sql, *args)
    next_after = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_after = (last["created_at"], str(last["id"]))
    return UserPage([_user(r) for r in rows[:limit]], next_after)


async def set_role(conn: asyncpg.Connection, user_id: uuid.UUID, role: str) -> None:
    """Change an account's role."""
    await conn.execute("UPDATE users SET role = $2 WHERE id = $1", user_id, role)


async def set_disabled(conn: asyncpg.Connection, user_id: uuid.UUID, disabled: bool) -> None:
    """Disable an account now, or enable it again."""
    await conn.execute(
        """UPDATE users SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now())
                                              ELSE NULL END
            WHERE id = $1""",
        user_id,
        disabled,
    )


async def live_logins(conn: Conn, user_id: uuid.UUID) -> list[str]:
    """The ids of an account's logins (refresh families) that are not revoked."""
    rows = await conn.fetch(
        "SELECT id FROM refresh_families WHERE user_id = $1 AND revoked_at IS NULL", user_id
    )
    return [str(r["id"]) for r in rows]


# ------------------------------------------------------------------ the audit log


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    """One line of the audit log."""

    id: int
    at: datetime
    actor_id: str | None
    actor_email: str | None
    action: str
    target_type: str | None
    target_id: str | None
    details: str
    request_id: str | None


async def audit_page(
    conn: Conn,
    *,
    actor: uuid.UUID | None,
    target: str | None,
    action: str | None,
    before_id: int | None,
    limit: int,
) -> list[AuditRecord]:
    """Audit lines, newest first, filtered by who, on what and which action; lines
    older than ``before_id`` (the cursor)."""
    where: list[str] = []
    args: list[Any] = []
    for column, value in (("a.actor_id", actor), ("a.target_id", target), ("a.action", action)):
        if value is not None:
            args.append(value)
            where.append(f"{column} = ${len(args)}")
    if before_id is not None:
        args.append(before_id)
        where.append(f"a.id < ${len(args)}")
    args.append(limit)
    sql = (
        "SELECT a.*, u.email AS actor_email FROM audit_log a "  # noqa: S608 (fixed names)
        "LEFT JOIN users u ON u.id = a.actor_id"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY a.id DESC LIMIT ${len(args)}"
    )
    rows = await conn.fetch(sql, *args)
    return [
        AuditRecord(
            id=r["id"],
            at=r["at"],
            actor_id=str(r["actor_id"]) if r["actor_id"] else None,
            actor_email=r["actor_email"],
            action=r["action"],
            target_type=r["target_type"],
            target_id=r["target_id"],
            details=r["details"],
            request_id=r["request_id"],
        )
        for r in rows
    ]

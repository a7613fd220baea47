"""``kush users create``: accounts made by an operator (the first production admin).

Accounts are inserted by :func:`tokens.service.auth.create_account`, the code behind
registration, so the email rules, password policy and argon2id hashing are the same.
A paid plan is granted as an active subscription with provider ``admin``; every
creation or role change is written to the audit log.
"""

from __future__ import annotations

import getpass
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TextIO

import asyncpg
import orjson

from runtime import db
from runtime.errors import ApiError
from runtime.settings import Settings
from tokens.errors import InvalidEmail
from tokens.jwt import Plan, Role
from tokens.passwords import normalize_email
from tokens.service.auth import create_account

GENERATED_PASSWORD_BYTES: Final = 18  # 24 URL-safe characters, 144 bits
AUDIT_SOURCE: Final = "kush users create"


class UserCommandError(Exception):
    """A problem the operator can fix; printed as one line, exit status 1."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UserResult:
    """What ``kush users create`` did."""

    user_id: str
    email: str
    role: str
    plan: str
    created: bool


def obtain_password(
    *,
    from_stdin: bool,
    stdin: TextIO,
    ask: Callable[[str], str] = getpass.getpass,
) -> tuple[str, bool]:
    """The new account's password and whether it was generated.

    ``--password-stdin`` reads it from standard input (one trailing newline dropped);
    on a terminal it is asked twice without echo; otherwise a strong random one is made
    (and printed once by the caller).
    """
    if from_stdin:
        text = stdin.read()
        return text.removesuffix("\n").removesuffix("\r"), False
    if stdin.isatty():
        first = ask("Password: ")
        if first != ask("Repeat password: "):
            raise UserCommandError("the two passwords differ")
        return first, False
    return secrets.token_urlsafe(GENERATED_PASSWORD_BYTES), True


async def _grant_plan(conn: asyncpg.Connection, user_id: str, plan: str) -> str:
    """Give a paid plan as an active ``admin`` subscription unless the account already
    has a live one; returns the account's plan afterwards."""
    live = await conn.fetchval(
        """SELECT plan_id FROM subscriptions WHERE user_id = $1::uuid
             AND status IN ('active', 'trialing', 'past_due')""",
        user_id,
    )
    if live is not None:
        return str(live)
    if plan != "free":
        await conn.execute(
            """INSERT INTO subscriptions (user_id, plan_id, status, provider)
               VALUES ($1::uuid, $2, 'active', 'admin')
               ON CONFLICT (user_id, provider) DO UPDATE
                  SET plan_id = EXCLUDED.plan_id, status = 'active', ends_at = NULL,
                      updated_at = now()""",
            user_id,
            plan,
        )
    return plan


async def create_user(
    settings: Settings,
    email: str,
    *,
    role: Role,
    plan: Plan,
    password: Callable[[], str],
    update_role: bool = False,
) -> UserResult:
    """Create the account (or, with ``update_role``, change an existing one's role).

    ``password`` is called only when an account is created, so ``--update-role`` on an
    existing account never asks for one.
    """
    try:
        normal = normalize_email(email)
    except InvalidEmail as err:
        raise UserCommandError(str(err)) from err
    conn = await db.connect(settings)
    try:
        await db.migrate(conn, settings.db_schema)
        existing = await conn.fetchrow("SELECT id, role FROM users WHERE email = $1", normal)
        if existing is not None and not update_role:
            raise UserCommandError(
                f"an account with the email {normal} exists (use --update-role to change its role)"
            )
        secret = password() if existing is None else ""
        async with conn.transaction():
            if existing is None:
                try:
                    user_id = await create_account(conn, normal, secret, role=role)
                except ApiError as err:
                    raise UserCommandError(err.message) from err
                action = "user.create"
            else:
                user_id = str(existing["id"])
                await conn.execute("UPDATE users SET role = $2 WHERE id = $1", existing["id"], role)
                action = "user.role_update"
            granted = await _grant_plan(conn, user_id, plan)
            details = {"role": role, "plan": granted, "via": AUDIT_SOURCE}
            if existing is not None:
                details["previous_role"] = existing["role"]
            await db.audit(
                conn,
                action=action,
                target_type="user",
                target_id=user_id,
                details=orjson.dumps(details).decode(),
            )
    finally:
        await conn.close()
    return UserResult(
        user_id=user_id, email=normal, role=role, plan=granted, created=existing is None
    )


def report(result: UserResult, generated_password: str | None, out: TextIO = sys.stdout) -> None:
    """Tell the operator what happened (the generated password, once)."""
    verb = "created" if result.created else "updated"
    print(
        f"{verb} {result.email} (id {result.user_id}) role={result.role} plan={result.plan}",
        file=out,
    )
    if generated_password is not None:
        print(f"password: {generated_password}", file=out)
        print("(shown once: store it now, or change it after signing in)", file=out)

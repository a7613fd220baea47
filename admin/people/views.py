"""Admin API for people and the law: accounts (find, change role, disable), data
requests (export, erasure) and the audit log.

Reads (accounts, exports, the audit log): ``admin`` and ``moderator``; changes (roles,
disabling, erasure): ``admin``. Every change, and every export of someone's data, writes
an audit line. A role change or a disabled account revokes the account's logins at once,
so no token carries the old role or outlives the decision.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from aiohttp import web
from pydantic import Field, StringConstraints

from admin.access import ADMIN, READERS, ROLE_ERRORS, Actor, actor_of, record
from admin.people import repository as repo
from runtime.api import (
    BodyModel,
    DateTimeStr,
    PathParam,
    QueryModel,
    ReplyModel,
    Routes,
    UuidStr,
    parse_body,
    parse_query,
)
from runtime.errors import BadRequest, Conflict, NotFound
from runtime.paging import next_cursor, page_after
from runtime.web import json_response, pg_key, redis_key, rkeys_key
from tokens.service.privacy import UserExport, erase_user, export_user, parse_user_id
from tokens.service.session_endings import end_sessions_of
from tokens.service.views import SIGNED_IN, auth_key, require_role

routes = Routes(tags=("people",))
USER_ID = {"user_id": PathParam("The account's id", "uuid")}
NO_USER = {404: "No such account (`user_not_found`)"}
DISABLED_REASON = "account_disabled"

RoleName = Literal["user", "moderator", "admin"]

# ------------------------------------------------------------------ models


class UsersQuery(QueryModel):
    """Find accounts, newest first."""

    q: Annotated[str, StringConstraints(strip_whitespace=True, max_length=254)] = Field(
        default="", description="Part of the email, or the account's id"
    )
    role: RoleName | None = None
    cursor: str | None = Field(default=None, description="`next_cursor` of the previous page")
    limit: Annotated[int, Field(ge=1, le=200)] = 50


class UserChange(BodyModel):
    """Change a role or disable an account (absent: unchanged). Either revokes the
    account's logins: it signs in again with the new role, or cannot."""

    role: RoleName | None = None
    disabled: bool | None = Field(default=None, description="true: disable now; false: enable")


class AdminUser(ReplyModel):
    """An account."""

    id: UuidStr
    email: str
    role: RoleName
    plan: str
    display_name: str | None
    birth_year: int | None
    country: str | None
    created_at: DateTimeStr
    disabled_at: DateTimeStr | None
    erased_at: DateTimeStr | None


class AdminUserPage(ReplyModel):
    """A page of accounts."""

    items: list[AdminUser]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last")


class ErasureReport(ReplyModel):
    """What the erasure did."""

    user_id: UuidStr
    already_erased: bool = Field(description="It had been erased before: nothing was left")
    logins_revoked: int
    sessions_ended: int
    progress_deleted: int = Field(description="Watch-progress rows deleted")


class AuditQuery(QueryModel):
    """Filter the audit log, newest first."""

    actor: uuid.UUID | None = Field(default=None, description="Who did it (an account id)")
    target: Annotated[str, StringConstraints(max_length=200)] | None = Field(
        default=None, description="What it was done to: a film, user or campaign id, a slug"
    )
    action: Annotated[str, StringConstraints(max_length=100)] | None = Field(
        default=None, description="e.g. `movie.takedown`, `user.erase`"
    )
    cursor: str | None = Field(default=None, description="`next_cursor` of the previous page")
    limit: Annotated[int, Field(ge=1, le=200)] = 50


class AuditEntry(ReplyModel):
    """One change: who, what, when, and the target before and after."""

    id: int
    at: DateTimeStr
    actor_id: UuidStr | None = Field(description="null: done by the system or a command")
    actor_email: str | None
    action: str
    target_type: str | None
    target_id: str | None
    details: dict[str, Any] = Field(description="`before`, `after`, `reason`... per action")
    request_id: str | None


class AuditPage(ReplyModel):
    """A page of the audit log."""

    items: list[AuditEntry]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last")


# ------------------------------------------------------------------ helpers


def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _user(u: repo.UserRecord) -> AdminUser:
    return AdminUser.model_validate(
        {
            "id": u.id,
            "email": u.email,
            "role": u.role,
            "plan": u.plan,
            "display_name": u.display_name,
            "birth_year": u.birth_year,
            "country": u.country,
            "created_at": u.created_at.isoformat(),
            "disabled_at": _ts(u.disabled_at),
            "erased_at": _ts(u.erased_at),
        }
    )


async def _load(conn: Any, user_id: uuid.UUID, *, lock: bool = False) -> repo.UserRecord:
    found = await repo.get_user(conn, user_id, lock=lock)
    if found is None:
        raise NotFound("No such user", code="user_not_found")
    return found


def _not_self(actor: Actor, user_id: uuid.UUID, what: str) -> None:
    if actor.id == user_id:
        raise Conflict(f"You cannot {what} your own account", code="cannot_change_self")


# ------------------------------------------------------------------ accounts


@routes.get(
    "/admin/v1/users",
    summary="Find accounts by email or id, newest first (admin, moderator)",
    query=UsersQuery,
    replies={200: AdminUserPage},
    auth=SIGNED_IN,
    errors={**ROLE_ERRORS, 400: "Malformed `cursor` (`invalid_cursor`)"},
)
async def list_users(request: web.Request) -> web.Response:
    """GET /admin/v1/users?q=&role=&cursor=&limit= -> {items, next_cursor}."""
    await require_role(request, READERS)
    query = parse_query(request, UsersQuery)
    after = page_after(query.cursor)
    page = await repo.list_users(
        request.app[pg_key], q=query.q, role=query.role, after=after, limit=query.limit
    )
    return json_response(
        AdminUserPage(
            items=[_user(u) for u in page.items], next_cursor=next_cursor(page.next_after)
        )
    )


@routes.get(
    "/admin/v1/users/{user_id}",
    summary="One account (admin, moderator)",
    replies={200: AdminUser},
    auth=SIGNED_IN,
    errors={**ROLE_ERRORS, **NO_USER},
    path_params=USER_ID,
)
async def get_user(request: web.Request) -> web.Response:
    """GET /admin/v1/users/{user_id}."""
    await require_role(request, READERS)
    user_id = parse_user_id(request.match_info["user_id"])
    return json_response(_user(await _load(request.app[pg_key], user_id)))


@routes.patch(
    "/admin/v1/users/{user_id}",
    summary="Change an account's role, or disable it; its logins are revoked (admin)",
    body=UserChange,
    replies={200: AdminUser},
    auth=SIGNED_IN,
    errors={
        **ROLE_ERRORS,
        **NO_USER,
        409: "Your own account (`cannot_change_self`), or an erased one (`user_erased`)",
    },
    path_params=USER_ID,
)
async def update_user(request: web.Request) -> web.Response:
    """PATCH /admin/v1/users/{user_id} {role?, disabled?} -> the account."""
    claims = await require_role(request, ADMIN)
    user_id = parse_user_id(request.match_info["user_id"])
    change = await parse_body(request, UserChange)
    actor = actor_of(request, claims)
    pool = request.app[pg_key]
    async with pool.acquire() as conn, conn.transaction():
        before = await _load(conn, user_id, lock=True)
        old = {"role": before.role, "disabled": before.disabled_at is not None}
        new = dict(old)
        if change.role is not None:
            new["role"] = change.role
        if change.disabled is not None:
            new["disabled"] = change.disabled
        changed = sorted(k for k in new if new[k] != old[k])
        if changed:
            _not_self(actor, user_id, "change")
            if before.erased_at is not None:
                raise Conflict("The account was erased", code="user_erased")
            if "role" in changed:
                await repo.set_role(conn, user_id, str(new["role"]))
            if "disabled" in changed:
                await repo.set_disabled(conn, user_id, bool(new["disabled"]))
            await record(
                conn,
                actor,
                "user.update",
                "user",
                str(user_id),
                before={k: old[k] for k in changed},
                after={k: new[k] for k in changed},
            )
    if changed:
        await _sign_out(request, user_id, end_sessions=bool(new["disabled"]))
    return json_response(_user(await _load(pool, user_id)))


async def _sign_out(request: web.Request, user_id: uuid.UUID, *, end_sessions: bool) -> None:
    """Revoke every login of an account (its access tokens are refused at once) and,
    for a disabled account, end its playback."""
    app = request.app
    auth = app[auth_key]
    for family in await repo.live_logins(app[pg_key], user_id):
        await auth.revoke_family(family, "account_changed")
    if end_sessions:
        await end_sessions_of(
            app[pg_key],
            app[redis_key],
            app[rkeys_key],
            owner="user",
            owner_id=str(user_id),
            reason=DISABLED_REASON,
        )


# ------------------------------------------------------------------ data requests


@routes.get(
    "/admin/v1/users/{user_id}/export",
    summary="Everything we hold about an account, as JSON (a data access request; "
    "admin, moderator)",
    description="The account, subscriptions, mobile money payments, logins, playback "
    "sessions, watch progress, ad events and the audit lines about the person. The "
    "export itself is audited.",
    replies={200: UserExport},
    auth=SIGNED_IN,
    errors={**ROLE_ERRORS, **NO_USER},
    path_params=USER_ID,
)
async def export_account(request: web.Request) -> web.Response:
    """GET /admin/v1/users/{user_id}/export -> the person's data."""
    claims = await require_role(request, READERS)
    user_id = parse_user_id(request.match_info["user_id"])
    pool = request.app[pg_key]
    document = await export_user(pool, str(user_id))
    await record(pool, actor_of(request, claims), "user.export", "user", str(user_id))
    return json_response(document, headers={"Cache-Control": "no-store"})


@routes.delete(
    "/admin/v1/users/{user_id}",
    summary="Erase an account's personal data (a GDPR erasure request; admin)",
    description="The account is disabled and anonymised (the email becomes a tombstone, "
    "the password hash, name, birth year and country are cleared), its watch progress "
    "deleted, its sessions' addresses and its mobile money numbers cleared; every login "
    "is revoked and every live session ended. Subscriptions, payments, ad delivery counts "
    "and the audit log are kept, pointing at the anonymised account. Erasing again "
    "changes nothing.",
    replies={200: ErasureReport},
    auth=SIGNED_IN,
    errors={**ROLE_ERRORS, **NO_USER, 409: "Your own account (`cannot_change_self`)"},
    path_params=USER_ID,
)
async def erase_account(request: web.Request) -> web.Response:
    """DELETE /admin/v1/users/{user_id} -> what was erased."""
    claims = await require_role(request, ADMIN)
    user_id = parse_user_id(request.match_info["user_id"])
    actor = actor_of(request, claims)
    _not_self(actor, user_id, "erase")
    app = request.app
    done = await erase_user(app[auth_key], app[redis_key], app[rkeys_key], str(user_id))
    report = ErasureReport(
        user_id=done.user_id,
        already_erased=done.already_erased,
        logins_revoked=done.logins_revoked,
        sessions_ended=done.sessions_ended,
        progress_deleted=done.progress_deleted,
    )
    if not done.already_erased:
        await record(app[pg_key], actor, "user.erase", "user", done.user_id, **report.model_dump())
    return json_response(report)


# ------------------------------------------------------------------ the audit log


@routes.get(
    "/admin/v1/audit",
    summary="The audit log, newest first: who changed what, when, before and after "
    "(admin, moderator)",
    query=AuditQuery,
    replies={200: AuditPage},
    auth=SIGNED_IN,
    errors={**ROLE_ERRORS, 400: "Malformed `cursor` (`invalid_cursor`)"},
)
async def list_audit(request: web.Request) -> web.Response:
    """GET /admin/v1/audit?actor=&target=&action=&cursor=&limit= -> {items, next_cursor}."""
    await require_role(request, READERS)
    query = parse_query(request, AuditQuery)
    before_id = None
    if query.cursor is not None:
        if not query.cursor.isdigit() or len(query.cursor) > 19:
            raise BadRequest("Malformed cursor", code="invalid_cursor")
        before_id = int(query.cursor)
    rows = await repo.audit_page(
        request.app[pg_key],
        actor=query.actor,
        target=query.target,
        action=query.action,
        before_id=before_id,
        limit=query.limit + 1,
    )
    items = [
        AuditEntry(
            id=r.id,
            at=r.at.isoformat(),
            actor_id=r.actor_id,
            actor_email=r.actor_email,
            action=r.action,
            target_type=r.target_type,
            target_id=r.target_id,
            details=orjson.loads(r.details),
            request_id=r.request_id,
        )
        for r in rows[: query.limit]
    ]
    following = str(items[-1].id) if len(rows) > query.limit else None
    return json_response(AuditPage(items=items, next_cursor=following))


def setup_routes(app: web.Application) -> None:
    """Mount the people, data-request and audit API."""
    routes.mount(app)

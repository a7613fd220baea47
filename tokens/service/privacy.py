"""Personal data of an account: the export (everything we hold about a person) and the
erasure (GDPR art. 15 and 17), shared by the admin service and the viewer's own
``GET /v1/me/export`` so that both always tell the same story.

Erasure keeps the account row, anonymised, so the records the law or the business must
keep (subscriptions and payments, ad delivery counts, the audit log) keep their
references without pointing at a person: the email becomes a tombstone, the password
hash, name, birth year and country are cleared, watch progress is deleted, playback
sessions lose their address, user agent and location, mobile money payments their
paying number, every login is revoked and every
live session ended.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from pydantic import Field
from redis.asyncio import Redis

from runtime.api import DateStr, DateTimeStr, ReplyModel, UuidStr
from runtime.errors import NotFound
from runtime.redis import Keys
from tokens.service.auth import AuthService
from tokens.service.session_endings import end_sessions_of

ERASED_EMAIL_DOMAIN = "erased.invalid"
ERASED_REASON = "account_erased"

# ------------------------------------------------------------------ the export


class ExportedAccount(ReplyModel):
    """The account as stored."""

    id: UuidStr
    email: str
    role: str
    plan: str = Field(description="The plan of the live subscription, else `free`")
    display_name: str | None
    birth_year: int | None
    country: str | None
    stripe_customer_id: str | None
    created_at: DateTimeStr
    disabled_at: DateTimeStr | None
    erased_at: DateTimeStr | None


class ExportedSubscription(ReplyModel):
    """A subscription, live or past."""

    id: UuidStr
    plan_id: str
    status: str
    provider: str
    current_period_end: DateTimeStr | None
    cancel_at_period_end: bool
    created_at: DateTimeStr
    updated_at: DateTimeStr


class ExportedLogin(ReplyModel):
    """A login (refresh-token family): when, from which kind of client, when it ended."""

    id: UuidStr
    client: str
    created_at: DateTimeStr
    revoked_at: DateTimeStr | None
    revoked_reason: str | None


class ExportedSession(ReplyModel):
    """A playback session."""

    id: str
    movie_id: UuidStr
    movie_title: str
    plan_id: str
    renditions: list[str]
    client_ip: str | None
    user_agent: str | None
    country: str | None
    region: str | None
    created_at: DateTimeStr
    expires_at: DateTimeStr
    ended_at: DateTimeStr | None
    ended_reason: str | None


class ExportedProgress(ReplyModel):
    """Where the person is in a film."""

    movie_id: UuidStr
    movie_title: str
    position_s: float
    duration_s: float | None
    completed: bool
    updated_at: DateTimeStr


class ExportedAdEvent(ReplyModel):
    """An ad delivered in one of the person's sessions."""

    session_id: str
    ad_id: UuidStr
    campaign_id: UuidStr | None
    pod_index: int
    event: str
    occurred_at: DateTimeStr


class ExportedUsage(ReplyModel):
    """Data delivered to one of the person's playback sessions on one day (UTC)."""

    session_id: str
    movie_id: UuidStr
    day: DateStr
    bytes: int


class ExportedAuditRow(ReplyModel):
    """An audit log line about the person, or by them."""

    id: int
    at: DateTimeStr
    actor_id: UuidStr | None
    action: str
    target_type: str | None
    target_id: str | None
    details: dict[str, Any]


class ExportedDownload(ReplyModel):
    """A film the person took offline, and how many bytes of it were delivered."""

    id: str
    movie_id: UuidStr
    title: str
    bytes: int
    bytes_delivered: int
    created_at: DateTimeStr
    expires_at: DateTimeStr
    revoked_at: DateTimeStr | None


class ExportedMobileMoneyPayment(ReplyModel):
    """A mobile money payment (the paying number is personal data)."""

    id: UuidStr
    provider: str
    product: str
    msisdn: str | None = Field(description="The paying number (null once erased)")
    amount_ugx: int
    status: str
    reason: str | None
    provisional_until: DateTimeStr | None
    created_at: DateTimeStr
    settled_at: DateTimeStr | None


class UserExport(ReplyModel):
    """Everything we hold about one person."""

    generated_at: DateTimeStr
    account: ExportedAccount
    subscriptions: list[ExportedSubscription]
    logins: list[ExportedLogin]
    sessions: list[ExportedSession]
    progress: list[ExportedProgress]
    ad_events: list[ExportedAdEvent]
    data_usage: list[ExportedUsage]
    downloads: list[ExportedDownload]
    audit: list[ExportedAuditRow]
    mobile_money_payments: list[ExportedMobileMoneyPayment]


def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def parse_user_id(value: str) -> uuid.UUID:
    """A user id from a path, or 404 ``user_not_found``."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound("No such user", code="user_not_found") from None


_ACCOUNT_SQL = """
SELECT u.*, coalesce((SELECT s.plan_id FROM subscriptions s
                       WHERE s.user_id = u.id AND s.status IN ('active', 'trialing', 'past_due')
                       ORDER BY s.created_at DESC LIMIT 1), 'free') AS plan
  FROM users u WHERE u.id = $1"""


async def export_user(pool: asyncpg.Pool, user_id: str) -> UserExport:
    """Everything we hold about one account; 404 ``user_not_found``."""
    uid = parse_user_id(user_id)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        acc = await conn.fetchrow(_ACCOUNT_SQL, uid)
        if acc is None:
            raise NotFound("No such user", code="user_not_found")
        subs = await conn.fetch(
            "SELECT * FROM subscriptions WHERE user_id = $1 ORDER BY created_at", uid
        )
        logins = await conn.fetch(
            "SELECT * FROM refresh_families WHERE user_id = $1 ORDER BY created_at", uid
        )
        momo = await conn.fetch(
            "SELECT * FROM mobile_money_payments WHERE user_id = $1 ORDER BY created_at", uid
        )
        sessions = await conn.fetch(
            """SELECT s.*, m.title FROM playback_sessions s JOIN movies m ON m.id = s.movie_id
                WHERE s.user_id = $1 ORDER BY s.created_at""",
            uid,
        )
        progress = await conn.fetch(
            """SELECT w.*, m.title FROM watch_progress w JOIN movies m ON m.id = w.movie_id
                WHERE w.user_id = $1 ORDER BY w.updated_at""",
            uid,
        )
        events = await conn.fetch(
            """SELECT e.* FROM ad_events e
                WHERE e.session_id IN (SELECT id FROM playback_sessions WHERE user_id = $1)
                ORDER BY e.occurred_at, e.id""",
            uid,
        )
        usage = await conn.fetch(
            """SELECT session_id, movie_id, day, bytes FROM data_usage
                WHERE user_id = $1 ORDER BY day, session_id""",
            uid,
        )
        downloads = await conn.fetch(
            """SELECT d.*, m.title FROM downloads d JOIN movies m ON m.id = d.movie_id
                WHERE d.user_id = $1 ORDER BY d.created_at, d.id""",
            uid,
        )
        audit = await conn.fetch(
            """SELECT * FROM audit_log
                WHERE (target_type = 'user' AND target_id = $1) OR actor_id = $2
                ORDER BY id""",
            str(uid),
            uid,
        )
    return UserExport(
        generated_at=datetime.now(UTC).isoformat(),
        account=ExportedAccount(
            id=str(acc["id"]),
            email=acc["email"],
            role=acc["role"],
            plan=acc["plan"],
            display_name=acc["display_name"],
            birth_year=acc["birth_year"],
            country=acc["country"],
            stripe_customer_id=acc["stripe_customer_id"],
            created_at=acc["created_at"].isoformat(),
            disabled_at=_ts(acc["disabled_at"]),
            erased_at=_ts(acc["erased_at"]),
        ),
        mobile_money_payments=[
            ExportedMobileMoneyPayment(
                id=str(r["id"]),
                provider=r["provider"],
                product=r["product"],
                msisdn=r["msisdn"],
                amount_ugx=r["amount_ugx"],
                status=r["status"],
                reason=r["reason"],
                provisional_until=_ts(r["provisional_until"]),
                created_at=r["created_at"].isoformat(),
                settled_at=_ts(r["settled_at"]),
            )
            for r in momo
        ],
        subscriptions=[
            ExportedSubscription(
                id=str(r["id"]),
                plan_id=r["plan_id"],
                status=r["status"],
                provider=r["provider"],
                current_period_end=_ts(r["current_period_end"]),
                cancel_at_period_end=r["cancel_at_period_end"],
                created_at=r["created_at"].isoformat(),
                updated_at=r["updated_at"].isoformat(),
            )
            for r in subs
        ],
        logins=[
            ExportedLogin(
                id=str(r["id"]),
                client=r["client"],
                created_at=r["created_at"].isoformat(),
                revoked_at=_ts(r["revoked_at"]),
                revoked_reason=r["revoked_reason"],
            )
            for r in logins
        ],
        sessions=[
            ExportedSession(
                id=r["id"],
                movie_id=str(r["movie_id"]),
                movie_title=r["title"],
                plan_id=r["plan_id"],
                renditions=list(r["renditions"]),
                client_ip=r["client_ip"],
                user_agent=r["user_agent"],
                country=r["country"],
                region=r["region"],
                created_at=r["created_at"].isoformat(),
                expires_at=r["expires_at"].isoformat(),
                ended_at=_ts(r["ended_at"]),
                ended_reason=r["ended_reason"],
            )
            for r in sessions
        ],
        progress=[
            ExportedProgress(
                movie_id=str(r["movie_id"]),
                movie_title=r["title"],
                position_s=r["position_s"],
                duration_s=r["duration_s"],
                completed=r["completed"],
                updated_at=r["updated_at"].isoformat(),
            )
            for r in progress
        ],
        ad_events=[
            ExportedAdEvent(
                session_id=r["session_id"],
                ad_id=str(r["ad_id"]),
                campaign_id=_str(r["campaign_id"]),
                pod_index=r["pod_index"],
                event=r["event"],
                occurred_at=r["occurred_at"].isoformat(),
            )
            for r in events
        ],
        data_usage=[
            ExportedUsage(
                session_id=r["session_id"],
                movie_id=str(r["movie_id"]),
                day=r["day"].isoformat(),
                bytes=r["bytes"],
            )
            for r in usage
        ],
        downloads=[
            ExportedDownload(
                id=r["id"],
                movie_id=str(r["movie_id"]),
                title=r["title"],
                bytes=r["bytes"],
                bytes_delivered=r["bytes_delivered"],
                created_at=r["created_at"].isoformat(),
                expires_at=r["expires_at"].isoformat(),
                revoked_at=_ts(r["revoked_at"]),
            )
            for r in downloads
        ],
        audit=[
            ExportedAuditRow(
                id=r["id"],
                at=r["at"].isoformat(),
                actor_id=_str(r["actor_id"]),
                action=r["action"],
                target_type=r["target_type"],
                target_id=r["target_id"],
                details=orjson.loads(r["details"]),
            )
            for r in audit
        ],
    )


# ------------------------------------------------------------------ erasure


@dataclass(frozen=True, slots=True, kw_only=True)
class Erasure:
    """What erasing an account did."""

    user_id: str
    already_erased: bool
    logins_revoked: int
    sessions_ended: int
    progress_deleted: int


def erased_email(user_id: uuid.UUID) -> str:
    """The tombstone that replaces an erased account's email (unique, never deliverable:
    ``.invalid`` is reserved by RFC 2606)."""
    return f"erased-{user_id.hex}@{ERASED_EMAIL_DOMAIN}"


async def erase_user(auth: AuthService, redis: Redis, keys: Keys, user_id: str) -> Erasure:
    """Erase an account's personal data (idempotent); 404 ``user_not_found``.

    In one transaction the account is disabled and anonymised, its progress deleted and
    its sessions' addresses cleared, so no login or refresh can succeed from that moment;
    then every live playback session is ended and every login revoked (its access tokens
    refused at once)."""
    uid = parse_user_id(user_id)
    pool = auth.pool
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow("SELECT erased_at FROM users WHERE id = $1 FOR UPDATE", uid)
        if row is None:
            raise NotFound("No such user", code="user_not_found")
        already = row["erased_at"] is not None
        await conn.execute(
            """UPDATE users SET email = $2, password_hash = '', display_name = NULL,
                      birth_year = NULL, country = NULL,
                      disabled_at = coalesce(disabled_at, now()),
                      erased_at = coalesce(erased_at, now())
                WHERE id = $1""",
            uid,
            erased_email(uid),
        )
        deleted = await conn.fetchval(
            "WITH d AS (DELETE FROM watch_progress WHERE user_id = $1 RETURNING 1) "
            "SELECT count(*) FROM d",
            uid,
        )
        await conn.execute(
            """UPDATE playback_sessions SET client_ip = NULL, user_agent = NULL,
                      country = NULL, region = NULL, state = NULL
                WHERE user_id = $1""",
            uid,
        )
        # the offline copies stop with the account (the file route refuses revoked ones)
        await conn.execute(
            """UPDATE downloads SET revoked_at = now(), revoked_reason = 'erased'
                WHERE user_id = $1 AND revoked_at IS NULL""",
            uid,
        )

        # mobile money payments are kept (accounting) without the paying number
        await conn.execute("UPDATE mobile_money_payments SET msisdn = NULL WHERE user_id = $1", uid)
        families = await conn.fetch(
            "SELECT id FROM refresh_families WHERE user_id = $1 AND revoked_at IS NULL", uid
        )
    # sessions first, so they end with the erasure as their reason (revoking a login
    # also ends its sessions, as a logout)
    ended = await end_sessions_of(
        pool, redis, keys, owner="user", owner_id=str(uid), reason=ERASED_REASON
    )
    for fam in families:
        await auth.revoke_family(str(fam["id"]), ERASED_REASON)
    return Erasure(
        user_id=str(uid),
        already_erased=already,
        logins_revoked=len(families),
        sessions_ended=ended,
        progress_deleted=int(deleted),
    )

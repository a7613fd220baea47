"""Accounts and user tokens: register, login, refresh rotation, logout, authentication.

PostgreSQL holds users, refresh-token families and revocations (the truth); Redis holds
the revocation fast path. If Redis loses its data (restart, flush), the first check that
finds the ``rev:loaded`` marker missing rebuilds the fast path from PostgreSQL, so a
revoked token is never resurrected.

A revocation is one PostgreSQL transaction: the access token's ``jti``, its login's
refresh family and that login's playback sessions (``ended_at``) commit together, before
Redis is touched. If a Redis write then fails, nothing is lost: this process drops the
``rev:loaded`` marker (or, when Redis is unreachable, remembers that its mirror is stale
and rebuilds it on its next check), and ``kush worker`` copies every recent revocation
and ended session into Redis within seconds (:func:`mirror_revocations`). While Redis is
down, revocation checks ask PostgreSQL instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import cast

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from billing.plans import DEFAULT_GRACE
from billing.store import load_user_plan
from runtime.errors import Conflict, Unauthorized, Unprocessable
from runtime.redis import Keys
from tokens.errors import InvalidEmail, TokenError, TokenInvalid, TokenRevoked, WeakPassword
from tokens.jwt import (
    ACCESS_TOKEN_TTL_S,
    AccessClaims,
    Plan,
    Role,
    decode_jwt,
    encode_jwt,
    new_access_claims,
)
from tokens.keys import hash_refresh_token, new_refresh_token
from tokens.passwords import (
    check_password_policy,
    dummy_verify,
    hash_password,
    needs_rehash,
    normalize_email,
    verify_password,
)
from tokens.service.keystore import JWT_LEEWAY_S, KeyStore
from tokens.service.session_endings import end_family_sessions

log = logging.getLogger(__name__)

REFRESH_TTL_S = 7 * 24 * 3600
FAMILY_REVOCATION_TTL_S = ACCESS_TOKEN_TTL_S + JWT_LEEWAY_S
BAD_CREDENTIALS = "Wrong email or password"

FamilyHook = Callable[[str], Awaitable[None]]

# The plan claim is the effective plan (billing.plans.effective_plan), read at issue time.
_USER_SQL = """
SELECT u.id, u.email, u.role, u.password_hash, u.disabled_at
  FROM users u
"""


async def create_account(
    conn: asyncpg.Connection | asyncpg.Pool, email: str, password: str, *, role: Role = "user"
) -> str:
    """Insert one account (registration, ``kush users create``); returns its id.

    The email is normalised and the password checked against the policy and hashed
    (argon2id, off the event loop). Raises :class:`Unprocessable` for a bad email or a
    weak password and :class:`Conflict` when the email is taken.
    """
    try:
        normal = normalize_email(email)
        check_password_policy(password, normal)
    except (InvalidEmail, WeakPassword) as err:
        raise Unprocessable(str(err), code=err.code) from err
    hashed = await asyncio.to_thread(hash_password, password)
    try:
        user_id = await conn.fetchval(
            "INSERT INTO users (email, password_hash, role) VALUES ($1, $2, $3) RETURNING id",
            normal,
            hashed,
            role,
        )
    except asyncpg.UniqueViolationError as err:
        raise Conflict("An account with this email exists", code="email_taken") from err
    return str(user_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedTokens:
    """What a successful login or refresh hands to the client."""

    access_token: str
    refresh_token: str
    expires_in: int
    claims: AccessClaims
    family_id: str


@dataclass(slots=True)
class AuthService:
    """The account and token operations, over one pool, one Redis and the key store."""

    pool: asyncpg.Pool
    redis: Redis
    keys: Keys
    keystore: KeyStore
    clock: Callable[[], float] = time.time
    family_revoked_hooks: list[FamilyHook] = field(default_factory=list)
    #: a revocation's Redis write failed: this process rebuilds the fast path from
    #: PostgreSQL before trusting it again (other processes: the dropped marker, or the
    #: worker's sync when Redis could not even take that)
    mirror_stale: bool = field(default=False, init=False, repr=False)
    #: how long ``past_due`` keeps a plan (``KUSH_BILLING_GRACE_HOURS``), for the claim
    grace: timedelta = DEFAULT_GRACE

    # ------------------------------------------------------------ accounts

    async def register(self, email: str, password: str) -> str:
        """Create a user on the free plan; returns the user id."""
        return await create_account(self.pool, email, password)

    async def login(self, email: str, password: str, *, client: str = "api") -> IssuedTokens:
        """Check the password (same message and similar time whether or not the account
        exists) and issue an access token and a new refresh family."""
        try:
            normal = normalize_email(email)
        except InvalidEmail:
            await asyncio.to_thread(dummy_verify, password)
            raise Unauthorized(BAD_CREDENTIALS, code="invalid_credentials") from None
        row = await self.pool.fetchrow(_USER_SQL + " WHERE u.email = $1", normal)
        if row is None:
            await asyncio.to_thread(dummy_verify, password)
            raise Unauthorized(BAD_CREDENTIALS, code="invalid_credentials")
        ok = await asyncio.to_thread(verify_password, row["password_hash"], password)
        if not ok or row["disabled_at"] is not None:
            raise Unauthorized(BAD_CREDENTIALS, code="invalid_credentials")
        if needs_rehash(row["password_hash"]):
            new_hash = await asyncio.to_thread(hash_password, password)
            await self.pool.execute(
                "UPDATE users SET password_hash = $2 WHERE id = $1", row["id"], new_hash
            )
        async with self.pool.acquire() as conn, conn.transaction():
            family_id = await conn.fetchval(
                "INSERT INTO refresh_families (user_id, client) VALUES ($1, $2) RETURNING id",
                row["id"],
                client[:32],
            )
            refresh = await self._insert_refresh(conn, family_id)
        plan = await self._plan(self.pool, row["id"])
        return self._issue(row, plan, str(family_id), refresh)

    async def refresh(self, refresh_token: str) -> IssuedTokens:
        """Rotate a refresh token. Presenting one that was already used revokes its whole
        family (it was stolen, or the client is confused) and answers 401."""
        if not refresh_token or len(refresh_token) > 256:
            raise TokenInvalid("malformed refresh token")
        token_hash = hash_refresh_token(refresh_token)
        reused_family: str | None = None
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """SELECT rt.family_id, rt.used_at, rt.expires_at, f.revoked_at, f.user_id
                     FROM refresh_tokens rt JOIN refresh_families f ON f.id = rt.family_id
                    WHERE rt.token_hash = $1
                    FOR UPDATE OF rt, f""",
                token_hash,
            )
            if row is None:
                raise TokenInvalid("unknown refresh token")
            family_id = row["family_id"]
            if row["revoked_at"] is not None:
                raise TokenRevoked("refresh token revoked")
            if row["used_at"] is not None:
                await self._revoke_family_row(conn, family_id, "refresh_reuse")
                await end_family_sessions(conn, str(family_id), "refresh_reuse")
                reused_family = str(family_id)
            elif row["expires_at"] <= self._now():
                raise TokenInvalid("refresh token expired")
            else:
                await conn.execute(
                    "UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1", token_hash
                )
                refresh = await self._insert_refresh(conn, family_id)
                user = await conn.fetchrow(_USER_SQL + " WHERE u.id = $1", row["user_id"])
                plan = await self._plan(conn, row["user_id"])
        if reused_family is not None:
            log.warning("refresh token reuse: family revoked")
            await self._after_family_revoked(reused_family)
            raise TokenRevoked("refresh token already used; all sessions of this login ended")
        if user is None or user["disabled_at"] is not None:
            raise TokenRevoked("account disabled")
        return self._issue(user, plan, str(family_id), refresh)

    async def logout(self, claims: AccessClaims, refresh_token: str | None = None) -> None:
        """Blacklist this access token until it expires, revoke its refresh family and end
        the family's playback sessions: one PostgreSQL transaction, then Redis."""
        expires = claims.exp + JWT_LEEWAY_S
        families = {claims.sid} if claims.sid else set()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO revoked_tokens (jti, user_id, expires_at)
                   VALUES ($1, $2, to_timestamp($3)) ON CONFLICT (jti) DO NOTHING""",
                claims.jti,
                uuid.UUID(claims.sub),
                expires,
            )
            if refresh_token:
                fam = await conn.fetchval(
                    """SELECT rt.family_id FROM refresh_tokens rt
                         JOIN refresh_families f ON f.id = rt.family_id
                        WHERE rt.token_hash = $1 AND f.user_id = $2""",
                    hash_refresh_token(refresh_token),
                    uuid.UUID(claims.sub),
                )
                if fam is not None:
                    families.add(str(fam))
            for family in families:
                await self._revoke_family_row(conn, uuid.UUID(family), "logout")
                await end_family_sessions(conn, family, "logout")
        ttl = max(1, expires - int(self.clock()))
        await self._mirror({self.keys("rev", "jti", claims.jti): ttl})
        for family in families:
            await self._after_family_revoked(family)

    async def revoke_family(self, family_id: str, reason: str) -> None:
        """End one login: its refresh tokens, access tokens and playback sessions."""
        async with self.pool.acquire() as conn, conn.transaction():
            await self._revoke_family_row(conn, uuid.UUID(family_id), reason)
            await end_family_sessions(conn, family_id, reason)
        await self._after_family_revoked(family_id)

    # ------------------------------------------------------------ authentication

    async def authenticate(self, token: str) -> AccessClaims:
        """Verify an access token: signature, expiry, and not revoked (jti or family)."""
        keys = self.keystore.keys
        claims = decode_jwt(
            token, public_keys=keys.jwt_public, now=int(self.clock()), leeway=JWT_LEEWAY_S
        )
        if await self.is_revoked(claims):
            raise TokenRevoked("access token revoked")
        return claims

    async def is_revoked(self, claims: AccessClaims) -> bool:
        """One Redis round trip; rebuilds the fast path from PostgreSQL when it was lost
        (or this process knows it missed a write), asks PostgreSQL while Redis is down."""
        jti_key = self.keys("rev", "jti", claims.jti)
        fam_key = self.keys("rev", "fam", claims.sid or "-")
        marker = self.keys("rev", "loaded")
        try:
            if self.mirror_stale:
                await self.rebuild_revocations()
                self.mirror_stale = False
            for _ in range(2):
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.exists(jti_key)
                    pipe.exists(fam_key)
                    pipe.exists(marker)
                    jti_hit, fam_hit, loaded = await pipe.execute()
                if jti_hit or fam_hit:
                    return True
                if loaded:
                    return False
                await self.rebuild_revocations()
        except RedisError as exc:
            log.warning(
                "revocation check from PostgreSQL: Redis unavailable (%s)", type(exc).__name__
            )
            return await self._revoked_in_postgres(claims)
        return False

    async def _revoked_in_postgres(self, claims: AccessClaims) -> bool:
        family = None
        if claims.sid:
            try:
                family = uuid.UUID(claims.sid)
            except ValueError:
                family = None
        return bool(
            await self.pool.fetchval(
                """SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = $1)
                       OR EXISTS (SELECT 1 FROM refresh_families
                                   WHERE id = $2 AND revoked_at IS NOT NULL)""",
                claims.jti,
                family,
            )
        )

    async def rebuild_revocations(self) -> int:
        """Copy every still-relevant revocation from PostgreSQL into Redis, then mark it."""
        count = await mirror_revocations(self.pool, self.redis, self.keys, since=None)
        log.info("revocation fast path rebuilt: %d revocations", count)
        return count

    # ------------------------------------------------------------ internals

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), tz=UTC)

    async def _insert_refresh(self, conn: asyncpg.Connection, family_id: uuid.UUID) -> str:
        token = new_refresh_token()
        await conn.execute(
            """INSERT INTO refresh_tokens (token_hash, family_id, expires_at)
               VALUES ($1, $2, $3)""",
            hash_refresh_token(token),
            family_id,
            self._now() + timedelta(seconds=REFRESH_TTL_S),
        )
        return token

    async def _revoke_family_row(
        self, conn: asyncpg.Connection, family_id: uuid.UUID, reason: str
    ) -> None:
        await conn.execute(
            """UPDATE refresh_families SET revoked_at = now(), revoked_reason = $2
                WHERE id = $1 AND revoked_at IS NULL""",
            family_id,
            reason,
        )

    async def _mirror(self, entries: dict[str, int]) -> None:
        """Write revocation keys (key -> TTL) to Redis. PostgreSQL already has them: on
        failure make sure nobody trusts the incomplete mirror, never fail the caller."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, ttl in entries.items():
                    pipe.set(key, b"1", ex=ttl)
                await pipe.execute()
        except RedisError as exc:
            log.warning("revocation not mirrored to Redis (%s): rebuilding", type(exc).__name__)
            self.mirror_stale = True
            try:
                await self.redis.delete(self.keys("rev", "loaded"))
            except RedisError:
                log.warning("revocation marker not dropped: the worker will mirror it")

    async def _after_family_revoked(self, family_id: str) -> None:
        await self._mirror({self.keys("rev", "fam", family_id): FAMILY_REVOCATION_TTL_S})
        for hook in self.family_revoked_hooks:
            try:
                await hook(family_id)
            except RedisError as exc:
                # the sessions are ended in PostgreSQL; the worker removes them from Redis
                log.warning("sessions of a revoked login not evicted (%s)", type(exc).__name__)

    async def _plan(self, conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> Plan:
        """The effective plan, for the token's (informational) ``plan`` claim."""
        current = await load_user_plan(conn, user_id, grace=self.grace, now=self._now())
        return cast(Plan, current.plan)

    def _issue(self, row: asyncpg.Record, plan: Plan, family_id: str, refresh: str) -> IssuedTokens:
        keys = self.keystore.keys
        claims = new_access_claims(
            sub=str(row["id"]),
            email=row["email"],
            role=cast(Role, row["role"]),
            plan=plan,
            now=int(self.clock()),
            sid=family_id,
        )
        token = encode_jwt(claims.to_payload(), kid=keys.jwt_kid, private_key=keys.jwt_private)
        return IssuedTokens(
            access_token=token,
            refresh_token=refresh,
            expires_in=ACCESS_TOKEN_TTL_S,
            claims=claims,
            family_id=family_id,
        )


async def mirror_revocations(
    pool: asyncpg.Pool, redis: Redis, keys: Keys, *, since: datetime | None
) -> int:
    """Copy revocations into Redis: every still-relevant one when ``since`` is None (and
    then mark the fast path as loaded), else those made after ``since`` (what
    ``kush worker`` does every few seconds, so a revocation whose Redis write failed
    reaches every gateway process)."""
    now = await pool.fetchval("SELECT now()")
    low = now - timedelta(seconds=FAMILY_REVOCATION_TTL_S)
    if since is not None:
        low = max(low, since)
    jtis = await pool.fetch(
        """SELECT jti, expires_at FROM revoked_tokens
            WHERE expires_at > $1 AND ($2::timestamptz IS NULL OR revoked_at > $2)""",
        now,
        since,
    )
    fams = await pool.fetch(
        "SELECT id, revoked_at FROM refresh_families WHERE revoked_at > $1", low
    )
    async with redis.pipeline(transaction=False) as pipe:
        for r in jtis:
            ttl = max(1, int((r["expires_at"] - now).total_seconds()))
            pipe.set(keys("rev", "jti", r["jti"]), b"1", ex=ttl)
        for r in fams:
            age = (now - r["revoked_at"]).total_seconds()
            ttl = max(1, int(FAMILY_REVOCATION_TTL_S - age))
            pipe.set(keys("rev", "fam", str(r["id"])), b"1", ex=ttl)
        if since is None:
            pipe.set(keys("rev", "loaded"), b"1")
        await pipe.execute()
    return len(jtis) + len(fams)


def subject_key(email: str) -> str:
    """A short stable key for per-account rate limits (no raw email in Redis keys)."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:24]


__all__ = [
    "AuthService",
    "IssuedTokens",
    "TokenError",
    "create_account",
    "mirror_revocations",
    "subject_key",
]

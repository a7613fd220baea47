"""Signing keys at rest (PostgreSQL, sealed with the master key) and in memory.

Two kinds of key: Ed25519 keys that sign access-token JWTs (published in the JWKS) and
32-byte secrets that derive segment-token keys (kid 0..255). Exactly one key of each kind
is current; ``kush keys rotate`` retires the current ones and creates new ones. A retired
key keeps verifying until ``verify_until`` (the longest lifetime of a token it signed),
then leaves the JWKS and the key ring. Every process reloads the keys every
``RELOAD_EVERY_S`` seconds, so a rotation reaches all workers within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from runtime.errors import ServiceUnavailable
from tokens.jwt import ACCESS_TOKEN_TTL_S, Jwks, jwks
from tokens.keys import (
    generate_ed25519,
    generate_segment_secret,
    load_private_key,
    load_public_key,
    new_kid,
    private_key_bytes,
    public_key_bytes,
    seal,
    unseal,
)
from tokens.segment import SegmentKeyring

log = logging.getLogger(__name__)

RELOAD_EVERY_S = 2.0
JWT_LEEWAY_S = 30
# A segment token lives at most this long (see gateway playback: film length x pace + margin).
MAX_SEGMENT_TOKEN_TTL_S = 48 * 3600


@dataclass(frozen=True, slots=True)
class KeySet:
    """One consistent snapshot of the usable keys."""

    jwt_kid: str
    jwt_private: Ed25519PrivateKey
    jwt_public: dict[str, Ed25519PublicKey]
    segments: SegmentKeyring

    def jwks(self) -> Jwks:
        """The public JWKS document."""
        return jwks(self.jwt_public)


async def _insert_keys(conn: asyncpg.Connection, master: bytes, *, segment_kid: int) -> None:
    jwt_key = generate_ed25519()
    kid = new_kid()
    await conn.execute(
        """INSERT INTO signing_keys (kid, purpose, algorithm, public_key, sealed_secret)
           VALUES ($1, 'jwt', 'EdDSA', $2, $3)""",
        kid,
        public_key_bytes(jwt_key.public_key()),
        seal(master, kid, private_key_bytes(jwt_key)),
    )
    seg_kid = str(segment_kid)
    await conn.execute(
        """INSERT INTO signing_keys (kid, purpose, algorithm, sealed_secret)
           VALUES ($1, 'segment', 'BLAKE2s-HMAC-SHA256', $2)""",
        f"seg-{seg_kid}",
        seal(master, f"seg-{seg_kid}", generate_segment_secret()),
    )


async def ensure_signing_keys(conn: asyncpg.Connection, master: bytes) -> bool:
    """Create the first keys if there are none; True when created. Safe to race."""
    async with conn.transaction():
        await conn.execute("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE")
        count = await conn.fetchval("SELECT count(*) FROM signing_keys WHERE retired_at IS NULL")
        if count:
            return False
        await _purge_expired(conn)
        used = await _segment_kids_in_use(conn)
        await _insert_keys(conn, master, segment_kid=_next_free(used, start=0))
    return True


async def rotate_keys(conn: asyncpg.Connection, master: bytes) -> None:
    """Retire the current keys (they still verify for their tokens' lifetime), add new."""
    jwt_grace = timedelta(seconds=ACCESS_TOKEN_TTL_S + JWT_LEEWAY_S)
    seg_grace = timedelta(seconds=MAX_SEGMENT_TOKEN_TTL_S + JWT_LEEWAY_S)
    async with conn.transaction():
        await conn.execute("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE")
        await _purge_expired(conn)
        current = await conn.fetch(
            "SELECT kid FROM signing_keys WHERE purpose = 'segment' AND retired_at IS NULL"
        )
        await conn.execute(
            """UPDATE signing_keys
                  SET retired_at = now(),
                      verify_until = now() + CASE purpose WHEN 'jwt' THEN $1::interval
                                                          ELSE $2::interval END
                WHERE retired_at IS NULL""",
            jwt_grace,
            seg_grace,
        )
        used = await _segment_kids_in_use(conn)
        start = int(current[0]["kid"].removeprefix("seg-")) + 1 if current else 0
        await _insert_keys(conn, master, segment_kid=_next_free(used, start=start))


async def _purge_expired(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "DELETE FROM signing_keys WHERE verify_until IS NOT NULL AND verify_until < now()"
    )


async def _segment_kids_in_use(conn: asyncpg.Connection) -> set[int]:
    rows = await conn.fetch("SELECT kid FROM signing_keys WHERE purpose = 'segment'")
    return {int(r["kid"].removeprefix("seg-")) for r in rows}


def _next_free(used: set[int], *, start: int) -> int:
    for step in range(256):
        kid = (start + step) % 256
        if kid not in used:
            return kid
    raise RuntimeError("all 256 segment key ids are in use")


async def load_keyset(conn: asyncpg.Connection | asyncpg.Pool, master: bytes) -> KeySet:
    """Read and unseal every key that still verifies."""
    rows = await conn.fetch(
        """SELECT kid, purpose, public_key, sealed_secret, retired_at IS NULL AS current
             FROM signing_keys
            WHERE verify_until IS NULL OR verify_until > now()"""
    )
    jwt_public: dict[str, Ed25519PublicKey] = {}
    jwt_kid: str | None = None
    jwt_private: Ed25519PrivateKey | None = None
    seg_keys: dict[int, bytes] = {}
    seg_current: int | None = None
    for row in rows:
        kid: str = row["kid"]
        if row["purpose"] == "jwt":
            jwt_public[kid] = load_public_key(bytes(row["public_key"]))
            if row["current"]:
                jwt_kid = kid
                jwt_private = load_private_key(unseal(master, kid, bytes(row["sealed_secret"])))
        else:
            number = int(kid.removeprefix("seg-"))
            seg_keys[number] = unseal(master, kid, bytes(row["sealed_secret"]))
            if row["current"]:
                seg_current = number
    if jwt_kid is None or jwt_private is None or seg_current is None:
        raise RuntimeError("no current signing keys; run `kush migrate` / `kush up` first")
    return KeySet(
        jwt_kid=jwt_kid,
        jwt_private=jwt_private,
        jwt_public=jwt_public,
        segments=SegmentKeyring(seg_keys, seg_current),
    )


class KeyStore:
    """Holds the current :class:`KeySet` of a process and refreshes it in the background."""

    def __init__(self, pool: asyncpg.Pool, master: bytes) -> None:
        self._pool = pool
        self._master = master
        self._keys: KeySet | None = None
        self._signature: tuple[tuple[str, bool], ...] = ()
        self._task: asyncio.Task[None] | None = None

    @property
    def keys(self) -> KeySet:
        """The current snapshot; 503 while PostgreSQL has not answered yet."""
        if self._keys is None:
            raise ServiceUnavailable(
                "Signing keys are not loaded yet", code="keys_unavailable", retry_after=5
            )
        return self._keys

    async def start(self) -> None:
        """Load the keys (creating the first ones if needed) and start refreshing.

        A database outage at start-up is not fatal: the service starts (``/readyz`` says
        503) and the refresh loop keeps trying.
        """
        try:
            await self.reload()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("signing keys not loaded at start-up: %s", type(exc).__name__)
        self._task = asyncio.create_task(self._refresh_loop(), name="keystore-refresh")

    async def stop(self) -> None:
        """Stop the refresh task."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def reload(self) -> bool:
        """Reload if the set of keys changed; True when it did."""
        rows = await self._pool.fetch(
            """SELECT kid, retired_at IS NULL AS current FROM signing_keys
                WHERE verify_until IS NULL OR verify_until > now() ORDER BY kid"""
        )
        signature = tuple((r["kid"], bool(r["current"])) for r in rows)
        if not any(current for _, current in signature):
            async with self._pool.acquire() as conn:
                await ensure_signing_keys(conn, self._master)
            return await self.reload()
        if signature == self._signature and self._keys is not None:
            return False
        self._keys = await load_keyset(self._pool, self._master)
        self._signature = signature
        log.info(
            "signing keys loaded: jwt kid %s, segment kid %d",
            self._keys.jwt_kid,
            self._keys.segments.current_kid,
        )
        return True

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(RELOAD_EVERY_S)
            try:
                await self.reload()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("key reload failed (keeping current keys): %s", type(exc).__name__)

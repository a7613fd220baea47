"""Slowing password guessing without locking out the wrong people.

Only **failed** logins count, and a success resets them:

- per (account, address): ``free`` failures, then each further failure locks that pair
  for a doubling time (1 s, 2 s, 4 s … capped at 15 min). A guesser on one address gets
  about fifteen tries in the first quarter hour and four an hour after that; the owner on
  another address is not affected at all.
- per account, from every address together: ``account_free`` failures, then the account
  backs off the same way, but only for networks that have never signed in to it
  successfully (a /24 or /64 remembered for 30 days). A distributed guesser is slowed;
  the owner on their usual phone network still signs in.
- per address: a ceiling on failures a minute, far above what one person types. Most
  Ugandan mobile users reach us through carrier-grade NAT, so thousands of honest viewers
  share one address; successful logins never count against it.

Counters live in Redis (an account's under its own hash tag) and expire 15 minutes after
the last failure. Every check happens
before the password is verified, so a locked pair costs no argon2 work.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from runtime.errors import TooManyRequests
from runtime.redis import Keys

FAILURE_MEMORY_S = 15 * 60
BACKOFF_BASE_S = 1
BACKOFF_MAX_S = 15 * 60
KNOWN_NETWORK_TTL_S = 30 * 86400


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginLimits:
    """How many failures are free before backing off, and the per-address ceiling."""

    free: int = 5
    account_free: int = 20
    address_failures_per_minute: int = 300


def backoff_s(excess: int) -> int:
    """Lock time after ``excess`` failures beyond the free ones (1 → 1 s, doubling)."""
    if excess <= 0:
        return 0
    return int(min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** min(excess - 1, 20)))


def network_of(address: str) -> str:
    """The /24 (IPv4) or /64 (IPv6) network of an address: what "a known place" means."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def _too_many(retry_after: float) -> TooManyRequests:
    return TooManyRequests(
        "Too many failed sign-in attempts; try again later",
        code="rate_limited",
        retry_after=max(1, int(retry_after + 0.999)),
    )


class LoginGuard:
    """Checks before a password is verified, and records the outcome after."""

    def __init__(self, redis: Redis, keys: Keys, limits: LoginLimits) -> None:
        self.redis = redis
        self.keys = keys
        self.limits = limits

    def _key(self, account: str, *parts: str) -> str:
        """One account's counters, locks and known networks share its hash tag
        (``{a:<account>}``): a success deletes them together (one slot on Redis
        Cluster). The per-address counter has no tag."""
        return self.keys.tagged("a:" + account, *parts)

    def _pair(self, account: str, address: str) -> str:
        return f"{account}:{address}"

    async def check(self, account: str, address: str) -> None:
        """Raise 429 with ``Retry-After`` if this attempt must wait."""
        k = self.keys
        now = time.time()
        minute = int(now // 60)
        net = network_of(address)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(k("login-fail-ip", address, str(minute)))
            pipe.pttl(self._key(account, "login-lock", "pair", self._pair(account, address)))
            pipe.pttl(self._key(account, "login-lock", "acct", account))
            pipe.sismember(self._key(account, "login-known", account), net)
            ip_failures, pair_ttl, acct_ttl, known = await pipe.execute()
        if ip_failures is not None and int(ip_failures) >= self.limits.address_failures_per_minute:
            raise _too_many((minute + 1) * 60 - now)
        if pair_ttl is not None and int(pair_ttl) > 0:
            raise _too_many(int(pair_ttl) / 1000)
        if acct_ttl is not None and int(acct_ttl) > 0 and not known:
            raise _too_many(int(acct_ttl) / 1000)

    async def failed(self, account: str, address: str) -> None:
        """Count a failed attempt and start or lengthen the backoff."""
        k = self.keys
        minute = int(time.time() // 60)
        pair_key = self._key(account, "login-fail", "pair", self._pair(account, address))
        acct_key = self._key(account, "login-fail", "acct", account)
        ip_key = k("login-fail-ip", address, str(minute))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.incr(pair_key)
            pipe.expire(pair_key, FAILURE_MEMORY_S)
            pipe.incr(acct_key)
            pipe.expire(acct_key, FAILURE_MEMORY_S)
            pipe.incr(ip_key)
            pipe.expire(ip_key, 61)
            pair_n, _, acct_n, _, _, _ = await pipe.execute()
        pair_wait = backoff_s(int(pair_n) - self.limits.free + 1)
        acct_wait = backoff_s(int(acct_n) - self.limits.account_free + 1)
        async with self.redis.pipeline(transaction=False) as pipe:
            if pair_wait:
                pair_lock = self._key(account, "login-lock", "pair", self._pair(account, address))
                pipe.set(pair_lock, b"1", ex=pair_wait)
            if acct_wait:
                pipe.set(self._key(account, "login-lock", "acct", account), b"1", ex=acct_wait)
            await pipe.execute()

    async def succeeded(self, account: str, address: str) -> None:
        """A correct password: forget the failures and remember this network."""
        known = self._key(account, "login-known", account)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(
                self._key(account, "login-fail", "pair", self._pair(account, address)),
                self._key(account, "login-lock", "pair", self._pair(account, address)),
                self._key(account, "login-fail", "acct", account),
                self._key(account, "login-lock", "acct", account),
            )
            pipe.sadd(known, network_of(address))
            pipe.expire(known, KNOWN_NETWORK_TTL_S)
            await pipe.execute()

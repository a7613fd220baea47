"""Ad inventory from PostgreSQL, cached per process, invalidated by admin changes.

Admin writes bump ``ads:version`` in Redis (``runtime.signals``); a gateway reloads when
the version changed or its copy is older than ``INVENTORY_TTL_S``. Delivery counts for
caps come from the ``ad_events`` table (the billing truth) with the same cache; per-viewer
frequency counts
live in Redis (``freq:<campaign>:<user>:<day>``), incremented when a session is planned.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from redis.asyncio import Redis

from gateway.ads.decide import Campaign, Counts, Creative
from runtime.redis import Keys
from runtime.signals import ad_inventory_version_key

INVENTORY_TTL_S = 10.0
FREQUENCY_TTL_S = 2 * 86400


def frequency_key(keys: Keys, user_id: str, campaign_id: str, day: str) -> str:
    """A viewer's impressions of one campaign on one day. Under the user's hash tag: one
    MGET reads a viewer's counters of every candidate campaign (one Redis Cluster slot)."""
    return keys.for_user(user_id, "freq", campaign_id, user_id, day)


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """Break policy of a film (or the default)."""

    preroll: bool = True
    midroll_every_s: int | None = None
    use_cue_points: bool = True
    postroll: bool = False
    max_pod_s: float = 60.0
    max_ads_per_pod: int = 2


def _set(values: list[str] | None) -> frozenset[str] | None:
    return frozenset(values) if values else None


class Inventory:
    """Campaigns with their ready creatives and delivery counts, cached."""

    def __init__(self, pool: asyncpg.Pool, redis: Redis, keys: Keys) -> None:
        self.pool = pool
        self.redis = redis
        self.keys = keys
        self._loaded_at = -1e9
        self._version: bytes | str | None = None
        self._campaigns: list[Campaign] = []
        self._today: dict[str, int] = {}
        self._total: dict[str, int] = {}

    async def campaigns(self) -> list[Campaign]:
        """Active campaigns (reloaded when stale or when an admin changed something)."""
        version = await self.redis.get(ad_inventory_version_key(self.keys))
        if version != self._version or time.monotonic() - self._loaded_at > INVENTORY_TTL_S:
            await self._reload()
            self._version = version
        return self._campaigns

    async def _reload(self) -> None:
        rows = await self.pool.fetch(
            """SELECT c.id, c.weight, c.starts_at, c.ends_at, c.target_countries,
                      c.target_regions,
                      c.target_categories, c.target_plans, c.daily_cap, c.total_cap,
                      c.frequency_cap_per_day,
                      coalesce(array_agg(a.id ORDER BY a.id)
                               FILTER (WHERE a.id IS NOT NULL), '{}') AS ad_ids,
                      coalesce(array_agg(a.duration_s ORDER BY a.id)
                               FILTER (WHERE a.id IS NOT NULL), '{}') AS durations
                 FROM campaigns c
                 LEFT JOIN campaign_ads ca ON ca.campaign_id = c.id
                 LEFT JOIN ads a ON a.id = ca.ad_id AND a.status = 'ready'
                                AND a.kind = 'video' AND a.master_key IS NOT NULL
                WHERE c.status = 'active' AND c.ends_at > now()
                GROUP BY c.id"""
        )
        self._campaigns = [
            Campaign(
                id=str(r["id"]),
                weight=r["weight"],
                starts_at=r["starts_at"],
                ends_at=r["ends_at"],
                creatives=tuple(
                    Creative(ad_id=str(a), duration_s=float(d))
                    for a, d in zip(r["ad_ids"], r["durations"], strict=True)
                ),
                target_countries=_set(r["target_countries"]),
                target_regions=_set([x.lower() for x in r["target_regions"] or []]),
                target_categories=_set(r["target_categories"]),
                target_plans=_set(r["target_plans"]),
                daily_cap=r["daily_cap"],
                total_cap=r["total_cap"],
                frequency_cap_per_day=r["frequency_cap_per_day"],
            )
            for r in rows
        ]
        counts = await self.pool.fetch(
            """SELECT campaign_id,
                      count(*) FILTER (WHERE occurred_at >= date_trunc('day', now())) AS today,
                      count(*) AS total
                 FROM ad_events WHERE event = 'impression' AND campaign_id IS NOT NULL
                GROUP BY campaign_id"""
        )
        self._today = {str(r["campaign_id"]): r["today"] for r in counts}
        self._total = {str(r["campaign_id"]): r["total"] for r in counts}
        self._loaded_at = time.monotonic()

    async def counts(self, user_id: str, campaign_ids: list[str]) -> Counts:
        """Delivery counts, including this viewer's impressions today per campaign."""
        day = datetime.now(UTC).strftime("%Y%m%d")
        viewer: dict[str, int] = {}
        if campaign_ids:
            values = await self.redis.mget(
                [frequency_key(self.keys, user_id, cid, day) for cid in campaign_ids]
            )
            viewer = {cid: int(v or 0) for cid, v in zip(campaign_ids, values, strict=True)}
        return Counts(today=self._today, total=self._total, viewer_today=viewer)

    async def count_frequency(self, user_id: str, uses: dict[str, int]) -> None:
        """Add a session's planned ads to the viewer's daily frequency counters."""
        if not uses:
            return
        day = datetime.now(UTC).strftime("%Y%m%d")
        async with self.redis.pipeline(transaction=False) as pipe:
            for cid, n in uses.items():
                key = frequency_key(self.keys, user_id, cid, day)
                pipe.incrby(key, n)
                pipe.expire(key, FREQUENCY_TTL_S)
            await pipe.execute()

    async def policy(self, movie_id: str) -> Policy:
        """The film's break policy, else the default one, else built-in defaults."""
        row = await self.pool.fetchrow(
            """SELECT preroll, midroll_every_s, use_cue_points, postroll, max_pod_s,
                      max_ads_per_pod
                 FROM break_policies WHERE movie_id = $1 OR movie_id IS NULL
                ORDER BY movie_id NULLS LAST LIMIT 1""",
            uuid.UUID(movie_id),
        )
        if row is None:
            return Policy()
        return Policy(
            preroll=row["preroll"],
            midroll_every_s=row["midroll_every_s"],
            use_cue_points=row["use_cue_points"],
            postroll=row["postroll"],
            max_pod_s=float(row["max_pod_s"]),
            max_ads_per_pod=row["max_ads_per_pod"],
        )

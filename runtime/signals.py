"""Cross-service change signals: Redis counters one service bumps and another watches.

The admin service and the gateway never import each other; when an admin change must
reach every gateway worker, the admin side bumps a version key named here and the
gateway reloads when it sees the number move.
"""

from __future__ import annotations

from redis.asyncio import Redis

from runtime.redis import Keys


def ad_inventory_version_key(keys: Keys) -> str:
    """The counter bumped on every ad inventory change (creatives, campaigns, policies)."""
    return keys("ads", "version")


async def bump_ad_inventory(redis: Redis, keys: Keys) -> None:
    """Tell every gateway that the ad inventory changed."""
    await redis.incr(ad_inventory_version_key(keys))


def catalogue_version_key(keys: Keys) -> str:
    """The counter bumped whenever a film changes or ends (edited, published,
    unpublished, taken down) or a category changes: gateways drop what they cached
    about the catalogue (trending lists) when it moves."""
    return keys("catalogue", "version")


async def bump_catalogue(redis: Redis, keys: Keys) -> None:
    """Tell every gateway that the catalogue changed."""
    await redis.incr(catalogue_version_key(keys))

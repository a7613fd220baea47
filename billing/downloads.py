"""Offline downloads as a plan feature: until when a downloaded film may be played, and
revoking a viewer's downloads when their plan no longer includes them.

Both services need this: the gateway issues downloads and checks the plan again at
every file request; the admin service's plan enforcement (a downgrade, a payment failed
past its grace, a grant running out) revokes them (README "Offline downloads").
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Final

import asyncpg

from billing.plans import EffectivePlan

__all__ = [
    "OPEN_ENDED_OFFLINE",
    "PLAN_CHANGED",
    "STALE_PERIOD_OFFLINE",
    "offline_until",
    "revoke_downloads",
]

#: Why downloads were revoked when the plan stopped including them (the same word as
#: the playback sessions a downgrade ends).
PLAN_CHANGED: Final = "plan_changed"
#: How long a film downloaded under a plan with no end in sight (a grant by hand with no
#: end date) plays offline before the app must ask again.
OPEN_ENDED_OFFLINE: Final = timedelta(days=30)
#: A subscription whose period end is already past (its renewal's webhook not yet
#: received): the offline copy gets a day, not nothing.
STALE_PERIOD_OFFLINE: Final = timedelta(days=1)


def offline_until(effective: EffectivePlan, *, now: datetime) -> datetime:
    """When a film downloaded under ``effective`` stops playing offline: when the plan
    next changes or renews, as :func:`billing.plans.effective_plan` says (the end of
    the subscription's current period, of a failed payment's grace, or of a grant).

    A renewal moves the period end on; the app then asks again (`POST
    /v1/downloads/{movie_id}` refreshes the row) and gets the new end."""
    at = effective.next.at
    if at is None:
        return now + OPEN_ENDED_OFFLINE
    if at <= now:
        return now + STALE_PERIOD_OFFLINE
    return at


async def revoke_downloads(
    conn: asyncpg.Connection | asyncpg.Pool, user_id: str | uuid.UUID, *, reason: str
) -> int:
    """Revoke every live download of a user (their download URLs are refused from now
    on); returns how many. Idempotent."""
    key = user_id if isinstance(user_id, uuid.UUID) else uuid.UUID(user_id)
    status: str = await conn.execute(
        """UPDATE downloads SET revoked_at = now(), revoked_reason = $2
            WHERE user_id = $1 AND revoked_at IS NULL""",
        key,
        reason,
    )
    return int(status.rsplit(" ", 1)[-1])

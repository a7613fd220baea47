"""Server-side ad tracking: segment fetches become events in a Redis stream.

The gateway appends; ``kush worker`` reads the stream with a consumer group and writes
``ad_events`` idempotently (unique per session, ad, pod and event), acknowledging an
entry only after its row is committed. A worker killed mid-batch leaves its entries
pending; the next worker claims and re-writes them, and the unique key turns the
replay into a no-op. So: nothing acknowledged is lost, nothing replayed counts twice.

Events per ad: ``impression`` (its first segment fetched), ``first_quartile``,
``midpoint``, ``third_quartile`` (the segment that crosses 25/50/75 % of the ad),
``complete`` (its last segment), and ``confirmed_impression`` once the session fetches
content after the pod — evidence the ad really played rather than being prefetched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from runtime.redis import Keys

log = logging.getLogger(__name__)

STREAM_MAXLEN = 1_000_000
QUARTILES = (("first_quartile", 0.25), ("midpoint", 0.5), ("third_quartile", 0.75))


def stream_key(keys: Keys) -> str:
    """The Redis stream of ad events."""
    return keys("ad-events")


def segment_events(
    segment_index: int, segment_starts: Sequence[float], duration: float
) -> list[str]:
    """Events reached by fetching one ad segment (pure).

    ``segment_starts`` are the start offsets of the ad's segments; a quartile belongs to
    the segment during which the ad crosses that fraction of its duration.
    """
    events: list[str] = []
    count = len(segment_starts)
    if segment_index == 0:
        events.append("impression")
    start = segment_starts[segment_index]
    end = segment_starts[segment_index + 1] if segment_index + 1 < count else duration
    for name, fraction in QUARTILES:
        mark = fraction * duration
        if start <= mark < end:
            events.append(name)
    if segment_index == count - 1:
        events.append("complete")
    return events


async def emit(
    redis: Redis,
    keys: Keys,
    *,
    session_id: str,
    ad_id: str,
    campaign_id: str,
    pod_index: int,
    events: Sequence[str],
) -> None:
    """Append events to the stream (one round trip)."""
    if not events:
        return
    now = f"{time.time():.3f}"
    async with redis.pipeline(transaction=False) as pipe:
        for event in events:
            fields: dict[Any, Any] = {
                "session_id": session_id,
                "ad_id": ad_id,
                "campaign_id": campaign_id,
                "pod_index": pod_index,
                "event": event,
                "ts": now,
            }
            pipe.xadd(stream_key(keys), fields, maxlen=STREAM_MAXLEN, approximate=True)
        if "impression" in events:
            pipe.set(keys("ad-started", session_id, str(pod_index)), b"1", ex=2 * 86400)
        await pipe.execute()


async def confirm_pods(
    redis: Redis,
    keys: Keys,
    *,
    session_id: str,
    pods: Sequence[tuple[int, float, Sequence[tuple[str, str]]]],
    content_time: float,
) -> list[int]:
    """Confirm the impressions of every started pod placed before ``content_time``;
    returns the indices of the pods that are now confirmed (by this call or earlier).

    ``pods`` is (pod index, pod's content position, [(ad id, campaign id)]); a pod at
    content position P is followed by the content segment starting at P, so fetching
    content at or after P means playback moved past the pod. Only pods whose first ad
    segment was fetched in this session count. Each pod is confirmed once per session
    (a Redis SET NX guards the stream; the table's unique key guards the rest).
    """
    done: list[int] = []
    for index, at_s, ads in pods:
        if content_time < at_s:
            continue
        if not await redis.exists(keys("ad-started", session_id, str(index))):
            continue
        done.append(index)
        guard = keys("ad-confirmed", session_id, str(index))
        if not await redis.set(guard, b"1", nx=True, ex=2 * 86400):
            continue
        for ad_id, campaign_id in ads:
            await emit(
                redis,
                keys,
                session_id=session_id,
                ad_id=ad_id,
                campaign_id=campaign_id,
                pod_index=index,
                events=["confirmed_impression"],
            )
    return done

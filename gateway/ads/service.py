"""Ads in the gateway: plan pods when a free session starts, stitch its playlists,
track ad segment fetches. Glue between the pure pieces and PostgreSQL/Redis/origin."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

from redis.asyncio import Redis

from gateway.ads.decide import (
    LightAds,
    Viewer,
    decide_pods,
    eligible_campaigns,
    lighter_breaks,
    lighter_pods,
)
from gateway.ads.inventory import Inventory
from gateway.ads.tracking import confirm_pods, emit, segment_events
from hls import (
    AdCreative,
    AdMedia,
    BreakPolicy,
    ContentRendition,
    MediaPlaylist,
    PlaylistError,
    Pod,
    StitchedPlaylist,
    StitchSource,
    align_pods,
    parse_master_playlist,
    parse_media_playlist,
    plan_break_times,
    stitch_source,
)
from hls.text import decode_playlist
from origin import OriginError, OriginStore, object_key
from runtime.memo import SingleFlight, remember
from runtime.redis import Keys
from runtime.together import both
from tokens.service.playback_session import AdPlan, PlannedAd, PlannedPod

log = logging.getLogger(__name__)

AD_LIBRARY_TTL_S = 60.0
MAX_STITCHED = 1024
#: content playlists kept compiled for stitching (a film has one per rendition)
MAX_STITCH_SOURCES = 64
MAX_PLAYLIST_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class AdRendition:
    """One rendition of a creative with its segment start times (for quartiles)."""

    media: AdMedia
    starts: tuple[float, ...]
    duration: float


class AdLibrary:
    """Creatives' HLS ladders read from the origin (``ads/{id}/...``), cached briefly."""

    def __init__(self, origin: OriginStore) -> None:
        self.origin = origin
        self._cache: dict[str, tuple[float, tuple[AdRendition, ...]]] = {}

    async def renditions(self, ad_id: str) -> tuple[AdRendition, ...]:
        hit = self._cache.get(ad_id)
        if hit is not None and time.monotonic() - hit[0] < AD_LIBRARY_TTL_S:
            return hit[1]
        master_text = await self._read(object_key("ads", ad_id, "master.m3u8"))
        master = parse_master_playlist(master_text)
        found: list[AdRendition] = []
        for variant in master.variants:
            name = variant.uri.split("/", 1)[0]
            text = await self._read(object_key("ads", ad_id, *variant.uri.split("/")))
            media = parse_media_playlist(text)
            base = f"/hls/ads/{ad_id}/{name}/"
            segments = tuple((base + s.uri, s.duration) for s in media.segments)
            init = media.segments[0].map if media.segments else None
            container: Literal["ts", "fmp4"] = "fmp4" if init is not None else "ts"
            starts, t = [], 0.0
            for _, d in segments:
                starts.append(t)
                t += d
            height = variant.resolution.height if variant.resolution else None
            found.append(
                AdRendition(
                    AdMedia(
                        name=name,
                        height=height,
                        container=container,
                        segments=segments,
                        init_path=base + init.uri if init is not None else None,
                    ),
                    tuple(starts),
                    t,
                )
            )
        result = tuple(found)
        self._cache[ad_id] = (time.monotonic(), result)
        return result

    async def creative(self, ad_id: str, campaign_id: str) -> AdCreative:
        return AdCreative(
            ad_id=ad_id,
            campaign_id=campaign_id,
            renditions=tuple(r.media for r in await self.renditions(ad_id)),
        )

    async def _read(self, key: str) -> str:
        return decode_playlist(await self.origin.read_bytes(key, max_size=MAX_PLAYLIST_BYTES))


def break_policy(policy: Any) -> BreakPolicy:
    """The stitcher's policy type from the inventory's."""
    return BreakPolicy(
        preroll=policy.preroll,
        midroll_every_s=policy.midroll_every_s,
        use_cue_points=policy.use_cue_points,
        postroll=policy.postroll,
        max_pod_s=policy.max_pod_s,
        max_ads_per_pod=policy.max_ads_per_pod,
    )


async def plan_ads(
    inventory: Inventory,
    stitcher: Stitcher,
    *,
    user_id: str,
    plan: str,
    country: str | None,
    categories: frozenset[str],
    region: str | None = None,
    movie_id: str,
    content: MediaPlaylist,
    renditions: Sequence[ContentRendition],
    rng: random.Random | None = None,
    light: LightAds | None = None,
) -> AdPlan:
    """Decide the session's pods once; empty when there is nothing to show.

    Only ads that can actually play in every rendition of the session are kept (and
    counted against frequency caps); a failure anywhere in deciding means no ads,
    never a failed playback start. ``light``: a data-saver session's lighter load.
    """
    try:
        return await _plan_ads(
            inventory,
            stitcher,
            user_id=user_id,
            plan=plan,
            country=country,
            categories=categories,
            region=region,
            movie_id=movie_id,
            content=content,
            renditions=renditions,
            rng=rng,
            light=light,
        )
    except Exception as err:  # best effort: the film plays without ads
        log.warning("ad decision failed, playing without ads: %s", type(err).__name__)
        stitcher.on_fallback("decision_failed")
        return ()


async def _plan_ads(
    inventory: Inventory,
    stitcher: Stitcher,
    *,
    user_id: str,
    plan: str,
    country: str | None,
    categories: frozenset[str],
    region: str | None,
    movie_id: str,
    content: MediaPlaylist,
    renditions: Sequence[ContentRendition],
    rng: random.Random | None,
    light: LightAds | None,
) -> AdPlan:
    campaigns = await inventory.campaigns()
    if not campaigns:
        return ()
    viewer = Viewer(
        user_id=user_id, plan=plan, country=country, categories=categories, region=region
    )
    # the viewer's counts (Redis) and the film's break policy (PostgreSQL) at once
    counts, policy = await both(
        inventory.counts(user_id, [c.id for c in campaigns]), inventory.policy(movie_id)
    )
    eligible = eligible_campaigns(campaigns, viewer, counts, datetime.now(UTC))
    if not eligible:
        return ()
    times = plan_break_times(content, break_policy(policy))
    max_pod_s, max_ads_per_pod = policy.max_pod_s, policy.max_ads_per_pod
    if light is not None:
        end = sum(segment.duration for segment in content.segments)
        times = lighter_breaks(times, end=end, light=light)
        max_pod_s, max_ads_per_pod = lighter_pods(max_pod_s, max_ads_per_pod, light)
    left = {
        c.id: c.frequency_cap_per_day - counts.viewer_today.get(c.id, 0)
        for c in eligible
        if c.frequency_cap_per_day is not None
    }
    decided = decide_pods(
        times,
        eligible,
        max_pod_s=max_pod_s,
        max_ads_per_pod=max_ads_per_pod,
        rng=rng or random.Random(),  # noqa: S311 - not security relevant
        frequency_left=left,
    )
    wanted: AdPlan = tuple(
        PlannedPod(
            index=p["index"],
            at_s=p["at_s"],
            ads=tuple(PlannedAd(a["ad_id"], a["campaign_id"]) for a in p["ads"]),
        )
        for p in decided
    )
    playable = await stitcher.pods_for(wanted, renditions)
    keep = {(p.index, a.ad_id) for p in playable for a in p.ads}
    kept = tuple(
        PlannedPod(
            index=p.index, at_s=p.at_s, ads=tuple(a for a in p.ads if (p.index, a.ad_id) in keep)
        )
        for p in wanted
    )
    result = tuple(p for p in kept if p.ads)
    if result:
        uses: dict[str, int] = {}
        for pod in result:
            for ad in pod.ads:
                uses[ad.campaign_id] = uses.get(ad.campaign_id, 0) + 1
        await inventory.count_frequency(user_id, uses)
    return result


#: Called with a reason when an ad is dropped so the film can play (a metric).
FallbackCounter = Callable[[str], None]


def _no_count(_reason: str) -> None:
    return None


class Stitcher:
    """Stitched templates per (film version, rendition, pod plan): viewers with the same
    decisions share one compile; a request costs the token MACs and one join.

    Ads are best effort: a creative that cannot be read (missing at the origin, an
    unusable playlist, the origin down) is dropped from its pod and counted through
    ``on_fallback``; the film always plays.
    """

    def __init__(self, library: AdLibrary, *, on_fallback: FallbackCounter = _no_count) -> None:
        self.library = library
        self.on_fallback = on_fallback
        self._cache: dict[tuple[Any, ...], StitchedPlaylist] = {}
        self._compiling: SingleFlight[tuple[Any, ...], StitchedPlaylist] = SingleFlight()
        #: content playlists compiled for stitching, per (film, version, rendition, name):
        #: a new pod plan of a film already stitched skips parsing and scanning it
        self._sources: dict[tuple[Any, ...], StitchSource] = {}
        #: stitched templates compiled by this process (each key once)
        self.compiles = 0

    async def _creative(self, ad: PlannedAd) -> AdCreative | None:
        try:
            return await self.library.creative(ad.ad_id, ad.campaign_id)
        except (OriginError, PlaylistError, ValueError) as err:
            log.warning("ad %s dropped: %s", ad.ad_id, type(err).__name__)
            self.on_fallback("creative_unavailable")
            return None

    async def pods_for(
        self, ad_plan: AdPlan, renditions: Sequence[ContentRendition]
    ) -> tuple[Pod, ...]:
        """The plan's pods with readable creatives, aligned across ``renditions``."""
        pods: list[Pod] = []
        for p in ad_plan:
            found = [await self._creative(a) for a in p.ads]
            ads = tuple(c for c in found if c is not None)
            if ads:
                pods.append(Pod(index=p.index, at_s=p.at_s, ads=ads))
        aligned = align_pods(pods, renditions)
        planned = sum(len(p.ads) for p in pods)
        for _ in range(planned - sum(len(p.ads) for p in aligned)):
            self.on_fallback("not_alignable")
        return aligned

    async def stitched(
        self,
        *,
        movie_id: str,
        version: int,
        rendition: str,
        name: str,
        text: str,
        ad_plan: AdPlan,
        renditions: Sequence[ContentRendition],
        content_height: int | None,
        content_container: str,
    ) -> StitchedPlaylist:
        key = (movie_id, version, rendition, name, ad_plan, tuple(renditions))
        found = self._cache.get(key)
        if found is not None:
            return found
        # one compile per key; one viewer hanging up does not cancel it for the others
        return await self._compiling.run(
            key,
            partial(
                self._compile, key, text, ad_plan, renditions, content_height, content_container
            ),
        )

    async def _compile(
        self,
        key: tuple[Any, ...],
        text: str,
        ad_plan: AdPlan,
        renditions: Sequence[ContentRendition],
        content_height: int | None,
        content_container: str,
    ) -> StitchedPlaylist:
        movie_id, rendition, name = key[0], key[2], key[3]
        root = f"/hls/{movie_id}/"
        pods = await self.pods_for(ad_plan, renditions)
        source_key = key[:4]
        compiled = self._sources.get(source_key)

        def stitch() -> tuple[StitchedPlaylist, StitchSource]:
            # the content compiled for stitching now, unless an earlier pod plan of this
            # playlist did (kept for the next one)
            source = compiled
            if source is None:
                source = StitchSource(text, playlist_path=f"{root}{rendition}/{name}", root=root)
            stitched = stitch_source(
                source,
                pods=pods,
                content_height=content_height,
                content_container=content_container,
            )
            return stitched, source

        # A 2-hour playlist with a dozen pods costs tens of milliseconds of CPU: compiled
        # in a thread so the event loop keeps serving segments meanwhile.
        found, source = await asyncio.to_thread(stitch)
        if source_key not in self._sources:
            remember(self._sources, source_key, source, MAX_STITCH_SOURCES)
        self.compiles += 1
        return remember(self._cache, key, found, MAX_STITCHED)


async def track_ad_segment(
    redis: Redis,
    keys: Keys,
    library: AdLibrary,
    *,
    session_id: str,
    ad_plan: AdPlan,
    ad_id: str,
    rendition: str,
    path: str,
) -> None:
    """Turn one ad segment fetch into events (impression, quartiles, complete)."""
    pods = [p for p in ad_plan if any(a.ad_id == ad_id for a in p.ads)]
    if not pods:
        return
    renditions = {r.media.name: r for r in await library.renditions(ad_id)}
    ad = renditions.get(rendition)
    if ad is None:
        return
    paths = [p for p, _ in ad.media.segments]
    if path not in paths:
        return
    index = paths.index(path)
    current = keys("ad-current", session_id, ad_id)
    if index == 0:
        # the first pod where this ad has not started yet is the one playing now
        pod = pods[-1]
        for candidate in pods:
            seen = keys("ad-seen", session_id, str(candidate.index), ad_id)
            if await redis.set(seen, b"1", nx=True, ex=2 * 86400):
                pod = candidate
                break
        await redis.set(current, str(pod.index), ex=2 * 86400)
    else:
        raw = await redis.get(current)
        pod = next((p for p in pods if raw is not None and str(p.index) == _s(raw)), pods[0])
    campaign = next(a.campaign_id for a in pod.ads if a.ad_id == ad_id)
    await emit(
        redis,
        keys,
        session_id=session_id,
        ad_id=ad_id,
        campaign_id=campaign,
        pod_index=pod.index,
        events=segment_events(index, ad.starts, ad.duration),
    )


def _s(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


async def confirm_after_content(
    redis: Redis,
    keys: Keys,
    confirmed: set[tuple[str, int]],
    *,
    session_id: str,
    ad_plan: AdPlan,
    content_time: float,
) -> None:
    """Confirm every started pod the viewer has now played past (memoised per process)."""
    pending = [
        (p.index, p.at_s, [(a.ad_id, a.campaign_id) for a in p.ads])
        for p in ad_plan
        if (session_id, p.index) not in confirmed and p.at_s <= content_time
    ]
    if not pending:
        return
    done = await confirm_pods(
        redis, keys, session_id=session_id, pods=pending, content_time=content_time
    )
    if len(confirmed) > 100_000:
        confirmed.clear()
    confirmed.update((session_id, index) for index in done)

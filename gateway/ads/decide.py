"""Ad decisioning: pure functions, no I/O (the inventory is passed in).

The decision is made once per playback session, when it is created, and stored with the
session so that every playlist of the session gets identical pods.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict


@dataclass(frozen=True, slots=True, kw_only=True)
class Creative:
    """A ready video ad."""

    ad_id: str
    duration_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Campaign:
    """A campaign with its flight, targeting, caps and creatives."""

    id: str
    weight: int
    starts_at: datetime
    ends_at: datetime
    creatives: tuple[Creative, ...]
    target_countries: frozenset[str] | None = None
    target_regions: frozenset[str] | None = None
    target_categories: frozenset[str] | None = None
    target_plans: frozenset[str] | None = None
    daily_cap: int | None = None
    total_cap: int | None = None
    frequency_cap_per_day: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Viewer:
    """Who is watching what, for targeting."""

    user_id: str
    plan: str
    country: str | None
    categories: frozenset[str]
    region: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Counts:
    """Delivery so far: impressions today and in total per campaign, and this viewer's
    impressions today per campaign (frequency caps)."""

    today: Mapping[str, int] = field(default_factory=dict)
    total: Mapping[str, int] = field(default_factory=dict)
    viewer_today: Mapping[str, int] = field(default_factory=dict)


class PodAd(TypedDict):
    ad_id: str
    campaign_id: str


class PodPlan(TypedDict):
    index: int
    at_s: float
    ads: list[PodAd]


def eligible_campaigns(
    campaigns: Sequence[Campaign], viewer: Viewer, counts: Counts, now: datetime
) -> list[Campaign]:
    """Campaigns in flight, targeting this viewer, under every cap, with creatives."""
    out: list[Campaign] = []
    for c in campaigns:
        if not c.creatives or not c.starts_at <= now < c.ends_at:
            continue
        if c.target_plans is not None and viewer.plan not in c.target_plans:
            continue
        if c.target_countries is not None and (viewer.country or "") not in c.target_countries:
            continue
        if c.target_regions is not None and (viewer.region or "").lower() not in c.target_regions:
            continue
        if c.target_categories is not None and not (c.target_categories & viewer.categories):
            continue
        if c.daily_cap is not None and counts.today.get(c.id, 0) >= c.daily_cap:
            continue
        if c.total_cap is not None and counts.total.get(c.id, 0) >= c.total_cap:
            continue
        if (
            c.frequency_cap_per_day is not None
            and counts.viewer_today.get(c.id, 0) >= c.frequency_cap_per_day
        ):
            continue
        out.append(c)
    return out


def decide_pods(
    break_times: Sequence[float],
    campaigns: Sequence[Campaign],
    *,
    max_pod_s: float,
    max_ads_per_pod: int,
    rng: random.Random,
    frequency_left: Mapping[str, int] | None = None,
) -> list[PodPlan]:
    """Fill each break with a weighted random choice of creatives.

    No creative repeats inside one pod; a pod never exceeds ``max_pod_s`` nor
    ``max_ads_per_pod``; a campaign is used at most ``frequency_left[id]`` times in the
    session (its remaining daily frequency cap). Empty inventory gives no pods.
    """
    left = dict(frequency_left or {})
    pods: list[PodPlan] = []
    for index, at_s in enumerate(break_times):
        chosen: list[PodAd] = []
        used_ads: set[str] = set()
        length = 0.0
        while len(chosen) < max_ads_per_pod:
            options: list[tuple[Campaign, Creative]] = [
                (c, cr)
                for c in campaigns
                if left.get(c.id, 1) > 0
                for cr in c.creatives
                if cr.ad_id not in used_ads and length + cr.duration_s <= max_pod_s
            ]
            if not options:
                break
            weights = [c.weight / len(c.creatives) for c, _ in options]
            campaign, creative = rng.choices(options, weights=weights, k=1)[0]
            chosen.append({"ad_id": creative.ad_id, "campaign_id": campaign.id})
            used_ads.add(creative.ad_id)
            length += creative.duration_s
            if campaign.id in left:
                left[campaign.id] -= 1
        if chosen:
            pods.append({"index": index, "at_s": at_s, "ads": chosen})
    return pods


def campaign_uses(pods: Sequence[PodPlan]) -> dict[str, int]:
    """How many ads of each campaign a plan contains (to count frequency caps)."""
    uses: dict[str, int] = {}
    for pod in pods:
        for ad in pod["ads"]:
            uses[ad["campaign_id"]] = uses.get(ad["campaign_id"], 0) + 1
    return uses


def plan_summary(pods: Sequence[PodPlan]) -> dict[str, Any]:
    """The JSON stored with the session."""
    return {"pods": list(pods)}


@dataclass(frozen=True, slots=True, kw_only=True)
class LightAds:
    """The data saver's lighter ad load: one short ad per pod (at most ``max_ad_s``), no
    post-roll, and mid-rolls at least ``midroll_every_s`` apart (``KUSH_DATA_SAVER_*``)."""

    max_ad_s: float
    midroll_every_s: float


def lighter_breaks(times: Sequence[float], *, end: float, light: LightAds) -> list[float]:
    """The break times a data-saver session keeps: the pre-roll, then only the mid-rolls
    at least ``light.midroll_every_s`` after the previous kept break (or the start);
    never the post-roll at ``end``."""
    kept: list[float] = []
    last = 0.0
    for at in sorted(times):
        if at <= 0.0:
            kept.append(0.0)
        elif at < end and at - last >= light.midroll_every_s:
            kept.append(at)
            last = at
    return kept


def lighter_pods(max_pod_s: float, max_ads_per_pod: int, light: LightAds) -> tuple[float, int]:
    """A data-saver session's pod limits: (seconds, ads) per pod, one short ad."""
    return min(max_pod_s, light.max_ad_s), min(max_ads_per_pod, 1)

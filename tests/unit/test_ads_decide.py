"""Ad decisioning and tracking rules (pure)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from gateway.ads.decide import (
    Campaign,
    Counts,
    Creative,
    Viewer,
    campaign_uses,
    decide_pods,
    eligible_campaigns,
)
from gateway.ads.tracking import segment_events

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
VIEWER = Viewer(user_id="u1", plan="free", country="UG", categories=frozenset({"drama"}))


def campaign(cid: str, **kw: object) -> Campaign:
    base: dict[str, object] = {
        "id": cid,
        "weight": 1,
        "starts_at": NOW - timedelta(days=1),
        "ends_at": NOW + timedelta(days=1),
        "creatives": (Creative(ad_id=f"{cid}-a", duration_s=15.0),),
    }
    base.update(kw)
    return Campaign(**base)  # type: ignore[arg-type]


def test_targeting_flight_and_caps() -> None:
    cs = [
        campaign("ok"),
        campaign("future", starts_at=NOW + timedelta(hours=1)),
        campaign("ended", ends_at=NOW),
        campaign("kenya", target_countries=frozenset({"KE"})),
        campaign("premium", target_plans=frozenset({"premium"})),
        campaign("comedy", target_categories=frozenset({"comedy"})),
        campaign("daily", daily_cap=10),
        campaign("total", total_cap=5),
        campaign("freq", frequency_cap_per_day=2),
        campaign("empty", creatives=()),
    ]
    counts = Counts(today={"daily": 10}, total={"total": 5}, viewer_today={"freq": 2})
    assert [c.id for c in eligible_campaigns(cs, VIEWER, counts, NOW)] == ["ok"]


def test_empty_inventory_gives_no_pods() -> None:
    assert decide_pods([0.0, 60.0], [], max_pod_s=60, max_ads_per_pod=2, rng=random.Random(1)) == []


def test_pods_respect_limits_and_never_repeat() -> None:
    cs = [
        campaign(
            "a",
            creatives=(Creative(ad_id="a1", duration_s=15), Creative(ad_id="a2", duration_s=20)),
        ),
        campaign("b", creatives=(Creative(ad_id="b1", duration_s=30),)),
    ]
    for seed in range(50):
        pods = decide_pods(
            [0.0, 600.0], cs, max_pod_s=40, max_ads_per_pod=2, rng=random.Random(seed)
        )
        for pod in pods:
            ids = [a["ad_id"] for a in pod["ads"]]
            assert len(ids) == len(set(ids)) <= 2
            durations = {"a1": 15, "a2": 20, "b1": 30}
            assert sum(durations[i] for i in ids) <= 40


def test_frequency_cap_limits_a_campaign_within_the_session() -> None:
    cs = [
        campaign(
            "a",
            creatives=(Creative(ad_id="a1", duration_s=10), Creative(ad_id="a2", duration_s=10)),
        )
    ]
    pods = decide_pods(
        [0.0, 60.0, 120.0],
        cs,
        max_pod_s=60,
        max_ads_per_pod=2,
        rng=random.Random(3),
        frequency_left={"a": 1},
    )
    assert campaign_uses(pods) == {"a": 1}


def test_weights_steer_the_choice() -> None:
    cs = [campaign("heavy", weight=9), campaign("light", weight=1)]
    rng = random.Random(7)
    picks = [
        decide_pods([0.0], cs, max_pod_s=15, max_ads_per_pod=1, rng=rng)[0]["ads"][0]["campaign_id"]
        for _ in range(2000)
    ]
    assert 0.85 < picks.count("heavy") / len(picks) < 0.95


def test_segment_events_for_a_three_segment_ad() -> None:
    starts = [0.0, 6.0, 12.0]
    assert segment_events(0, starts, 15.0) == ["impression", "first_quartile"]
    # 7.5 s and 11.25 s both fall in the second segment (6-12 s)
    assert segment_events(1, starts, 15.0) == ["midpoint", "third_quartile"]
    assert segment_events(2, starts, 15.0) == ["complete"]


@given(st.lists(st.floats(min_value=0.5, max_value=10), min_size=1, max_size=12))
def test_every_event_exactly_once_over_all_segments(durations: list[float]) -> None:
    starts, t = [], 0.0
    for d in durations:
        starts.append(t)
        t += d
    events = [e for i in range(len(starts)) for e in segment_events(i, starts, t)]
    assert sorted(events) == sorted(
        ["impression", "first_quartile", "midpoint", "third_quartile", "complete"]
    )


def test_region_targeting_is_case_insensitive() -> None:
    cs = [campaign("central", target_regions=frozenset({"central region"}))]
    here = Viewer(
        user_id="u", plan="free", country="UG", categories=frozenset(), region="Central Region"
    )
    away = Viewer(
        user_id="u", plan="free", country="UG", categories=frozenset(), region="Northern Region"
    )
    unknown = Viewer(user_id="u", plan="free", country="UG", categories=frozenset())
    assert [c.id for c in eligible_campaigns(cs, here, Counts(), NOW)] == ["central"]
    assert eligible_campaigns(cs, away, Counts(), NOW) == []
    assert eligible_campaigns(cs, unknown, Counts(), NOW) == []

"""Offline downloads, the pure parts: which rendition the MP4 is made of, the ffmpeg
arguments that remux it, until when an offline copy plays, and the URL lifetime setting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import pytest

from admin.ingest import Rendition
from admin.ingest.transcode import build_download_args, choose_download_rendition
from billing.downloads import OPEN_ENDED_OFFLINE, STALE_PERIOD_OFFLINE, offline_until
from billing.plans import SubscriptionRow, effective_plan
from runtime.settings import Settings, SettingsError

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _rendition(name: str, height: int, bandwidth: int = 1) -> Rendition:
    return Rendition(
        name=name,
        width=height * 16 // 9,
        height=height,
        bandwidth=bandwidth,
        average_bandwidth=bandwidth,
        codecs="avc1.64001f,mp4a.40.2" if height else "mp4a.40.2",
        frame_rate=Fraction(24) if height else None,
        segment_count=2,
    )


def _ladder(*heights: int) -> list[Rendition]:
    return [_rendition(f"{h}p" if h else "audio", h) for h in heights]


@pytest.mark.parametrize(
    ("heights", "chosen"),
    [
        ((1080, 720, 480, 360, 0), "480p"),
        ((720, 360, 240), "360p"),  # no 480p: the tallest below it
        ((1080, 720), "720p"),  # nothing at or below 480p: the smallest there is
        ((360,), "360p"),
        ((0,), None),  # audio only: no offline video
        ((), None),
    ],
)
def test_download_rendition(heights: tuple[int, ...], chosen: str | None) -> None:
    found = choose_download_rendition(_ladder(*heights))
    assert (found.name if found else None) == chosen


def test_download_args_copy_one_rendition_with_the_index_first(tmp_path: Path) -> None:
    args = build_download_args(tmp_path / "480p" / "index.m3u8", tmp_path / "download.mp4")
    joined = " ".join(args)
    assert "-protocol_whitelist file -f hls -i file:" in joined
    assert "-c copy" in joined  # a remux, never a second encode
    assert "-map 0:v:0 -map 0:a:0?" in joined
    assert "-movflags +faststart" in joined
    assert args[-1] == str(tmp_path / "download.mp4")


def _row(**fields: object) -> SubscriptionRow:
    base: dict[str, object] = {
        "id": "s1",
        "provider": "stripe",
        "plan": "premium",
        "rank": 2,
        "status": "active",
    }
    return SubscriptionRow(**{**base, **fields})  # type: ignore[arg-type]


def test_offline_copy_plays_until_the_period_end() -> None:
    end = NOW + timedelta(days=17)
    plan = effective_plan([_row(current_period_end=end)], now=NOW)
    assert offline_until(plan, now=NOW) == end
    canceling = effective_plan([_row(current_period_end=end, cancel_at_period_end=True)], now=NOW)
    assert offline_until(canceling, now=NOW) == end


def test_offline_copy_of_a_failed_payment_plays_until_the_grace_ends() -> None:
    since = NOW - timedelta(hours=10)
    plan = effective_plan(
        [_row(status="past_due", past_due_since=since)], now=NOW, grace=timedelta(hours=72)
    )
    assert offline_until(plan, now=NOW) == since + timedelta(hours=72)


def test_offline_copy_of_a_grant() -> None:
    ends = NOW + timedelta(days=3)
    granted = effective_plan([_row(provider="manual", ends_at=ends)], now=NOW)
    assert offline_until(granted, now=NOW) == ends
    open_ended = effective_plan([_row(provider="demo")], now=NOW)
    assert offline_until(open_ended, now=NOW) == NOW + OPEN_ENDED_OFFLINE


def test_offline_copy_of_a_period_already_past() -> None:
    plan = effective_plan([_row(current_period_end=NOW - timedelta(minutes=5))], now=NOW)
    assert offline_until(plan, now=NOW) == NOW + STALE_PERIOD_OFFLINE


def test_download_url_ttl_setting() -> None:
    assert Settings.from_env({}).download_url_ttl_s == 600
    assert Settings.from_env({"KUSH_DOWNLOAD_URL_TTL_S": "120"}).download_url_ttl_s == 120
    with pytest.raises(SettingsError, match="KUSH_DOWNLOAD_URL_TTL_S"):
        Settings.from_env({"KUSH_DOWNLOAD_URL_TTL_S": "5"})

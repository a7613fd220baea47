"""The data saver's pure parts: the session's height cap, the rendition listed first, the
lighter ad load, and the session field that carries it."""

from __future__ import annotations

import pytest

from gateway.ads.decide import LightAds, lighter_breaks, lighter_pods
from gateway.playback import saver_max_height, start_height
from hls import VariantRef, compile_master_playlist
from tokens.service.playback_session import PlaybackSession

LADDER = """#EXTM3U
#EXT-X-VERSION:3
#EXT-X-STREAM-INF:BANDWIDTH=5000000,RESOLUTION=1920x1080
1080p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=2800000,RESOLUTION=1280x720
720p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=1100000,RESOLUTION=854x480
480p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=700000,RESOLUTION=640x360
360p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=400000,RESOLUTION=426x240
240p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=128000,CODECS="mp4a.40.2"
audio/index.m3u8
"""


def _variants(*heights: int | None) -> list[VariantRef]:
    return [VariantRef(f"/hls/m/{h}/index.m3u8", 1, h) for h in heights]


@pytest.mark.parametrize(
    ("heights", "plan", "expected"),
    [
        ([1080, 720, 480, 360, 240, None], 1080, 360),  # premium: capped at 360p
        ([480, 360, None], 480, 360),  # free: capped at 360p
        ([480, 360], 240, 240),  # a plan below the cap keeps its own limit
        ([1080, 720], 720, 720),  # never above the plan
        ([1080, 720], 1080, 720),  # no rendition that low: the smallest one plays
        ([None], 480, 360),  # audio only: nothing to cap
    ],
)
def test_the_session_cap(heights: list[int | None], plan: int, expected: int) -> None:
    assert saver_max_height(heights, plan_max_height=plan, saver_max_height=360) == expected


def test_the_smallest_rendition_is_listed_first_for_the_data_saver() -> None:
    variants = _variants(360, 240, None)
    assert start_height(variants, data_saver=True, preferred=480) == 240
    assert start_height(variants, data_saver=False, preferred=480) == 480
    assert start_height(_variants(None), data_saver=True, preferred=480) == 480


def test_a_capped_master_lists_240p_first_and_keeps_audio_only() -> None:
    master = compile_master_playlist(
        LADDER,
        playlist_path="/hls/m/master.m3u8",
        root="/hls/m/",
        max_height=saver_max_height(
            [1080, 720, 480, 360, 240, None], plan_max_height=1080, saver_max_height=360
        ),
        preferred_height=240,
    )
    assert [v.height for v in master.variants] == [240, 360, None]
    assert master.renditions == frozenset({"240p", "360p", "audio"})


LIGHT = LightAds(max_ad_s=15, midroll_every_s=1800)


def test_lighter_breaks_keep_the_preroll_thin_midrolls_and_drop_the_postroll() -> None:
    # a two-hour film with mid-rolls every 10 minutes and a post-roll
    times = [0.0, *(600.0 * n for n in range(1, 12)), 7200.0]
    assert lighter_breaks(times, end=7200.0, light=LIGHT) == [0.0, 1800.0, 3600.0, 5400.0]


def test_lighter_breaks_on_a_short_film_leave_one_preroll() -> None:
    assert lighter_breaks([0.0, 6.0, 12.0], end=12.0, light=LIGHT) == [0.0]
    assert lighter_breaks([6.0], end=12.0, light=LIGHT) == []  # no pre-roll planned: none


def test_lighter_pods_hold_one_short_ad() -> None:
    assert lighter_pods(60.0, 2, LIGHT) == (15.0, 1)
    assert lighter_pods(10.0, 3, LIGHT) == (10.0, 1)


def test_the_session_remembers_it_is_a_data_saver_one() -> None:
    session = PlaybackSession(
        id="s",
        user_id="u",
        movie_id="m",
        plan="free",
        renditions=("360p",),
        created_at=1,
        expires_at=2,
        max_height=360,
        data_saver=True,
    )
    assert PlaybackSession.from_bytes(session.to_bytes()) == session
    older = session.to_bytes().replace(b',"data_saver":true', b"")
    assert PlaybackSession.from_bytes(older).data_saver is False

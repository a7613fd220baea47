"""Ad stitching: golden whole-text outputs, break planning, alignment, tracking data."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import m3u8
import pytest

from hls import (
    AD_DATERANGE_CLASS,
    AdCreative,
    AdMedia,
    AdSegmentInfo,
    BreakPolicy,
    PlaylistError,
    Pod,
    StitchedPlaylist,
    align_pods,
    choose_ad_rendition,
    compile_media_playlist,
    find_cue_points,
    parse_media_playlist,
    plan_break_times,
    stitch_media_playlist,
)
from tests.unit.hls.helpers import FIXTURES, MEDIA_CASES, ROOT, read_fixture, render_fake

ADS = "ads"


# --- An ad catalogue -------------------------------------------------------------


def ts_media(ad_id: str, name: str, height: int | None, durations: Sequence[float]) -> AdMedia:
    return AdMedia(
        name=name,
        height=height,
        container="ts",
        segments=tuple(
            (f"/hls/ads/{ad_id}/{name}/seg_{i:05d}.ts", d) for i, d in enumerate(durations)
        ),
    )


def fmp4_media(ad_id: str, name: str, height: int | None, durations: Sequence[float]) -> AdMedia:
    return AdMedia(
        name=name,
        height=height,
        container="fmp4",
        segments=tuple(
            (f"/hls/ads/{ad_id}/{name}/seg_{i:05d}.m4s", d) for i, d in enumerate(durations)
        ),
        init_path=f"/hls/ads/{ad_id}/{name}/init.mp4",
    )


# 15 s in every rendition; its 360p durations differ by under 1 ms.
AMBER = AdCreative(
    ad_id="ad-amber",
    campaign_id="camp-sun",
    renditions=(
        ts_media("ad-amber", "1080p", 1080, [5.0, 5.0, 5.0]),
        ts_media("ad-amber", "720p", 720, [5.0, 5.0, 5.0]),
        ts_media("ad-amber", "360p", 360, [5.0004, 4.9996, 5.0]),
        ts_media("ad-amber", "audio", None, [5.0, 5.0, 5.0]),
    ),
)
# 10.5 s, with a segment longer than the content's target duration.
BAOBAB = AdCreative(
    ad_id="ad-baobab",
    campaign_id="camp-moon",
    renditions=(
        ts_media("ad-baobab", "720p", 720, [7.6, 2.9]),
        ts_media("ad-baobab", "360p", 360, [7.6, 2.9]),
        ts_media("ad-baobab", "audio", None, [7.6, 2.9]),
    ),
)
# Video only: cannot play in an audio-only rendition.
CASSAVA = AdCreative(
    ad_id="ad-cassava",
    campaign_id="camp-sun",
    renditions=(ts_media("ad-cassava", "720p", 720, [6.0, 6.0]),),
)
# Its renditions are cut differently: misaligned.
DHOW = AdCreative(
    ad_id="ad-dhow",
    campaign_id="camp-moon",
    renditions=(
        ts_media("ad-dhow", "720p", 720, [5.0, 5.0]),
        ts_media("ad-dhow", "360p", 360, [4.0, 4.0, 2.0]),
        ts_media("ad-dhow", "audio", None, [5.0, 5.0]),
    ),
)
FIG = AdCreative(
    ad_id="ad-fig",
    campaign_id="camp-sun",
    renditions=(
        fmp4_media("ad-fig", "1080p", 1080, [4.0, 3.2]),
        fmp4_media("ad-fig", "720p", 720, [4.0, 3.2]),
        fmp4_media("ad-fig", "audio", None, [4.0, 3.2]),
    ),
)


def policy(
    *,
    preroll: bool = False,
    every: int | None = None,
    cues: bool = False,
    postroll: bool = False,
) -> BreakPolicy:
    return BreakPolicy(
        preroll=preroll,
        midroll_every_s=every,
        use_cue_points=cues,
        postroll=postroll,
        max_pod_s=60,
        max_ads_per_pod=2,
    )


def planned(
    name: str, break_policy: BreakPolicy, fills: Sequence[tuple[AdCreative, ...]]
) -> Callable[[], tuple[Pod, ...]]:
    """Pods at the planned break times, filled in turn from ``fills``."""

    def build() -> tuple[Pod, ...]:
        times = plan_break_times(parse_media_playlist(read_ads(f"{name}.m3u8")), break_policy)
        return tuple(Pod(index=i, at_s=t, ads=fills[i % len(fills)]) for i, t in enumerate(times))

    return build


def explicit(*pods: tuple[float, tuple[AdCreative, ...]]) -> Callable[[], tuple[Pod, ...]]:
    return lambda: tuple(Pod(index=i, at_s=t, ads=ads) for i, (t, ads) in enumerate(pods))


SESSION = (("720p", 720, "ts"), ("360p", 360, "ts"), ("audio", None, "ts"))
UNALIGNED = explicit((0.0, (AMBER, CASSAVA)), (18.0, (DHOW,)), (30.0, (BAOBAB, CASSAVA)))


def aligned() -> tuple[Pod, ...]:
    return align_pods(UNALIGNED(), SESSION)


@dataclass(frozen=True)
class Case:
    source: str
    rendition: str
    height: int | None
    container: str
    pods: Callable[[], tuple[Pod, ...]]

    @property
    def playlist_path(self) -> str:
        return f"{ROOT}{self.rendition}/index.m3u8"


CASES: dict[str, Case] = {
    "vod_ts.preroll": Case(
        "vod_ts", "720p", 720, "ts", planned("vod_ts", policy(preroll=True), [(AMBER, BAOBAB)])
    ),
    "vod_ts.offsets": Case(
        "vod_ts",
        "720p",
        720,
        "ts",
        planned(
            "vod_ts",
            policy(preroll=True, every=20, cues=True),
            [(AMBER,), (BAOBAB,)],
        ),
    ),
    "vod_ts.postroll": Case(
        "vod_ts", "720p", 720, "ts", planned("vod_ts", policy(postroll=True), [(BAOBAB,)])
    ),
    "cue_out_in.cues": Case(
        "cue_out_in",
        "720p",
        720,
        "ts",
        planned("cue_out_in", policy(cues=True), [(AMBER,), (BAOBAB,)]),
    ),
    "cue_daterange.cues": Case(
        "cue_daterange",
        "720p",
        720,
        "ts",
        planned("cue_daterange", policy(cues=True, every=10), [(AMBER, BAOBAB)]),
    ),
    "cue_oatcls.cues": Case(
        "cue_oatcls",
        "360p",
        360,
        "ts",
        planned("cue_oatcls", policy(preroll=True, cues=True), [(BAOBAB,), (AMBER,)]),
    ),
    "fmp4.midroll": Case(
        "fmp4", "1080p", 1080, "fmp4", explicit((0.0, (FIG,)), (4.0, (FIG,)), (12.0, (FIG,)))
    ),
    # Sub-ranges without an offset continue the previous segment's: not an ad's.
    "byterange.midroll": Case(
        "byterange", "480p", 480, "fmp4", explicit((5.0, (FIG,)), (12.0, (FIG,)))
    ),
    "aes128.midroll": Case(
        "aes128",
        "720p",
        720,
        "ts",
        planned(
            "aes128",
            policy(preroll=True, every=15, postroll=True),
            [(AMBER,), (BAOBAB,), (AMBER, BAOBAB), (BAOBAB,)],
        ),
    ),
    "vod_ts.aligned": Case("vod_ts", "720p", 720, "ts", aligned),
    "audio.aligned": Case("audio", "audio", None, "ts", aligned),
}


def read_ads(name: str) -> str:
    return read_fixture(f"{ADS}/{name}")


def stitch_case(name: str) -> StitchedPlaylist:
    case = CASES[name]
    return stitch_media_playlist(
        read_ads(f"{case.source}.m3u8"),
        playlist_path=case.playlist_path,
        root=ROOT,
        pods=case.pods(),
        content_height=case.height,
        content_container=case.container,
    )


# --- Golden outputs -------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_output(name: str) -> None:
    stitched = stitch_case(name)

    assert render_fake(stitched.template) == read_ads(f"{name}.expected.m3u8")


def test_every_golden_file_has_a_case() -> None:
    expected = {
        p.name.removesuffix(".expected.m3u8") for p in (FIXTURES / ADS).glob("*.expected.m3u8")
    }

    assert expected == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_output_parses_and_marks_every_pod(name: str) -> None:
    stitched = stitch_case(name)
    output = parse_media_playlist(render_fake(stitched.template))

    ads = [d for s in output.segments for d in s.dateranges if d.class_name == AD_DATERANGE_CLASS]
    assert [d.id for d in ads] == [f"ad-{pod.index}" for pod in stitched.pods]
    for daterange, span in zip(ads, stitched.pods, strict=True):
        assert daterange.duration == pytest.approx(span.duration_s, abs=5e-4)
        assert daterange.attributes.string("X-AD-IDS") == ",".join(span.ad_ids)
    # START-DATE is the program date time of the pod's first segment.
    for segment in output.segments:
        for daterange in segment.dateranges:
            if daterange.class_name == AD_DATERANGE_CLASS:
                assert segment.program_date_time == daterange.start_date
    assert all(s.duration <= output.target_duration + 0.5 for s in output.segments)


# --- No pods: exactly what compile_media_playlist writes ---------------------------


@pytest.mark.parametrize("name", sorted(MEDIA_CASES))
def test_no_pods_is_byte_identical_to_compile(name: str) -> None:
    text = read_fixture(f"{name}.m3u8")
    path = MEDIA_CASES[name]
    compiled = compile_media_playlist(text, playlist_path=path, root=ROOT)

    for pods in ((), (Pod(index=0, at_s=0.0, ads=()),)):
        stitched = stitch_media_playlist(
            text,
            playlist_path=path,
            root=ROOT,
            pods=pods,
            content_height=720,
            content_container="ts",
        )
        assert stitched.template == compiled
        assert stitched.pods == ()
        assert dict(stitched.ad_segments) == {}


# --- Cue points and break planning --------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cue_out_in", [12.0, 30.0]),
        ("cue_daterange", [18.0]),
        ("cue_oatcls", [18.0]),
        ("vod_ts", []),
    ],
)
def test_find_cue_points(name: str, expected: list[float]) -> None:
    assert find_cue_points(parse_media_playlist(read_ads(f"{name}.m3u8"))) == expected


def test_find_cue_points_of_the_mixed_dialect_fixture() -> None:
    # DATERANGE SCTE35-OUT, OATCLS and CUE-OUT on one segment count once; CUE-OUT-CONT
    # and CUE-IN do not start a break.
    playlist = parse_media_playlist(read_fixture("unknown_tags.m3u8"))

    assert find_cue_points(playlist) == [12.0]


def test_find_cue_points_ext_x_scte35_cue_out_and_trailing_markers() -> None:
    text = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\na.ts\n"
        '#EXT-X-SCTE35:CUE="/DA...",ID="1",CUE-OUT=YES\n#EXTINF:6,\nb.ts\n'
        '#EXT-X-SCTE35:CUE="/DA...",ID="1",CUE-IN=YES\n#EXTINF:6,\nc.ts\n'
        "#EXT-X-CUE-OUT:30\n#EXT-X-ENDLIST\n"
    )

    assert find_cue_points(parse_media_playlist(text)) == [6.0]


def vod(*durations: float, extra: dict[int, str] | None = None) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:10", "#EXT-X-PLAYLIST-TYPE:VOD"]
    for i, duration in enumerate(durations):
        if extra and i in extra:
            lines.append(extra[i])
        lines += [f"#EXTINF:{duration:.3f},", f"seg_{i:05d}.ts"]
    return "\n".join([*lines, "#EXT-X-ENDLIST", ""])


def test_plan_pre_mid_and_post_roll_at_offsets() -> None:
    playlist = parse_media_playlist(vod(*[10.0] * 10))

    assert plan_break_times(playlist, policy(preroll=True, every=30, postroll=True)) == [
        0.0,
        30.0,
        60.0,
        90.0,
        100.0,
    ]


def test_plan_snaps_offsets_to_the_nearest_boundary_never_at_the_ends() -> None:
    playlist = parse_media_playlist(vod(7.0, 7.0, 7.0, 7.0, 7.0))  # boundaries 0, 7, ..., 35

    assert plan_break_times(playlist, policy(every=10)) == [7.0, 21.0, 28.0]  # 10, 20, 30
    # Targets that snap to the same boundary give one break; none lands on the end.
    assert plan_break_times(playlist, policy(every=3)) == [0.0 + 7 * k for k in range(1, 5)]
    assert plan_break_times(playlist, policy(every=34)) == []  # 34 snaps to the end


def test_plan_tie_snaps_to_the_earlier_boundary() -> None:
    playlist = parse_media_playlist(vod(6.0, 6.0, 6.0, 6.0))

    assert plan_break_times(playlist, policy(every=9)) == [6.0, 18.0]


def test_plan_prefers_cue_points_and_falls_back_to_offsets() -> None:
    with_cues = parse_media_playlist(
        vod(*[10.0] * 6, extra={0: "#EXT-X-CUE-OUT:0", 2: "#EXT-X-CUE-OUT:0"})
    )
    without = parse_media_playlist(vod(*[10.0] * 6))

    # A cue on the first segment is not a mid-roll (that is the pre-roll's place).
    assert plan_break_times(with_cues, policy(every=26, cues=True)) == [20.0]
    assert plan_break_times(with_cues, policy(every=26)) == [30.0, 50.0]
    assert plan_break_times(without, policy(every=26, cues=True)) == [30.0, 50.0]
    assert plan_break_times(with_cues, policy(cues=True, preroll=True, postroll=True)) == [
        0.0,
        20.0,
        60.0,
    ]


def test_plan_without_segments_is_empty() -> None:
    playlist = parse_media_playlist("#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-ENDLIST\n")

    assert plan_break_times(playlist, policy(preroll=True, every=5, postroll=True)) == []


def test_break_policy_is_checked() -> None:
    with pytest.raises(ValueError, match="midroll_every_s"):
        policy(every=0)
    with pytest.raises(ValueError, match="max_ads_per_pod"):
        BreakPolicy(
            preroll=True,
            midroll_every_s=None,
            use_cue_points=False,
            postroll=False,
            max_pod_s=30,
            max_ads_per_pod=0,
        )


# --- Choosing and aligning renditions --------------------------------------------


def test_choose_closest_height_same_container() -> None:
    assert choose_ad_rendition(1080, "ts", AMBER) == AMBER.renditions[0]
    assert choose_ad_rendition(800, "ts", AMBER) == AMBER.renditions[1]
    assert choose_ad_rendition(240, "ts", AMBER) == AMBER.renditions[2]
    assert choose_ad_rendition(None, "ts", AMBER) == AMBER.renditions[3]
    assert choose_ad_rendition(720, "fmp4", AMBER) is None
    assert choose_ad_rendition(None, "ts", CASSAVA) is None
    assert choose_ad_rendition(None, "fmp4", FIG) == FIG.renditions[2]


def test_choose_prefers_the_lower_rendition_on_a_tie() -> None:
    # 540 is 180 from both 360 and 720.
    assert choose_ad_rendition(540, "ts", AMBER) == AMBER.renditions[2]


def test_align_drops_ads_missing_a_rendition_or_misaligned_and_empty_pods() -> None:
    pods = aligned()

    assert [(p.index, [a.ad_id for a in p.ads]) for p in pods] == [
        (0, ["ad-amber"]),
        (2, ["ad-baobab"]),
    ]
    # Without the audio rendition, the video-only ad stays.
    video_only = align_pods(UNALIGNED(), SESSION[:2])
    assert [[a.ad_id for a in p.ads] for p in video_only] == [
        ["ad-amber", "ad-cassava"],
        ["ad-baobab", "ad-cassava"],
    ]


def test_align_narrows_to_the_chosen_renditions_with_one_set_of_durations() -> None:
    amber = aligned()[0].ads[0]

    assert [m.name for m in amber.renditions] == ["720p", "360p", "audio"]
    assert {tuple(d for _, d in m.segments) for m in amber.renditions} == {(5.0, 5.0, 5.0)}
    # Stitching with the aligned pods chooses the same renditions as before.
    for name, height, container in SESSION:
        assert choose_ad_rendition(height, container, amber).name == name  # type: ignore[union-attr]


def test_align_tolerates_one_millisecond_and_no_more() -> None:
    def ad(durations: list[float]) -> AdCreative:
        return AdCreative(
            ad_id="ad-x",
            campaign_id="c",
            renditions=(
                ts_media("ad-x", "720p", 720, [5.0, 5.0]),
                ts_media("ad-x", "360p", 360, durations),
            ),
        )

    session = SESSION[:2]
    assert align_pods([Pod(index=0, at_s=0, ads=(ad([5.001, 4.999]),))], session)
    assert not align_pods([Pod(index=0, at_s=0, ads=(ad([5.0015, 5.0]),))], session)
    with pytest.raises(ValueError, match="content rendition"):
        align_pods([], [])


def test_aligned_pods_give_every_rendition_the_same_pods_and_discontinuities() -> None:
    video = stitch_case("vod_ts.aligned")
    audio = stitch_case("audio.aligned")

    def shape(stitched: StitchedPlaylist) -> list[tuple[bool, float | None]]:
        """Discontinuity flags, and durations of the ad segments, segment by segment."""
        playlist = parse_media_playlist(render_fake(stitched.template))
        return [
            (s.discontinuity, s.duration if s.uri.startswith("/hls/ads/") else None)
            for s in playlist.segments
        ]

    assert shape(video) == shape(audio)
    assert [(p.index, p.ad_ids, p.duration_s) for p in video.pods] == [
        (p.index, p.ad_ids, p.duration_s) for p in audio.pods
    ]
    # Both renditions put pod 2 before their sixth segment, though their
    # boundaries differ by a few milliseconds there (30.030 and 30.037).
    assert [p.resume_path for p in audio.pods] == [
        "/hls/abc123/audio/seg_00000.ts",
        "/hls/abc123/audio/seg_00005.ts",
    ]
    assert [p.resume_path for p in video.pods] == [
        "/hls/abc123/720p/seg_00000.ts",
        "/hls/abc123/720p/seg_00005.ts",
    ]


# --- Tracking data ----------------------------------------------------------------


def test_tracking_data_for_a_creative_that_fills_two_pods() -> None:
    stitched = stitch_case("vod_ts.offsets")

    assert [(p.index, p.ad_ids, p.content_s) for p in stitched.pods] == [
        (0, ("ad-amber",), 0.0),
        (1, ("ad-baobab",), pytest.approx(18.018)),
        (2, ("ad-amber",), pytest.approx(42.042)),
    ]
    assert stitched.ad_segments["/hls/ads/ad-amber/720p/seg_00002.ts"] == (
        AdSegmentInfo(0, "ad-amber", "camp-sun", 2, 3),
        AdSegmentInfo(2, "ad-amber", "camp-sun", 2, 3),
    )
    assert stitched.ad_segments["/hls/ads/ad-baobab/720p/seg_00000.ts"] == (
        AdSegmentInfo(1, "ad-baobab", "camp-moon", 0, 2),
    )
    # Ad segment paths are token paths; init sections are not tracked.
    assert set(stitched.ad_segments) <= set(stitched.paths)
    assert stitched.pods[1].start_s == pytest.approx(15 + 18.018)
    assert stitched.pods[1].end_s == pytest.approx(15 + 18.018 + 10.5)
    assert stitched.pods[1].resume_path == "/hls/abc123/720p/seg_00003.ts"
    assert stitched.content_segments["/hls/abc123/720p/seg_00003.ts"] == pytest.approx(18.018)
    # A resume point maps onto the stitched timeline after the pods before it.
    assert stitched.output_time(0.0) == 15.0
    assert stitched.output_time(20.0) == pytest.approx(20.0 + 15 + 10.5)


def test_post_roll_has_no_resume_segment_and_no_closing_discontinuity() -> None:
    stitched = stitch_case("vod_ts.postroll")
    output = render_fake(stitched.template)

    assert stitched.pods[0].resume_path is None
    assert output.count("#EXT-X-DISCONTINUITY\n") == 1
    assert output.endswith("seg_00001.ts?t=" + output.rsplit("t=", 1)[1])


# --- Details of the stitched text ---------------------------------------------------


def test_version_is_added_when_missing_and_target_duration_raised() -> None:
    text = "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\na.ts\n#EXTINF:6,\nb.ts\n#EXT-X-ENDLIST\n"
    stitched = stitch_media_playlist(
        text,
        playlist_path=f"{ROOT}720p/index.m3u8",
        root=ROOT,
        pods=[Pod(index=3, at_s=6.0, ads=(BAOBAB,))],
        content_height=720,
        content_container="ts",
    )
    output = render_fake(stitched.template)

    assert output.startswith("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:8\n")
    assert '#EXT-X-DATERANGE:ID="ad-3"' in output


def test_anchor_sets_the_program_date_times() -> None:
    anchor = datetime(2025, 3, 1, 21, 0, tzinfo=timezone(timedelta(hours=3)))
    case = CASES["vod_ts.preroll"]
    stitched = stitch_media_playlist(
        read_ads("vod_ts.m3u8"),
        playlist_path=case.playlist_path,
        root=ROOT,
        pods=case.pods(),
        content_height=720,
        content_container="ts",
        anchor=anchor,
    )
    segments = parse_media_playlist(render_fake(stitched.template)).segments

    assert segments[0].program_date_time == "2025-03-01T18:00:00.000Z"
    assert segments[5].program_date_time == "2025-03-01T18:00:25.500Z"  # after 15 + 10.5 s


def test_render_with_start_offset_still_works() -> None:
    stitched = stitch_case("aes128.midroll")
    output = stitched.render(["x"] * len(stitched.paths), start_offset=stitched.output_time(12.0))

    assert output.startswith("#EXTM3U\r\n#EXT-X-START:TIME-OFFSET=37.500,PRECISE=YES\r\n")


def test_implicit_iv_keys_are_restated_with_the_original_sequence_number() -> None:
    source = parse_media_playlist(read_ads("aes128.m3u8"))
    output = parse_media_playlist(render_fake(stitch_case("aes128.midroll").template))

    content = [s for s in output.segments if not s.uri.startswith("/hls/ads/")]
    assert [s.uri.partition("?")[0] for s in content] == [s.uri for s in source.segments]
    for number, segment in enumerate(content, start=source.media_sequence):
        assert segment.key is not None
        assert segment.key.iv == number.to_bytes(16, "big") or segment.key.iv == bytes.fromhex(
            "0000000000000000000000000000A002"
        )
    assert all(s.key is None for s in output.segments if s.uri.startswith("/hls/ads/"))


@pytest.mark.parametrize(
    ("text", "container", "message"),
    [
        (vod(6.0).replace("#EXT-X-ENDLIST\n", ""), "ts", "VOD"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-ENDLIST\n", "ts", "no media segments"),
        (read_fixture("iframes.m3u8"), "ts", "I-frame"),
        (read_fixture("fmp4_map.m3u8"), "ts", "TS content with EXT-X-MAP"),
        (vod(6.0), "fmp4", "EXT-X-MAP for every segment"),
    ],
)
def test_unstitchable_content_is_refused(text: str, container: str, message: str) -> None:
    with pytest.raises(PlaylistError, match=message):
        stitch_media_playlist(
            text,
            playlist_path=f"{ROOT}720p/index.m3u8",
            root=ROOT,
            pods=[Pod(index=0, at_s=0.0, ads=(FIG if container == "fmp4" else AMBER,))],
            content_height=720,
            content_container=container,
        )


def test_caller_errors() -> None:
    def stitch(pods: list[Pod], **kwargs: object) -> None:
        arguments: dict[str, object] = {
            "playlist_path": f"{ROOT}720p/index.m3u8",
            "root": ROOT,
            "pods": pods,
            "content_height": 720,
            "content_container": "ts",
        }
        arguments.update(kwargs)
        stitch_media_playlist(vod(6.0, 6.0), **arguments)  # type: ignore[arg-type]

    with pytest.raises(ValueError, match="align the pods"):
        stitch([Pod(index=0, at_s=0.0, ads=(FIG,))])
    with pytest.raises(ValueError, match="unique"):
        stitch([Pod(index=1, at_s=0.0, ads=(AMBER,)), Pod(index=1, at_s=6.0, ads=(AMBER,))])
    with pytest.raises(ValueError, match="aware"):
        stitch([Pod(index=0, at_s=0.0, ads=(AMBER,))], anchor=datetime(2000, 1, 1))
    with pytest.raises(ValueError, match="content_container"):
        stitch([], content_container="mp4")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ts_media("a", "720p", 720, []), "at least one segment"),
        (lambda: ts_media("a", "720p", 720, [0.0]), "positive"),
        (lambda: ts_media("a", "720p", 720, [float("nan")]), "positive"),
        (lambda: ts_media("a/../b", "720p", 720, [1.0]), "plain names"),
        (
            lambda: AdMedia(name="x", height=720, container="ts", segments=(("seg.ts", 1.0),)),
            "plain names",
        ),
        (
            lambda: AdMedia(name="x", height=720, container="ts", segments=(("/a/s.ts?x=1", 1.0),)),
            "plain names",
        ),
        (
            lambda: AdMedia(name="x", height=720, container="fmp4", segments=(("/a/s.m4s", 1.0),)),
            "init_path",
        ),
        (
            lambda: AdMedia(
                name="x",
                height=720,
                container="ts",
                segments=(("/a/s.ts", 1.0),),
                init_path="/a/init.mp4",
            ),
            "init_path",
        ),
        (lambda: AdCreative(ad_id='a",b', campaign_id="c", renditions=()), "ad_id"),
        (lambda: Pod(index=0, at_s=-1.0, ads=()), "finite"),
        (lambda: Pod(index=0, at_s=float("inf"), ads=()), "finite"),
    ],
)
def test_types_check_their_values(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


# --- An independent oracle: the m3u8 library reads the stitched output ----------------


def test_m3u8_reads_the_stitched_structure() -> None:
    stitched = stitch_case("aes128.midroll")
    source = m3u8.loads(read_ads("aes128.m3u8"))
    output = m3u8.loads(render_fake(stitched.template))

    is_ad = [s.uri.startswith("/hls/ads/") for s in output.segments]
    ads = sum(
        len(ad.renditions[1].segments) for pod in stitched.pods for ad in _pod_ads(pod.ad_ids)
    )
    assert len(output.segments) == len(source.segments) + ads
    assert sum(not a for a in is_ad) == len(source.segments)
    # A discontinuity exactly where content and ads (or two creatives) meet.
    expected_flags = [False]
    for previous, current in zip(output.segments, output.segments[1:], strict=False):
        expected_flags.append(_creative(previous.uri) != _creative(current.uri))
    assert [s.discontinuity for s in output.segments] == expected_flags
    # Ads are clear; content keeps its keys; every segment has a date.
    assert all(
        (s.key is None or s.key.method == "NONE") == a
        for s, a in zip(output.segments, is_ad, strict=True)
    )
    assert all(s.current_program_date_time is not None for s in output.segments)
    assert output.target_duration == 8
    assert output.media_sequence == 7
    assert output.version == 3
    dateranges = [d for s in output.segments for d in s.dateranges]
    assert [d.id for d in dateranges] == ["ad-0", "ad-1", "ad-2", "ad-3"]
    assert all(d.class_ == AD_DATERANGE_CLASS for d in dateranges)
    # m3u8 sees the content's own IVs: the original Media Sequence Numbers (§5.2).
    ivs = [s.key.iv for s in output.segments if not s.uri.startswith("/hls/ads/")]
    assert ivs == [f"0x{n:032X}" for n in (7, 8, 9)] + [
        "0x0000000000000000000000000000A002"
    ] * 2 + [f"0x{n:032X}" for n in (12, 13)]
    # m3u8 computes each date from the previous one: on one timeline, ads included.
    first = output.segments[0].current_program_date_time
    elapsed = 0.0
    for segment in output.segments:
        assert segment.current_program_date_time == first + timedelta(seconds=round(elapsed, 3))
        elapsed += segment.duration
    assert first == datetime(2000, 1, 1, tzinfo=UTC)


CATALOGUE = {ad.ad_id: ad for ad in (AMBER, BAOBAB, CASSAVA, DHOW, FIG)}


def _pod_ads(ad_ids: Sequence[str]) -> list[AdCreative]:
    return [CATALOGUE[ad_id] for ad_id in ad_ids]


def _creative(uri: str) -> str:
    return uri.split("/")[3] if uri.startswith("/hls/ads/") else "content"

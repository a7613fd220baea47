"""Property tests for ad stitching over random content, ads, pods and policies."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from hypothesis import given
from hypothesis import strategies as st

from hls import (
    AD_DATERANGE_CLASS,
    AdCreative,
    AdMedia,
    BreakPolicy,
    MediaPlaylist,
    PlaylistError,
    PlaylistTemplate,
    Pod,
    StitchedPlaylist,
    align_pods,
    choose_ad_rendition,
    compile_media_playlist,
    parse_media_playlist,
    plan_break_times,
    stitch_media_playlist,
)
from tests.unit.hls.test_properties import random_playlists

ROOT = "/hls/m1/"
ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)
RENDITIONS = (("720p", 720), ("360p", 360), ("audio", None))
SESSION = tuple((name, height, "ts") for name, height in RENDITIONS)


@dataclass(frozen=True)
class Content:
    durations: tuple[int, ...]  # milliseconds
    media_sequence: int
    key: str  # "", "implicit" or "explicit"
    container: Literal["ts", "fmp4"]
    byteranges: bool  # all segments are sub-ranges of one file, offsets mostly implicit

    @property
    def seconds(self) -> float:
        return sum(self.durations) / 1000

    def text(self) -> str:
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:4" if self.container == "ts" else "#EXT-X-VERSION:7",
            f"#EXT-X-TARGETDURATION:{max(math.floor(d / 1000 + 0.5) for d in self.durations)}",
            f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}",
            "#EXT-X-PLAYLIST-TYPE:VOD",
        ]
        if self.container == "fmp4":
            lines.append('#EXT-X-MAP:URI="init.mp4"')
        if self.key == "implicit":
            lines.append('#EXT-X-KEY:METHOD=AES-128,URI="../keys/k.key"')
        elif self.key == "explicit":
            lines.append('#EXT-X-KEY:METHOD=AES-128,URI="../keys/k.key",IV=0x1F')
        extension = "ts" if self.container == "ts" else "m4s"
        for index, duration in enumerate(self.durations):
            lines.append(f"#EXTINF:{duration / 1000:.3f},")
            if self.byteranges:
                offset = f"@{self.offsets[index]}" if index % 3 == 0 else ""
                lines += [f"#EXT-X-BYTERANGE:{duration * 100}{offset}", f"main.{extension}"]
            else:
                lines.append(f"seg_{index:05d}.{extension}")
        return "\n".join([*lines, "#EXT-X-ENDLIST", ""])

    @property
    def offsets(self) -> list[int]:
        """Where each segment's sub-range starts when ``byteranges``."""
        starts = [0]
        for duration in self.durations:
            starts.append(starts[-1] + duration * 100)
        return starts


contents = st.builds(
    Content,
    durations=st.lists(st.integers(500, 12_000), min_size=1, max_size=25).map(tuple),
    media_sequence=st.integers(0, 10_000),
    key=st.sampled_from(["", "implicit", "explicit"]),
    container=st.sampled_from(["ts", "fmp4"]),
    byteranges=st.booleans(),
)


@st.composite
def creatives(draw: st.DrawFn, number: int, container: Literal["ts", "fmp4"]) -> AdCreative:
    """An ad with some of the session's renditions, sometimes cut differently."""
    ad_id = f"ad{number}"
    durations = draw(st.lists(st.integers(1_000, 15_000), min_size=1, max_size=4))
    names = draw(st.sets(st.sampled_from(RENDITIONS), min_size=1))
    renditions = []
    for name, height in sorted(names, key=lambda r: str(r[1])):
        # Mostly identical, sometimes within 1 ms, sometimes not aligned at all.
        jitter = draw(st.sampled_from([0.0, 0.0, 0.0004, 0.002]))
        extension = "ts" if container == "ts" else "m4s"
        segments = tuple(
            (f"/hls/ads/{ad_id}/{name}/seg_{i:05d}.{extension}", d / 1000 + (jitter if i else 0))
            for i, d in enumerate(durations)
        )
        init = f"/hls/ads/{ad_id}/{name}/init.mp4" if container == "fmp4" else None
        renditions.append(
            AdMedia(
                name=name, height=height, container=container, segments=segments, init_path=init
            )
        )
    return AdCreative(ad_id=ad_id, campaign_id=f"c{number % 2}", renditions=tuple(renditions))


@st.composite
def sessions(draw: st.DrawFn) -> tuple[Content, tuple[Pod, ...]]:
    content = draw(contents)
    pool = [draw(creatives(n, content.container)) for n in range(draw(st.integers(1, 4)))]
    times = st.one_of(
        st.just(0.0),
        st.just(content.seconds),
        st.floats(0, content.seconds, allow_nan=False),
    )
    pods = tuple(
        Pod(
            index=index,
            at_s=draw(times),
            ads=tuple(draw(st.lists(st.sampled_from(pool), max_size=3))),
        )
        for index in range(draw(st.integers(0, 4)))
    )
    return content, pods


def stitch(
    content: Content, rendition: str, height: int | None, pods: tuple[Pod, ...]
) -> StitchedPlaylist:
    return stitch_media_playlist(
        content.text(),
        playlist_path=f"{ROOT}{rendition}/index.m3u8",
        root=ROOT,
        pods=pods,
        content_height=height,
        content_container=content.container,
    )


def render(stitched: StitchedPlaylist) -> str:
    return stitched.render([f"k{i}" for i in range(len(stitched.paths))])


def is_ad(uri: str) -> bool:
    return uri.startswith("/hls/ads/")


def session_pods(content: Content, pods: tuple[Pod, ...]) -> tuple[Pod, ...]:
    return align_pods(pods, tuple((n, h, content.container) for n, h in RENDITIONS))


@given(sessions())
def test_total_duration_is_content_plus_ads(session: tuple[Content, tuple[Pod, ...]]) -> None:
    content, pods = session
    aligned = session_pods(content, pods)
    for name, height in RENDITIONS:
        stitched = stitch(content, name, height, aligned)
        output = parse_media_playlist(render(stitched))

        chosen = [choose_ad_rendition(height, content.container, a) for p in aligned for a in p.ads]
        ads = sum(media.duration for media in chosen if media is not None)
        assert None not in chosen
        total = sum(s.duration for s in output.segments)
        assert math.isclose(total, content.seconds + ads, abs_tol=1e-6 * len(output.segments))
        assert math.isclose(sum(p.duration_s for p in stitched.pods), ads, abs_tol=1e-6 * 20)
        # Content comes out whole and in order.
        source = parse_media_playlist(content.text())
        assert [s.uri.partition("?")[0] for s in output.segments if not is_ad(s.uri)] == [
            s.uri for s in source.segments
        ]


@given(sessions())
def test_aligned_pods_give_identical_breaks_in_every_rendition(
    session: tuple[Content, tuple[Pod, ...]],
) -> None:
    content, pods = session
    aligned = session_pods(content, pods)
    shapes = []
    markers = []
    for name, height in RENDITIONS:
        text = render(stitch(content, name, height, aligned))
        playlist = parse_media_playlist(text)
        elapsed = 0.0
        shape = []
        for segment in playlist.segments:
            if segment.discontinuity or is_ad(segment.uri):
                shape.append(
                    (
                        round(elapsed, 6),
                        segment.discontinuity,
                        is_ad(segment.uri),
                        segment.duration if is_ad(segment.uri) else None,
                    )
                )
            elapsed += segment.duration
        shapes.append(shape)
        markers.append([line for line in text.splitlines() if AD_DATERANGE_CLASS in line])
    # Same discontinuities at the same times, same ad durations, same DATERANGEs.
    assert shapes[0] == shapes[1] == shapes[2]
    assert markers[0] == markers[1] == markers[2]
    assert len(markers[0]) == len(aligned)


def check_output(content: Content, stitched: StitchedPlaylist) -> MediaPlaylist:
    """Checks that hold for any stitched output; returns it parsed."""
    text = render(stitched)
    output = parse_media_playlist(text)
    # RFC 8216 §4.3.3.1: every EXTINF, rounded, is at most the target duration.
    assert all(math.floor(s.duration + 0.5) <= output.target_duration for s in output.segments)
    # Every URI a player fetches has its own token slot, and every slot an absolute path.
    uris = [line for line in text.splitlines() if line and not line.startswith("#")]
    uris += re.findall(r'URI="([^"]*)"', text)
    assert sorted(int(uri.rpartition("?t=k")[2]) for uri in uris) == list(
        range(len(stitched.paths))
    )
    assert all(path.startswith(ROOT) or path.startswith("/hls/ads/") for path in stitched.paths)
    # Sequence numbers as in the source; version high enough for what is written.
    assert output.media_sequence == content.media_sequence
    assert output.version is not None
    assert output.version >= (6 if content.container == "fmp4" else 3)
    # A date on the first segment and after every discontinuity, on one timeline.
    elapsed = 0.0
    for index, segment in enumerate(output.segments):
        if index == 0 or segment.discontinuity:
            expected = ANCHOR + timedelta(milliseconds=round(elapsed * 1000))
            assert segment.program_date_time == expected.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        else:
            assert segment.program_date_time is None
        elapsed += segment.duration
    # No discontinuity before the first segment; one wherever content and ads meet.
    assert not output.segments[0].discontinuity
    for previous, current in zip(output.segments, output.segments[1:], strict=False):
        if is_ad(previous.uri) != is_ad(current.uri):
            assert current.discontinuity
    # Ads are clear; content keeps its key, with the original sequence number as IV.
    for segment in output.segments:
        if is_ad(segment.uri):
            assert segment.key is None
        elif content.key:
            assert segment.key is not None
    if content.key == "implicit" and any(is_ad(s.uri) for s in output.segments):
        content_segments = [s for s in output.segments if not is_ad(s.uri)]
        first_ad = next(i for i, s in enumerate(output.segments) if is_ad(s.uri))
        for number, segment in enumerate(content_segments, start=content.media_sequence):
            position = output.segments.index(segment)
            if position > first_ad:
                assert segment.key is not None
                assert segment.key.iv == number.to_bytes(16, "big")
    # §4.3.2.2: every content sub-range starts where it did in the source.
    if content.byteranges:
        starts = []
        last_range: tuple[str, int] | None = None  # resource and end of the last sub-range
        for segment in output.segments:
            assert segment.byterange is not None or is_ad(segment.uri)
            if segment.byterange is None:
                last_range = None
                continue
            resource = segment.uri.partition("?")[0]
            length, offset = segment.byterange
            if offset is None:
                assert last_range is not None
                assert last_range[0] == resource
                offset = last_range[1]
            starts.append(offset)
            last_range = (resource, offset + length)
        assert starts == content.offsets[:-1]
    return output


@given(sessions())
def test_stitched_output_is_valid(session: tuple[Content, tuple[Pod, ...]]) -> None:
    content, pods = session
    aligned = session_pods(content, pods)
    for name, height in RENDITIONS:
        stitched = stitch(content, name, height, aligned)
        if aligned:
            check_output(content, stitched)


@given(contents)
def test_no_pods_is_compile_media_playlist(content: Content) -> None:
    text = content.text()
    compiled = compile_media_playlist(text, playlist_path=f"{ROOT}720p/index.m3u8", root=ROOT)

    assert stitch(content, "720p", 720, ()).template == compiled


policies = st.builds(
    BreakPolicy,
    preroll=st.booleans(),
    midroll_every_s=st.none() | st.integers(1, 120),
    use_cue_points=st.booleans(),
    postroll=st.booleans(),
    max_pod_s=st.just(60.0),
    max_ads_per_pod=st.just(2),
)


@given(contents, policies, st.sets(st.integers(0, 24)))
def test_planned_breaks_are_distinct_boundaries(
    content: Content, policy: BreakPolicy, cue_segments: set[int]
) -> None:
    lines: list[str] = []
    for line in content.text().splitlines():  # a CUE-OUT before some segments
        if (
            line.startswith("#EXTINF")
            and sum(x.startswith("#EXTINF") for x in lines) in cue_segments
        ):
            lines.append("#EXT-X-CUE-OUT:0")
        lines.append(line)
    playlist = parse_media_playlist("\n".join(lines))
    boundaries = [0.0]
    for segment in playlist.segments:
        boundaries.append(boundaries[-1] + segment.duration)
    end = boundaries[-1]

    times = plan_break_times(playlist, policy)

    assert times == sorted(set(times))
    assert all(t in boundaries for t in times)
    assert (0.0 in times) == policy.preroll
    assert (end in times) == policy.postroll
    midrolls = [t for t in times if 0 < t < end]
    cues = sorted(boundaries[i] for i in cue_segments if 0 < i < len(playlist.segments))
    if policy.use_cue_points and cues:
        assert midrolls == cues
    elif policy.midroll_every_s is None:
        assert midrolls == []
    else:
        assert len(midrolls) <= end // policy.midroll_every_s


@given(contents, policies, st.data())
def test_planned_pods_stitch_into_valid_output(
    content: Content, policy: BreakPolicy, data: st.DataObject
) -> None:
    ad = data.draw(creatives(0, content.container))
    times = plan_break_times(parse_media_playlist(content.text()), policy)
    pods = session_pods(
        content, tuple(Pod(index=i, at_s=t, ads=(ad,)) for i, t in enumerate(times))
    )
    for name, height in RENDITIONS:
        stitched = stitch(content, name, height, pods)
        if pods:
            output = check_output(content, stitched)
            assert len([d for s in output.segments for d in s.dateranges]) == len(pods)
            assert [p.content_s for p in stitched.pods] == [p.at_s for p in pods]


def outcome(action: Callable[[], object]) -> object:
    """What ``action`` returns, or the message of the PlaylistError it raises."""
    try:
        return action()
    except PlaylistError as err:
        return f"PlaylistError: {err}"


@given(random_playlists, st.booleans())
def test_garbage_raises_only_playlist_error_and_no_pods_matches_compile(
    text: str, with_pod: bool
) -> None:
    path = f"{ROOT}720p/index.m3u8"
    ad = AdCreative(
        ad_id="ad",
        campaign_id="c",
        renditions=(
            AdMedia(name="720p", height=720, container="ts", segments=(("/hls/ads/a/s.ts", 4.0),)),
        ),
    )
    pods = (Pod(index=0, at_s=0.0, ads=(ad,)), Pod(index=1, at_s=7.0, ads=(ad,)))

    def stitched() -> PlaylistTemplate:
        return stitch_media_playlist(
            text,
            playlist_path=path,
            root=ROOT,
            pods=pods if with_pod else (),
            content_height=720,
            content_container="ts",
        ).template

    result = outcome(stitched)  # anything but a PlaylistError propagates and fails
    if not with_pod:
        assert result == outcome(
            lambda: compile_media_playlist(text, playlist_path=path, root=ROOT)
        )

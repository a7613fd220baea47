"""Compiling master playlists: tier filtering, data-saver ordering, golden outputs."""

from __future__ import annotations

import pytest

from hls import (
    ForeignUriError,
    MasterTemplate,
    PlaylistError,
    VariantRef,
    compile_master_playlist,
)
from tests.unit.hls.helpers import MASTER_CASES, MASTER_PATH, ROOT, read_fixture, render_fake


def compile_master(
    text: str, max_height: int | None, preferred_height: int | None = 480
) -> MasterTemplate:
    return compile_master_playlist(
        text,
        playlist_path=MASTER_PATH,
        root=ROOT,
        max_height=max_height,
        preferred_height=preferred_height,
    )


def heights(master: MasterTemplate) -> list[int | None]:
    return [variant.height for variant in master.variants]


@pytest.mark.parametrize(("label", "max_height"), sorted(MASTER_CASES.items()))
def test_golden_output(label: str, max_height: int | None) -> None:
    master = compile_master(read_fixture("master.m3u8"), max_height)

    assert render_fake(master.template) == read_fixture(f"master.{label}.expected.m3u8")
    assert master.render([""] * len(master.paths)).count("?t=") == len(master.paths)


@pytest.mark.parametrize(
    ("max_height", "expected"),
    [
        (480, [480, 360, None]),
        (720, [480, 720, 360, None]),
        (None, [480, 1080, 720, 360, None]),
    ],
)
def test_tier_filter_and_data_saver_first(max_height: int | None, expected: list[int]) -> None:
    master = compile_master(read_fixture("master.m3u8"), max_height)

    assert heights(master) == expected


def test_metadata_for_a_480p_tier() -> None:
    master = compile_master(read_fixture("master.m3u8"), 480)

    assert master.variants[0] == VariantRef("/hls/abc123/480p/index.m3u8", 1_100_000, 480)
    assert master.renditions == frozenset({"480p", "360p", "audio", "subs"})
    assert master.playlist_paths == frozenset(
        {
            "/hls/abc123/480p/index.m3u8",
            "/hls/abc123/360p/index.m3u8",
            "/hls/abc123/audio/en/index.m3u8",
            "/hls/abc123/audio/lg/index.m3u8",
            "/hls/abc123/subs/en/index.m3u8",
            "/hls/abc123/subs/sw/index.m3u8",
            "/hls/abc123/480p/iframes.m3u8",
            "/hls/abc123/360p/iframes.m3u8",
        }
    )
    # Session keys are tokenized but are not playlists.
    assert "/hls/abc123/keys/k0001.key" in master.paths
    assert "/hls/abc123/keys/k0001.key" not in master.playlist_paths
    assert not any("1080p" in path or "720p" in path for path in master.paths)


LADDER = """#EXTM3U
#EXT-X-STREAM-INF:BANDWIDTH=5000000,RESOLUTION=1920x1080
1080p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=2500000,RESOLUTION=1280x720
720p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=500000,RESOLUTION=640x360
360p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=300000,RESOLUTION=426x240
240p/index.m3u8
"""


@pytest.mark.parametrize(
    ("preferred", "expected"),
    [
        (480, [360, 1080, 720, 240]),  # no 480p: the highest rung below it leads
        (720, [720, 1080, 360, 240]),
        (1080, [1080, 720, 360, 240]),
        (200, [1080, 720, 360, 240]),  # nothing at or below: order unchanged
        (None, [1080, 720, 360, 240]),
    ],
)
def test_preferred_height_fallback(preferred: int | None, expected: list[int]) -> None:
    assert heights(compile_master(LADDER, None, preferred)) == expected


def test_preferred_uses_only_kept_variants() -> None:
    assert heights(compile_master(LADDER, 720, 1080)) == [720, 360, 240]


def test_no_variant_left_when_the_tier_allows_none() -> None:
    master = compile_master(LADDER, 144)

    assert master.variants == ()
    assert master.paths == ()
    assert master.render([]) == "#EXTM3U\n"


def test_tags_between_stream_inf_and_uri_travel_with_the_variant() -> None:
    text = (
        "#EXTM3U\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=2500000,RESOLUTION=1280x720\n"
        "#EXT-X-KUSH-NOTE:720\n"
        "720p/index.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=1000000,RESOLUTION=854x480\n"
        "#EXT-X-KUSH-NOTE:480\n"
        "480p/index.m3u8\n"
    )

    assert compile_master(text, None).render(["A", "B"]) == (
        "#EXTM3U\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=1000000,RESOLUTION=854x480\n"
        "#EXT-X-KUSH-NOTE:480\n"
        "480p/index.m3u8?t=A\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=2500000,RESOLUTION=1280x720\n"
        "#EXT-X-KUSH-NOTE:720\n"
        "720p/index.m3u8?t=B\n"
    )


def test_start_offset_in_a_master() -> None:
    master = compile_master(LADDER, 240)

    assert master.render(["X"], start_offset=30) == (
        "#EXTM3U\n#EXT-X-START:TIME-OFFSET=30.000,PRECISE=YES\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=300000,RESOLUTION=426x240\n240p/index.m3u8?t=X\n"
    )


def test_foreign_variant_is_refused() -> None:
    with pytest.raises(ForeignUriError):
        compile_master(read_fixture("foreign_master_variant.m3u8"), 480)


def test_foreign_variant_is_refused_even_when_filtered_out() -> None:
    # The whole origin playlist is checked, whatever the tier keeps.
    with pytest.raises(ForeignUriError):
        compile_master(read_fixture("foreign_master_variant.m3u8"), 360)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("#EXTM3U\n480p/index.m3u8\n", "without EXT-X-STREAM-INF"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n", "without a URI line"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n#EXT-X-STREAM-INF:BANDWIDTH=2\n", "URI line"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:RESOLUTION=1x1\na.m3u8\n", "BANDWIDTH"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=big\na.m3u8\n", "resolution"),
        ("#EXTM3U\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1\n", "without URI"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:6\n", "in a master playlist"),
        ("#EXTM3U\n#EXTINF:6,\n", "in a master playlist"),
        ("#EXTM3U\n#EXT-X-SESSION-KEY:METHOD=AES-128\n", "without URI"),
    ],
)
def test_malformed_masters_are_refused(text: str, message: str) -> None:
    with pytest.raises(PlaylistError, match=message):
        compile_master(text, None)

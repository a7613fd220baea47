"""Writing master playlists: exact text, read back by our parser and by m3u8, bad input."""

from __future__ import annotations

import m3u8
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hls import (
    AudioRendition,
    Resolution,
    VariantStream,
    parse_master_playlist,
    write_master_playlist,
)

LADDER = (
    VariantStream(
        uri="720p/index.m3u8",
        bandwidth=2_845_112,
        average_bandwidth=2_601_977,
        resolution=Resolution(1280, 720),
        frame_rate=24.0,
        codecs="avc1.64001f,mp4a.40.2",
    ),
    VariantStream(
        uri="360p/index.m3u8",
        bandwidth=606_614,
        average_bandwidth=605_235,
        resolution=Resolution(640, 360),
        frame_rate=24000 / 1001,
        codecs="avc1.64001e,mp4a.40.2",
    ),
    VariantStream(
        uri="audio/index.m3u8",
        bandwidth=75_250,
        average_bandwidth=74_625,
        codecs="mp4a.40.2",
    ),
)


def test_a_ladder_as_ingest_writes_it() -> None:
    text = write_master_playlist(LADDER, version=3, independent_segments=True)

    assert text == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=2845112,AVERAGE-BANDWIDTH=2601977,"
        'RESOLUTION=1280x720,FRAME-RATE=24.000,CODECS="avc1.64001f,mp4a.40.2"\n'
        "720p/index.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=606614,AVERAGE-BANDWIDTH=605235,"
        'RESOLUTION=640x360,FRAME-RATE=23.976,CODECS="avc1.64001e,mp4a.40.2"\n'
        "360p/index.m3u8\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=75250,AVERAGE-BANDWIDTH=74625,CODECS="mp4a.40.2"\n'
        "audio/index.m3u8\n"
    )


def test_minimal_playlist_has_only_what_was_given() -> None:
    text = write_master_playlist([VariantStream(uri="a/index.m3u8", bandwidth=1000)])

    assert text == "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\na/index.m3u8\n"


def test_audio_renditions_come_before_the_variants_that_use_them() -> None:
    audio = (
        AudioRendition(
            group_id="aac",
            name="English",
            language="en",
            default=True,
            autoselect=True,
            channels="2",
            uri="audio/en/index.m3u8",
        ),
        AudioRendition(group_id="aac", name="Luganda", language="lg", uri="audio/lg/index.m3u8"),
    )
    variant = VariantStream(
        uri="720p/index.m3u8",
        bandwidth=2_500_000,
        resolution=Resolution(1280, 720),
        codecs="avc1.64001f,mp4a.40.2",
        audio="aac",
    )

    text = write_master_playlist([variant], audio=audio, version=4)

    assert text.splitlines() == [
        "#EXTM3U",
        "#EXT-X-VERSION:4",
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aac",NAME="English",LANGUAGE="en",DEFAULT=YES,'
        'AUTOSELECT=YES,CHANNELS="2",URI="audio/en/index.m3u8"',
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aac",NAME="Luganda",LANGUAGE="lg",DEFAULT=NO,'
        'AUTOSELECT=NO,URI="audio/lg/index.m3u8"',
        "#EXT-X-STREAM-INF:BANDWIDTH=2500000,RESOLUTION=1280x720,"
        'CODECS="avc1.64001f,mp4a.40.2",AUDIO="aac"',
        "720p/index.m3u8",
    ]
    parsed = parse_master_playlist(text)
    assert parsed.version == 4
    assert [
        (r.type, r.group_id, r.name, r.language, r.default, r.uri) for r in parsed.renditions
    ] == [
        ("AUDIO", "aac", "English", "en", True, "audio/en/index.m3u8"),
        ("AUDIO", "aac", "Luganda", "lg", False, "audio/lg/index.m3u8"),
    ]
    assert parsed.variants[0].audio == "aac"
    # An independent reader agrees.
    oracle = m3u8.loads(text)
    assert [media.name for media in oracle.media] == ["English", "Luganda"]
    assert oracle.playlists[0].stream_info.audio == "aac"
    assert oracle.playlists[0].stream_info.bandwidth == 2_500_000


def test_the_m3u8_library_reads_the_ladder() -> None:
    oracle = m3u8.loads(write_master_playlist(LADDER, version=3, independent_segments=True))

    assert oracle.is_variant
    assert [p.uri for p in oracle.playlists] == [v.uri for v in LADDER]
    assert [p.stream_info.bandwidth for p in oracle.playlists] == [v.bandwidth for v in LADDER]
    assert [p.stream_info.resolution for p in oracle.playlists] == [(1280, 720), (640, 360), None]
    assert [p.stream_info.codecs for p in oracle.playlists] == [v.codecs for v in LADDER]


names = st.from_regex(r"[A-Za-z0-9_-]{1,10}", fullmatch=True)
variants = st.builds(
    VariantStream,
    uri=names.map(lambda name: f"{name}/index.m3u8"),
    bandwidth=st.integers(min_value=0, max_value=2**64 - 1),
    average_bandwidth=st.none() | st.integers(min_value=0, max_value=2**64 - 1),
    resolution=st.none() | st.builds(Resolution, st.integers(1, 8192), st.integers(1, 8192)),
    frame_rate=st.none() | st.floats(min_value=0.001, max_value=240, allow_nan=False),
    codecs=st.none() | st.from_regex(r"[a-z0-9.]{1,12}(,[a-z0-9.]{1,12})?", fullmatch=True),
)


@given(ladder=st.lists(variants, min_size=1, max_size=6), version=st.none() | st.integers(1, 9))
def test_what_is_written_parses_back_to_the_same_values(
    ladder: list[VariantStream], version: int | None
) -> None:
    parsed = parse_master_playlist(write_master_playlist(ladder, version=version))

    assert parsed.version == version
    assert [
        (v.uri, v.bandwidth, v.average_bandwidth, v.resolution, v.codecs) for v in parsed.variants
    ] == [(v.uri, v.bandwidth, v.average_bandwidth, v.resolution, v.codecs) for v in ladder]
    for written, given_variant in zip(parsed.variants, ladder, strict=True):
        if given_variant.frame_rate is None:
            assert written.frame_rate is None
        else:  # §4.3.4.2: rounded to three decimal places
            assert written.frame_rate == pytest.approx(given_variant.frame_rate, abs=0.0005)


AUDIO_EN = AudioRendition(group_id="aac", name="English", default=True, autoselect=True)


@pytest.mark.parametrize(
    ("variant_list", "audio", "message"),
    [
        ([], (), "at least one variant"),
        ([VariantStream(uri="a.m3u8", bandwidth=-1)], (), "BANDWIDTH"),
        ([VariantStream(uri="a.m3u8", bandwidth=2**64)], (), "BANDWIDTH"),
        ([VariantStream(uri="a.m3u8", bandwidth=1, average_bandwidth=-5)], (), "AVERAGE"),
        ([VariantStream(uri="a.m3u8", bandwidth=1, codecs='avc1"')], (), "CODECS"),
        ([VariantStream(uri="a.m3u8", bandwidth=1, frame_rate=0.0)], (), "FRAME-RATE"),
        ([VariantStream(uri="a.m3u8", bandwidth=1, frame_rate=float("nan"))], (), "FRAME-RATE"),
        (
            [VariantStream(uri="a.m3u8", bandwidth=1, resolution=Resolution(0, 720))],
            (),
            "RESOLUTION",
        ),
        ([VariantStream(uri="#a.m3u8", bandwidth=1)], (), "URI line"),
        ([VariantStream(uri="a.m3u8\nb.m3u8", bandwidth=1)], (), "URI line"),
        ([VariantStream(uri=" a.m3u8", bandwidth=1)], (), "URI line"),
        ([VariantStream(uri="", bandwidth=1)], (), "URI line"),
        ([VariantStream(uri="a.m3u8", bandwidth=1, audio="aac")], (), "no audio group"),
        (
            [VariantStream(uri="a.m3u8", bandwidth=1, audio="aac")],
            (AudioRendition(group_id="aac", name="English", default=True),),
            "AUTOSELECT",
        ),
        (
            [VariantStream(uri="a.m3u8", bandwidth=1, audio="aac")],
            (AUDIO_EN, AudioRendition(group_id="aac", name="English")),
            "two renditions named",
        ),
        (
            [VariantStream(uri="a.m3u8", bandwidth=1, audio="aac")],
            (AUDIO_EN, AudioRendition(group_id="aac", name="Fr", default=True, autoselect=True)),
            "more than one DEFAULT",
        ),
        (
            [VariantStream(uri="a.m3u8", bandwidth=1, audio="aac")],
            (AudioRendition(group_id="aac", name='Eng"lish'),),
            "NAME",
        ),
    ],
)
def test_input_that_would_make_an_invalid_playlist_is_refused(
    variant_list: list[VariantStream], audio: tuple[AudioRendition, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        write_master_playlist(variant_list, audio=audio)


def test_version_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="EXT-X-VERSION"):
        write_master_playlist(LADDER, version=0)

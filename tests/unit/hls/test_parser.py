"""Parsing playlists into the typed model used for ad stitching and checks."""

from __future__ import annotations

import pytest

from hls import (
    ByteRange,
    CueKind,
    InitSection,
    PlaylistError,
    Resolution,
    Start,
    parse_master_playlist,
    parse_media_playlist,
)
from tests.unit.hls.helpers import MEDIA_CASES, read_fixture


def test_vod_ts() -> None:
    playlist = parse_media_playlist(read_fixture("vod_ts.m3u8"))

    assert playlist.version == 3
    assert playlist.target_duration == 7
    assert playlist.media_sequence == 0
    assert playlist.playlist_type == "VOD"
    assert playlist.endlist
    assert [s.uri for s in playlist.segments] == [f"seg_0000{i}.ts" for i in range(6)]
    assert playlist.duration == pytest.approx(5 * 6.006 + 3.5035)
    assert playlist.trailing_tags == ()


def test_fmp4_maps_apply_until_replaced() -> None:
    playlist = parse_media_playlist(read_fixture("fmp4_map.m3u8"))

    maps = [s.map for s in playlist.segments]
    assert maps == [InitSection(uri="init.mp4")] * 3 + [InitSection(uri="init_v2.mp4")] * 2
    assert [s.discontinuity for s in playlist.segments] == [False, False, False, True, False]
    assert playlist.independent_segments
    assert playlist.media_sequence == 1


def test_byte_ranges() -> None:
    playlist = parse_media_playlist(read_fixture("byterange.m3u8"))

    assert playlist.segments[0].map == InitSection(uri="main.mp4", byterange=ByteRange(1162, 0))
    assert [s.byterange for s in playlist.segments] == [
        ByteRange(598136, 1162),
        ByteRange(601874, None),
        ByteRange(594502, 1201172),
        ByteRange(150231, None),
    ]
    assert str(ByteRange(10, 5)) == "10@5"
    assert str(ByteRange(10, None)) == "10"


def test_key_rotation_and_method_none() -> None:
    playlist = parse_media_playlist(read_fixture("aes128_keys.m3u8"))

    keys = [s.key for s in playlist.segments]
    assert keys[0] is not None
    assert keys[0] is keys[1]
    assert keys[0].uri == "../keys/k0001.key"
    assert keys[0].iv == bytes.fromhex("0000000000000000000000000000A001")
    assert keys[2] is not None
    assert keys[2].uri == "k0002.key"
    assert keys[2].keyformat == "identity"
    assert keys[3] is keys[2]
    assert keys[4] is None  # METHOD=NONE: the credits are clear


def test_unknown_tags_cues_and_dateranges() -> None:
    playlist = parse_media_playlist(read_fixture("unknown_tags.m3u8"))
    segments = playlist.segments

    assert playlist.start == Start(12.5, False)
    assert playlist.media_sequence == 100
    assert playlist.discontinuity_sequence == 2
    assert playlist.header_tags == (
        "#EXT-X-KUSH-FOO:bar",
        "# packaged by kush-ingest 1.4 (ffmpeg 6.1)",
    )
    assert segments[0].program_date_time == "2024-05-01T18:00:00.000+03:00"
    assert segments[0].title == "Opening titles"
    assert segments[1].other_tags == ('#EXT-X-KUSH-SCENE:id=2,label="market, day"',)
    (daterange,) = segments[2].dateranges
    assert daterange.id == "splice-1"
    assert daterange.planned_duration == 30.0
    assert daterange.scte35_out is not None
    assert daterange.scte35_out.startswith("0xFC30")
    assert [(c.kind, c.duration) for c in segments[2].cues] == [
        (CueKind.OATCLS_SCTE35, None),
        (CueKind.OUT, 30.0),
    ]
    assert [(c.kind, c.duration) for c in segments[3].cues] == [(CueKind.OUT_CONT, 30.0)]
    assert [c.kind for c in segments[4].cues] == [CueKind.IN]
    assert segments[4].discontinuity
    assert segments[4].other_tags == ("#EXT-X-GAP",)
    assert playlist.trailing_tags == ("#EXT-X-KUSH-BAZ",)
    assert playlist.endlist


@pytest.mark.parametrize(
    ("line", "duration"),
    [
        ("#EXT-X-CUE-OUT:DURATION=15", 15.0),
        ("#EXT-X-CUE-OUT", None),
        ("#EXT-X-CUE-OUT:soon", None),
        ("#EXT-X-CUE-OUT-CONT:10/30", 30.0),
    ],
)
def test_cue_dialects(line: str, duration: float | None) -> None:
    text = f"#EXTM3U\n#EXT-X-TARGETDURATION:6\n{line}\n#EXTINF:6,\na.ts\n"

    (cue,) = parse_media_playlist(text).segments[0].cues

    assert cue.duration == duration
    assert cue.line == line


def test_crlf_and_whitespace() -> None:
    playlist = parse_media_playlist(read_fixture("crlf.m3u8"))

    assert [s.uri for s in playlist.segments] == ["seg_00000.ts", "seg_00001.ts", "seg_00002.ts"]
    assert playlist.segments[2].key is not None
    assert playlist.segments[2].key.uri == "key.bin"


@pytest.mark.parametrize("name", sorted(MEDIA_CASES))
def test_rewritten_output_parses_like_the_source(name: str) -> None:
    source = parse_media_playlist(read_fixture(f"{name}.m3u8"))
    output = parse_media_playlist(read_fixture(f"{name}.expected.m3u8"))

    assert [s.duration for s in output.segments] == [s.duration for s in source.segments]
    assert [s.byterange for s in output.segments] == [s.byterange for s in source.segments]
    assert output.header_tags == source.header_tags
    # Trailing LL-HLS parts and hints carry URIs, so only their number must match.
    assert len(output.trailing_tags) == len(source.trailing_tags)


def test_master() -> None:
    playlist = parse_master_playlist(read_fixture("master.m3u8"))

    assert playlist.version == 6
    assert playlist.independent_segments
    assert [v.resolution for v in playlist.variants] == [
        Resolution(1920, 1080),
        Resolution(1280, 720),
        Resolution(854, 480),
        Resolution(640, 360),
        None,
    ]
    first = playlist.variants[0]
    assert first.uri == "1080p/index.m3u8"
    assert first.bandwidth == 5_400_000
    assert first.average_bandwidth == 5_000_000
    assert first.codecs == "avc1.640028,mp4a.40.2"
    assert first.frame_rate == 25.0
    assert (first.audio, first.subtitles, first.closed_captions) == ("aac", "subs", "cc")
    assert [(r.type, r.language, r.uri) for r in playlist.renditions] == [
        ("AUDIO", "en", "audio/en/index.m3u8"),
        ("AUDIO", "lg", "audio/lg/index.m3u8"),
        ("SUBTITLES", "en", "subs/en/index.m3u8"),
        ("SUBTITLES", "sw", "subs/sw/index.m3u8"),
        ("CLOSED-CAPTIONS", "en", None),
    ]
    assert playlist.renditions[0].default
    assert playlist.renditions[4].instream_id == "CC1"
    assert [i.uri for i in playlist.iframe_variants] == [
        "1080p/iframes.m3u8",
        "720p/iframes.m3u8",
        "480p/iframes.m3u8",
        "360p/iframes.m3u8",
    ]
    assert [k.uri for k in playlist.session_keys] == ["keys/k0001.key"]
    assert playlist.session_data[0].value == "Kampala Nights"


HEAD = "#EXTM3U\n#EXT-X-TARGETDURATION:6\n"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "#EXT-X-VERSION:3\n",
        HEAD + "#EXTINF:6,\n",
        HEAD + "a.ts\n",
        HEAD + "#EXTINF:6,\n#EXTINF:6,\na.ts\n",
        "#EXTM3U\n#EXTINF:6,\na.ts\n",
        HEAD + "#EXT-X-MEDIA-SEQUENCE:-1\n",
        HEAD + "#EXT-X-KEY:METHOD=AES-128\n",
        HEAD + '#EXT-X-DATERANGE:ID="x"\n',
        HEAD + "#EXT-X-START:PRECISE=YES\n",
        HEAD + "#EXT-X-STREAM-INF:BANDWIDTH=1\n",
    ],
)
def test_malformed_media_playlists(text: str) -> None:
    with pytest.raises(PlaylistError):
        parse_media_playlist(text)


@pytest.mark.parametrize(
    "text",
    [
        "#EXTM3U\na.m3u8\n",
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n",
        '#EXTM3U\n#EXT-X-STREAM-INF:CODECS="x"\na.m3u8\n',
        '#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,NAME="x"\n',
        '#EXTM3U\n#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID="c",NAME="x",URI="a"\n',
        "#EXTM3U\n#EXT-X-SESSION-KEY:METHOD=NONE\n",
        "#EXTM3U\n#EXTINF:6,\n",
    ],
)
def test_malformed_master_playlists(text: str) -> None:
    with pytest.raises(PlaylistError):
        parse_master_playlist(text)

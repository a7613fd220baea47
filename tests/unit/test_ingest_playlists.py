"""Ingest's playlists without ffmpeg: the master it writes and the media playlists it reads."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from admin.ingest import FfmpegError, Rendition, render_master_playlist
from admin.ingest import transcode as transcode_module
from hls import parse_master_playlist


def rendition(
    name: str,
    width: int,
    height: int,
    bandwidth: int,
    average: int,
    codecs: str,
    fps: Fraction | None,
) -> Rendition:
    return Rendition(
        name=name,
        width=width,
        height=height,
        bandwidth=bandwidth,
        average_bandwidth=average,
        codecs=codecs,
        frame_rate=fps,
        segment_count=2,
    )


# Given in no particular order: the master lists video highest first, audio-only last.
LADDER = [
    rendition("audio", 0, 0, 75_250, 74_625, "mp4a.40.2", None),
    rendition("360p", 640, 360, 606_614, 605_235, "avc1.64001e,mp4a.40.2", Fraction(24000, 1001)),
    rendition("720p", 1280, 720, 2_845_112, 2_601_977, "avc1.64001f,mp4a.40.2", Fraction(24)),
    rendition("720p-lo", 1280, 720, 1_900_000, 1_700_000, "avc1.64001f,mp4a.40.2", Fraction(24)),
]


def test_master_playlist_text_is_exactly_what_ingest_has_always_written() -> None:
    assert render_master_playlist(LADDER) == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=2845112,AVERAGE-BANDWIDTH=2601977,RESOLUTION=1280x720,"
        'FRAME-RATE=24.000,CODECS="avc1.64001f,mp4a.40.2"\n'
        "720p/index.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=1900000,AVERAGE-BANDWIDTH=1700000,RESOLUTION=1280x720,"
        'FRAME-RATE=24.000,CODECS="avc1.64001f,mp4a.40.2"\n'
        "720p-lo/index.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=606614,AVERAGE-BANDWIDTH=605235,RESOLUTION=640x360,"
        'FRAME-RATE=23.976,CODECS="avc1.64001e,mp4a.40.2"\n'
        "360p/index.m3u8\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=75250,AVERAGE-BANDWIDTH=74625,CODECS="mp4a.40.2"\n'
        "audio/index.m3u8\n"
    )


def test_master_playlist_parses_back() -> None:
    parsed = parse_master_playlist(render_master_playlist(LADDER))

    assert parsed.independent_segments
    assert [(v.uri, v.bandwidth, v.frame_rate) for v in parsed.variants] == [
        ("720p/index.m3u8", 2_845_112, 24.0),
        ("720p-lo/index.m3u8", 1_900_000, 24.0),
        ("360p/index.m3u8", 606_614, 23.976),
        ("audio/index.m3u8", 75_250, None),
    ]


FFMPEG_PLAYLIST = (
    "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:0\n"
    "#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:6.000000,\nseg_00000.ts\n"
    "#EXTINF:4.016000,\nseg_00001.ts\n#EXT-X-ENDLIST\n"
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "720p" / "index.m3u8"
    path.parent.mkdir()
    path.write_text(text)
    return path


def test_media_playlist_as_ffmpeg_writes_it_is_read(tmp_path: Path) -> None:
    playlist = transcode_module._read_media_playlist(write(tmp_path, FFMPEG_PLAYLIST))

    assert [(s.uri, s.duration) for s in playlist.segments] == [
        ("seg_00000.ts", 6.0),
        ("seg_00001.ts", 4.016),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (FFMPEG_PLAYLIST.replace("#EXT-X-ENDLIST\n", ""), "not a complete VOD playlist"),
        (FFMPEG_PLAYLIST.replace("#EXT-X-PLAYLIST-TYPE:VOD\n", ""), "not a complete VOD"),
        (FFMPEG_PLAYLIST.replace("#EXTINF:6.000000,\n", ""), r"720p/index\.m3u8 is not a valid"),
        (FFMPEG_PLAYLIST.replace("#EXT-X-TARGETDURATION:6\n", ""), "TARGETDURATION"),
        ("not a playlist\n", "EXTM3U"),
    ],
)
def test_incomplete_or_malformed_media_playlists_are_ffmpeg_errors(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(FfmpegError, match=message):
        transcode_module._read_media_playlist(write(tmp_path, text))


def test_a_missing_media_playlist_is_an_ffmpeg_error(tmp_path: Path) -> None:
    with pytest.raises(FfmpegError, match=r"wrote no playlist 720p/index\.m3u8"):
        transcode_module._read_media_playlist(tmp_path / "720p" / "index.m3u8")

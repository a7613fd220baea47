"""Ladder selection, output sizes, H.264 levels, ffmpeg arguments and the master writer."""

from __future__ import annotations

from fractions import Fraction

import pytest

from admin.ingest import (
    DEFAULT_LADDER,
    Rendition,
    Rung,
    build_hls_args,
    h264_codec_string,
    h264_level,
    plan_renditions,
    render_master_playlist,
    scaled_size,
    select_rungs,
)


def _names(rungs: list[Rung]) -> list[str]:
    return [rung.name for rung in rungs]


def _rungs(*names: str) -> list[Rung]:
    return select_rungs(10_000, DEFAULT_LADDER, names=names)


# --- select_rungs -------------------------------------------------------------------


def test_default_ladder_matches_the_design() -> None:
    assert [(r.name, r.height, r.video_bitrate, r.audio_bitrate) for r in DEFAULT_LADDER] == [
        ("1080p", 1080, 5_000_000, 128_000),
        ("720p", 720, 2_500_000, 128_000),
        ("480p", 480, 1_000_000, 96_000),
        ("360p", 360, 500_000, 64_000),
        ("240p", 240, 300_000, 64_000),
        ("audio", 0, 0, 64_000),
    ]
    assert all(r.maxrate >= r.video_bitrate and r.bufsize >= r.maxrate for r in DEFAULT_LADDER)


def test_full_hd_source_gets_every_rung_highest_first_audio_last() -> None:
    assert _names(select_rungs(1080, DEFAULT_LADDER)) == [
        "1080p",
        "720p",
        "480p",
        "360p",
        "240p",
        "audio",
    ]


@pytest.mark.parametrize(
    ("source_height", "top"),
    [(2160, "1080p"), (1079, "720p"), (800, "720p"), (720, "720p"), (576, "480p"), (360, "360p")],
)
def test_no_rung_above_the_source(source_height: int, top: str) -> None:
    rungs = select_rungs(source_height, DEFAULT_LADDER)
    video = [rung for rung in rungs if not rung.is_audio_only]
    assert video[0].name == top
    assert all(rung.height <= source_height for rung in video)


@pytest.mark.parametrize("source_height", [144, 200, 239])
def test_lowest_rung_is_kept_for_a_tiny_source(source_height: int) -> None:
    assert _names(select_rungs(source_height, DEFAULT_LADDER)) == ["240p", "audio"]


def test_names_restrict_the_selection_and_keep_the_height_cap() -> None:
    chosen = select_rungs(720, DEFAULT_LADDER, names=["1080p", "480p", "audio"])
    assert _names(chosen) == ["480p", "audio"]
    assert _names(select_rungs(720, DEFAULT_LADDER, names=["1080p"])) == ["1080p"]


def test_unknown_rung_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="4k"):
        select_rungs(1080, DEFAULT_LADDER, names=["4k"])


# --- sizes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "height", "expected"),
    [
        ((1920, 1080), 1080, (1920, 1080)),
        ((1920, 1080), 720, (1280, 720)),
        ((1920, 1080), 480, (854, 480)),
        ((1920, 1080), 360, (640, 360)),
        ((1920, 1080), 240, (426, 240)),
        ((1440, 1080), 720, (960, 720)),
        ((640, 480), 480, (640, 480)),
        ((640, 480), 360, (480, 360)),
        ((640, 480), 240, (320, 240)),
        ((1920, 800), 480, (1152, 480)),
        ((320, 180), 240, (320, 180)),  # never upscaled
        ((1080, 1920), 720, (406, 720)),  # portrait
    ],
)
def test_scaled_size_keeps_aspect(
    source: tuple[int, int], height: int, expected: tuple[int, int]
) -> None:
    assert scaled_size(*source, height) == expected


@pytest.mark.parametrize(
    "source", [(1920, 1080), (1440, 1080), (1998, 1080), (721, 405), (853, 481)]
)
def test_every_rung_size_is_even(source: tuple[int, int]) -> None:
    for rung in DEFAULT_LADDER:
        if rung.is_audio_only:
            continue
        width, height = scaled_size(*source, rung.height)
        assert width % 2 == 0
        assert height % 2 == 0


# --- levels ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "fps", "level"),
    [
        ((1920, 1080), 24, 40),
        ((1920, 1080), 30, 40),
        ((1920, 1080), 60, 42),
        ((1280, 720), 30, 31),
        ((1280, 720), 60, 32),
        ((854, 480), Fraction(24000, 1001), 30),
        ((640, 360), 25, 30),
        ((426, 240), 30, 21),
    ],
)
def test_h264_level(size: tuple[int, int], fps: Fraction | int, level: int) -> None:
    rung = next(r for r in DEFAULT_LADDER if r.height == size[1])
    assert h264_level(*size, fps, rung.maxrate, rung.bufsize) == level


def test_codec_string_carries_the_level() -> None:
    assert h264_codec_string(40) == "avc1.640028"
    assert h264_codec_string(31) == "avc1.64001f"
    assert h264_codec_string(21) == "avc1.640015"


# --- ffmpeg arguments -----------------------------------------------------------------


def _outputs(args: list[str]) -> dict[str, list[str]]:
    """Split an ffmpeg argument list into per-output option lists keyed by output path."""
    start = args.index("-filter_complex") + 2
    outputs: dict[str, list[str]] = {}
    current: list[str] = []
    index = start
    while index < len(args):
        if args[index].startswith("-"):
            current += args[index : index + 2]
            index += 2
        else:
            outputs[args[index]] = current
            current = []
            index += 1
    return outputs


def _option(options: list[str], name: str) -> str:
    return options[options.index(name) + 1]


def test_build_hls_args_one_output_per_rung_with_aligned_keyframes() -> None:
    rungs = _rungs("720p", "480p", "360p", "audio")
    args = build_hls_args(
        "/in/film.mov",
        "/out",
        rungs,
        fps=24,
        source_width=1280,
        source_height=720,
    )
    # an untrusted upload: a file: URL, local files only, plain containers only
    assert args[:6] == [
        "-format_whitelist",
        "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,flv,mpeg,asf,ogg",
        "-protocol_whitelist",
        "file,pipe",
        "-i",
        "file:/in/film.mov",
    ]
    graph = args[args.index("-filter_complex") + 1]
    assert "split=3" in graph
    # the AAC priming frame is moved onto the first picture, for all four audio users
    assert "asetpts=PTS+1024/48000/TB" in graph
    assert "asplit=4" in graph
    assert graph.count("scale=") == 3
    assert "fps=fps=24" in graph

    outputs = _outputs(args)
    assert list(outputs) == [
        "/out/720p/index.m3u8",
        "/out/480p/index.m3u8",
        "/out/360p/index.m3u8",
        "/out/audio/index.m3u8",
    ]
    levels = {}
    for path, options in outputs.items():
        name = path.split("/")[-2]
        assert _option(options, "-f") == "hls"
        assert _option(options, "-hls_time") == "6"
        assert _option(options, "-hls_playlist_type") == "vod"
        assert _option(options, "-hls_segment_filename") == f"/out/{name}/seg_%05d.ts"
        assert _option(options, "-c:a") == "aac"
        assert _option(options, "-ar") == "48000"
        assert _option(options, "-ac") == "2"
        if name == "audio":
            assert "-c:v" not in options
            assert options.count("-map") == 1
            # the video rungs' B-frame reorder delay: two frames at 24 fps
            assert _option(options, "-output_ts_offset") == "0.083333"
            continue
        assert "-output_ts_offset" not in options
        assert _option(options, "-bf") == "3"
        assert _option(options, "-x264-params") == "b-pyramid=normal"
        assert _option(options, "-c:v") == "libx264"
        assert _option(options, "-profile:v") == "high"
        assert _option(options, "-pix_fmt") == "yuv420p"
        assert _option(options, "-force_key_frames") == "expr:gte(t,n_forced*6)"
        assert _option(options, "-g") == "144"
        assert _option(options, "-keyint_min") == "144"
        assert _option(options, "-sc_threshold") == "0"
        assert _option(options, "-flags") == "+cgop"
        assert _option(options, "-preset") == "veryfast"
        levels[name] = _option(options, "-level:v")
    assert levels == {"720p": "3.1", "480p": "3.0", "360p": "3.0"}


def test_build_hls_args_without_source_audio_maps_video_only() -> None:
    args = build_hls_args(
        "in.mp4",
        "out",
        _rungs("360p", "audio"),
        fps=Fraction(30000, 1001),
        source_width=640,
        source_height=360,
        has_audio=False,
        segment_seconds=4,
    )
    outputs = _outputs(args)
    assert list(outputs) == ["out/360p/index.m3u8"]
    options = outputs["out/360p/index.m3u8"]
    assert options.count("-map") == 1
    assert "-c:a" not in options
    assert _option(options, "-g") == "120"
    assert _option(options, "-force_key_frames") == "expr:gte(t,n_forced*4)"
    assert "fps=fps=30000/1001" in args[args.index("-filter_complex") + 1]
    assert "split" not in args[args.index("-filter_complex") + 1]


def test_plan_renditions_codecs_follow_levels() -> None:
    plans = plan_renditions(
        _rungs("audio", "360p", "1080p"), source_width=1920, source_height=1080, fps=24
    )
    assert [(p.name, p.width, p.height, p.level, p.codecs) for p in plans] == [
        ("1080p", 1920, 1080, "4.0", "avc1.640028,mp4a.40.2"),
        ("360p", 640, 360, "3.0", "avc1.64001e,mp4a.40.2"),
        ("audio", 0, 0, None, "mp4a.40.2"),
    ]


def test_plan_renditions_needs_a_video_rung() -> None:
    with pytest.raises(ValueError, match="video rung"):
        plan_renditions(_rungs("audio"), source_width=640, source_height=360, fps=24)


# --- master playlist ------------------------------------------------------------------


def _rendition(name: str, width: int, height: int, bandwidth: int, codecs: str) -> Rendition:
    return Rendition(
        name=name,
        width=width,
        height=height,
        bandwidth=bandwidth,
        average_bandwidth=bandwidth * 9 // 10,
        codecs=codecs,
        frame_rate=None if height == 0 else Fraction(24000, 1001),
        segment_count=20,
    )


def test_master_playlist_text() -> None:
    renditions = [
        _rendition("audio", 0, 0, 70_000, "mp4a.40.2"),
        _rendition("480p", 854, 480, 1_200_000, "avc1.64001e,mp4a.40.2"),
        _rendition("1080p", 1920, 1080, 5_500_000, "avc1.640028,mp4a.40.2"),
        _rendition("720p", 1280, 720, 2_800_000, "avc1.64001f,mp4a.40.2"),
    ]
    assert render_master_playlist(renditions) == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=5500000,AVERAGE-BANDWIDTH=4950000,RESOLUTION=1920x1080,"
        'FRAME-RATE=23.976,CODECS="avc1.640028,mp4a.40.2"\n'
        "1080p/index.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=2800000,AVERAGE-BANDWIDTH=2520000,RESOLUTION=1280x720,"
        'FRAME-RATE=23.976,CODECS="avc1.64001f,mp4a.40.2"\n'
        "720p/index.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=1200000,AVERAGE-BANDWIDTH=1080000,RESOLUTION=854x480,"
        'FRAME-RATE=23.976,CODECS="avc1.64001e,mp4a.40.2"\n'
        "480p/index.m3u8\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=70000,AVERAGE-BANDWIDTH=63000,CODECS="mp4a.40.2"\n'
        "audio/index.m3u8\n"
    )

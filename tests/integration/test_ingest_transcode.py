"""The HLS ladder transcoder against a real ffmpeg, on media generated at test time."""

from __future__ import annotations

import asyncio
import math
import subprocess
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from admin.ingest import (
    DEFAULT_LADDER,
    FfmpegError,
    HlsPackage,
    build_demo_film,
    find_ffmpeg,
    generate_test_source,
    probe,
    run_ffmpeg,
    select_rungs,
    transcode_to_hls,
)
from admin.ingest import demo as demo_module
from admin.ingest import transcode as transcode_module

SOURCE_SECONDS = 12.0
SEGMENT_SECONDS = 6
RUNGS = ("720p", "480p", "360p", "audio")
VIDEO_HEIGHTS = {"720p": 720, "480p": 480, "360p": 360}


class Built:
    """The package built once for this module, and what happened while building it."""

    def __init__(self, package: HlsPackage, out_dir: Path, progress: list[float]) -> None:
        self.package = package
        self.out_dir = out_dir
        self.progress = progress


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """A 12 s 1280x720 source transcoded to 720p/480p/360p plus audio-only."""
    root = tmp_path_factory.mktemp("ingest")
    progress: list[float] = []

    async def build() -> HlsPackage:
        source = await generate_test_source(
            root / "source.mp4", duration_s=SOURCE_SECONDS, width=1280, height=720
        )
        return await transcode_to_hls(
            source,
            root / "film",
            rungs=select_rungs(720, DEFAULT_LADDER, names=RUNGS),
            on_progress=progress.append,
        )

    package = asyncio.run(build())
    return Built(package, root / "film", progress)


def _media_playlist(path: Path) -> tuple[list[str], list[float], list[str]]:
    lines = path.read_text().splitlines()
    durations = [
        float(line.split(":", 1)[1].rstrip(",")) for line in lines if line.startswith("#EXTINF:")
    ]
    uris = [line for line in lines if line and not line.startswith("#")]
    return lines, durations, uris


@pytest.mark.slow
def test_every_rendition_is_a_complete_aligned_vod_playlist(built: Built) -> None:
    expected_segments = math.ceil(SOURCE_SECONDS / SEGMENT_SECONDS)
    counts = {}
    for name in RUNGS:
        lines, durations, uris = _media_playlist(built.out_dir / name / "index.m3u8")
        assert "#EXT-X-PLAYLIST-TYPE:VOD" in lines
        assert lines[-1] == "#EXT-X-ENDLIST"
        assert len(durations) == expected_segments
        assert durations == pytest.approx([6.0] * expected_segments, abs=0.1)
        assert uris == [f"seg_{index:05d}.ts" for index in range(expected_segments)]
        for uri in uris:
            assert (built.out_dir / name / uri).stat().st_size > 0
        counts[name] = len(uris)
    assert set(counts.values()) == {expected_segments}
    assert [(r.name, r.segment_count) for r in built.package.renditions] == [
        (name, expected_segments) for name in RUNGS
    ]
    assert built.package.duration_s == pytest.approx(SOURCE_SECONDS, abs=0.1)


@pytest.mark.slow
def test_master_lists_renditions_highest_first(built: Built) -> None:
    assert built.package.master_path == built.out_dir / "master.m3u8"
    lines = built.package.master_path.read_text().splitlines()
    assert lines[:3] == ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    assert lines[4::2] == [f"{name}/index.m3u8" for name in RUNGS]
    infos = [_attributes(line) for line in lines[3::2]]
    assert [info.get("RESOLUTION") for info in infos] == ["1280x720", "854x480", "640x360", None]
    assert [info["CODECS"] for info in infos] == [
        '"avc1.64001f,mp4a.40.2"',
        '"avc1.64001e,mp4a.40.2"',
        '"avc1.64001e,mp4a.40.2"',
        '"mp4a.40.2"',
    ]
    bandwidths = [int(info["BANDWIDTH"]) for info in infos]
    assert bandwidths == sorted(bandwidths, reverse=True)
    for info, rendition in zip(infos, built.package.renditions, strict=True):
        assert int(info["BANDWIDTH"]) == rendition.bandwidth
        assert int(info["AVERAGE-BANDWIDTH"]) <= rendition.bandwidth
    # Nominal rates: the measured peaks land near the ladder's video + audio rates.
    rates = {rung.name: rung.video_bitrate + rung.audio_bitrate for rung in DEFAULT_LADDER}
    for rendition in built.package.renditions:
        assert rates[rendition.name] * 0.5 < rendition.bandwidth < rates[rendition.name] * 1.6


def _attributes(line: str) -> dict[str, str]:
    assert line.startswith("#EXT-X-STREAM-INF:")
    body = line.split(":", 1)[1]
    attributes: dict[str, str] = {}
    key, value, quoted = "", "", False
    reading_key = True
    for char in body + ",":
        if reading_key:
            if char == "=":
                reading_key = False
            else:
                key += char
        elif char == '"':
            quoted = not quoted
            value += char
        elif char == "," and not quoted:
            attributes[key] = value
            key, value, reading_key = "", "", True
        else:
            value += char
    return attributes


@pytest.mark.slow
def test_progress_rises_to_one(built: Built) -> None:
    assert built.progress
    assert built.progress == sorted(built.progress)
    assert built.progress[-1] == 1.0
    assert all(0.0 <= fraction <= 1.0 for fraction in built.progress)


@pytest.mark.slow
async def test_poster_is_a_640_wide_jpeg(built: Built) -> None:
    assert built.package.poster_path == built.out_dir / "poster.jpg"
    assert built.package.poster_path.read_bytes()[:2] == b"\xff\xd8"
    info = await probe(built.package.poster_path, ours=True)
    assert (info.width, info.height) == (640, 360)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["720p", "480p", "360p"])
async def test_probe_of_a_segment_reports_the_rendition_height(built: Built, name: str) -> None:
    info = await probe(built.out_dir / name / "seg_00001.ts")
    assert info.height == VIDEO_HEIGHTS[name]
    assert info.video_codec == "h264"
    assert info.audio_codec == "aac"
    assert info.duration_s == pytest.approx(6.0, abs=0.2)


@pytest.mark.slow
async def test_audio_rendition_has_no_picture(built: Built) -> None:
    info = await probe(built.out_dir / "audio" / "seg_00000.ts")
    assert info.has_audio
    assert not info.has_video


@pytest.mark.slow
def test_no_staging_directories_are_left_behind(built: Built) -> None:
    assert sorted(p.name for p in built.out_dir.parent.iterdir()) == ["film", "source.mp4"]
    assert sorted(p.name for p in built.out_dir.iterdir()) == [
        "360p",
        "480p",
        "720p",
        "audio",
        "download.mp4",
        "master.m3u8",
        "poster.jpg",
    ]
    download = built.package.download
    assert download is not None
    assert download.path == built.out_dir / "download.mp4"
    assert (download.rendition, download.height) == ("480p", 480)


@pytest.mark.slow
def test_ffmpeg_plays_the_master_end_to_end(built: Built) -> None:
    result = subprocess.run(
        [
            find_ffmpeg(),
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(built.package.master_path),
            "-map",
            "0",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


@pytest.mark.slow
async def test_transcoding_into_a_non_empty_directory_is_refused(
    built: Built, tmp_path: Path
) -> None:
    (tmp_path / "film").mkdir()
    (tmp_path / "film" / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError):
        await transcode_to_hls(built.out_dir.parent / "source.mp4", tmp_path / "film")
    assert (tmp_path / "film" / "keep.txt").read_text() == "precious"


# --- failures -------------------------------------------------------------------------


@pytest.fixture
def garbage(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.mp4"
    path.write_bytes(b"this is not a film \x00\x01\x02" * 2000)
    return path


async def test_probe_of_garbage_raises_a_short_ffmpeg_error(garbage: Path) -> None:
    with pytest.raises(FfmpegError) as caught:
        await probe(garbage)
    assert len(caught.value.stderr_tail) <= 8
    assert len(str(caught.value)) < 2000


async def test_run_ffmpeg_on_garbage_raises_a_short_ffmpeg_error(garbage: Path) -> None:
    with pytest.raises(FfmpegError) as caught:
        await run_ffmpeg(["-i", str(garbage), "-f", "null", "-"], timeout_s=60)
    error = caught.value
    assert error.returncode not in (None, 0)
    assert 0 < len(error.stderr_tail) <= 8
    assert "Invalid data" in str(error)
    assert len(str(error)) < 2000


async def test_transcode_of_garbage_raises_and_leaves_nothing(
    garbage: Path, tmp_path: Path
) -> None:
    with pytest.raises(FfmpegError):
        await transcode_to_hls(garbage, tmp_path / "out")
    left = await asyncio.to_thread(lambda: sorted(p.name for p in tmp_path.iterdir()))
    assert left == ["garbage.mp4"]


class _SpawnRecorder:
    """Wraps asyncio.create_subprocess_exec to keep the processes that were started."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.processes: list[asyncio.subprocess.Process] = []
        self.started = asyncio.Event()

    async def __call__(self, *args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        process: asyncio.subprocess.Process = await self.real(*args, **kwargs)
        self.processes.append(process)
        self.started.set()
        return process


ENDLESS = ["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25", "-f", "null", "-"]


async def test_timeout_kills_ffmpeg_and_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = _SpawnRecorder(asyncio.create_subprocess_exec)
    monkeypatch.setattr(asyncio, "create_subprocess_exec", recorder)
    with pytest.raises(FfmpegError, match="timed out"):
        await run_ffmpeg(ENDLESS, timeout_s=0.5, duration_s=10)
    (process,) = recorder.processes
    assert process.returncode is not None
    assert process.returncode < 0  # killed by a signal, and reaped


async def test_cancellation_kills_ffmpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = _SpawnRecorder(asyncio.create_subprocess_exec)
    monkeypatch.setattr(asyncio, "create_subprocess_exec", recorder)
    task = asyncio.create_task(run_ffmpeg(ENDLESS, timeout_s=60))
    await recorder.started.wait()
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (process,) = recorder.processes
    assert process.returncode is not None
    assert process.returncode < 0


async def test_misaligned_renditions_are_rejected(tmp_path: Path) -> None:
    plans = transcode_module.plan_renditions(
        select_rungs(720, DEFAULT_LADDER, names=["720p", "360p"]),
        source_width=1280,
        source_height=720,
        fps=24,
    )
    playlists = {
        "720p": [("6.000000", "seg_00000.ts"), ("6.000000", "seg_00001.ts")],
        "360p": [("8.000000", "seg_00000.ts"), ("4.000000", "seg_00001.ts")],
    }
    for name, segments in playlists.items():
        (tmp_path / name).mkdir()
        body = "".join(f"#EXTINF:{d},\n{uri}\n" for d, uri in segments)
        (tmp_path / name / "index.m3u8").write_text(
            f"#EXTM3U\n#EXT-X-TARGETDURATION:8\n#EXT-X-PLAYLIST-TYPE:VOD\n{body}#EXT-X-ENDLIST\n"
        )
        for _, uri in segments:
            (tmp_path / name / uri).write_bytes(b"\x47" * 188)
    with pytest.raises(FfmpegError, match="not aligned"):
        transcode_module._finish_package(tmp_path, plans, Fraction(24))
    assert not (tmp_path / "master.m3u8").exists()


# --- the demo source ------------------------------------------------------------------


@pytest.mark.slow
async def test_test_source_without_drawtext_falls_back_to_a_counter_pattern(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_drawtext(exe: str) -> Any:
        return demo_module._Drawtext(available=False, fontfile=None)

    monkeypatch.setattr(demo_module, "_detect_drawtext", no_drawtext)
    source = await generate_test_source(
        tmp_path / "plain.mp4", duration_s=2, width=320, height=240, fps=25
    )
    info = await probe(source)
    assert (info.width, info.height, info.video_codec, info.audio_codec) == (
        320,
        240,
        "h264",
        "aac",
    )
    assert info.duration_s == pytest.approx(2.0, abs=0.1)


@pytest.mark.slow
async def test_demo_film_has_exactly_the_requested_rungs(tmp_path: Path) -> None:
    progress: list[float] = []
    package = await build_demo_film(
        tmp_path / "demo",
        duration_s=3,
        heights=(360, 240),
        include_audio_only=True,
        on_progress=progress.append,
    )
    assert [(r.name, r.width, r.height, r.segment_count) for r in package.renditions] == [
        ("360p", 640, 360, 1),
        ("240p", 426, 240, 1),
        ("audio", 0, 0, 1),
    ]
    assert package.duration_s == pytest.approx(3.0, abs=0.1)
    assert progress == sorted(progress)
    assert progress[-1] == 1.0
    left = await asyncio.to_thread(lambda: sorted(p.name for p in tmp_path.iterdir()))
    assert left == ["demo"]


async def test_demo_film_rejects_heights_outside_the_ladder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="900"):
        await build_demo_film(tmp_path / "demo", heights=(900,))

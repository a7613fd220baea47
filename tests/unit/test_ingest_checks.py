"""Refusing uploads (pure checks) and the upload/ingest settings."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from admin.ingest.ffmpeg import MediaInfo, SourceRefused, check_source, parse_probe_output
from admin.ingest.transcode import FfmpegError, _restate_audio_durations
from runtime.settings import Settings, SettingsError


def _info(**changes: object) -> MediaInfo:
    values: dict[str, object] = {
        "duration_s": 60.0,
        "width": 1920,
        "height": 1080,
        "has_audio": True,
        "has_video": True,
        "video_codec": "h264",
        "audio_codec": "aac",
        "frame_rate": Fraction(24),
    }
    values.update(changes)
    return MediaInfo(**values)  # type: ignore[arg-type]


def test_a_plain_film_passes() -> None:
    check_source(_info(), max_seconds=3600)
    check_source(_info(width=3840, height=2160), max_seconds=3600)
    check_source(_info(width=2160, height=3840), max_seconds=3600)  # portrait 4K


@pytest.mark.parametrize(
    ("changes", "code", "words"),
    [
        ({"has_video": False, "width": None, "height": None}, "no_video", "no video stream"),
        ({"duration_s": None}, "unreadable", "how long"),
        ({"duration_s": 3601.0}, "too_long", "KUSH_MAX_SOURCE_SECONDS"),
        ({"width": 4096, "height": 2304}, "too_large", "larger than 4K"),
        ({"width": 8000, "height": 100}, "too_large", "8000x100"),
    ],
)
def test_refusals_carry_a_code_and_a_reason(
    changes: dict[str, object], code: str, words: str
) -> None:
    with pytest.raises(SourceRefused) as caught:
        check_source(_info(**changes), max_seconds=3600)
    assert caught.value.code == code
    assert words in caught.value.message


def test_probe_output_names_the_container() -> None:
    stderr = """Input #0, matroska,webm, from 'file:/tmp/a':
  Duration: 00:01:00.50, start: 0.000000, bitrate: 800 kb/s
  Stream #0:0: Video: h264 (High), yuv420p(progressive), 1280x720, 25 fps, 25 tbr
  Stream #0:1: Audio: opus, 48000 Hz, stereo, fltp
"""
    info = parse_probe_output(stderr)
    assert info.container == "matroska,webm"
    assert (info.width, info.height, info.duration_s) == (1280, 720, 60.5)
    assert info.frame_rate == 25


def _playlist(path: Path, durations: list[float]) -> None:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:6", "#EXT-X-PLAYLIST-TYPE:VOD"]
    for index, duration in enumerate(durations):
        lines += [f"#EXTINF:{duration:.6f},", f"seg_{index:05d}.ts"]
    path.write_text("\n".join([*lines, "#EXT-X-ENDLIST"]) + "\n")


def test_audio_only_durations_are_restated_from_the_video(tmp_path: Path) -> None:
    _playlist(tmp_path / "index.m3u8", [6.016, 5.994667, 1.024])
    _restate_audio_durations(tmp_path, "audio", [6.0, 6.0, 1.0], "480p")
    text = (tmp_path / "index.m3u8").read_text()
    assert [line for line in text.splitlines() if line.startswith("#EXTINF")] == [
        "#EXTINF:6.000000,",
        "#EXTINF:6.000000,",
        "#EXTINF:1.000000,",
    ]
    assert text.splitlines()[-1] == "#EXT-X-ENDLIST"


@pytest.mark.parametrize(
    "durations",
    [
        [6.0, 6.0],  # a segment fewer
        [6.1, 5.9, 1.0],  # a cut 100 ms late: more than two AAC frames
        [6.03, 6.03, 0.94],  # each cut 30 ms late: drift adds up past the tolerance
    ],
)
def test_misaligned_audio_is_refused(tmp_path: Path, durations: list[float]) -> None:
    _playlist(tmp_path / "index.m3u8", durations)
    with pytest.raises(FfmpegError, match="not aligned"):
        _restate_audio_durations(tmp_path, "audio", [6.0, 6.0, 1.0], "480p")


def test_upload_and_job_settings() -> None:
    settings = Settings.from_env(
        {
            "KUSH_MAX_UPLOAD_BYTES": "1048576",
            "KUSH_MAX_SOURCE_SECONDS": "7200",
            "KUSH_INGEST_CONCURRENCY": "4",
            "KUSH_JOB_LEASE_SECONDS": "30",
            "KUSH_JOB_MAX_ATTEMPTS": "5",
            "KUSH_INGEST_PRESET": "faster",
        }
    )
    assert (settings.max_upload_bytes, settings.max_source_seconds) == (1048576, 7200)
    assert (settings.ingest_concurrency, settings.job_lease_seconds) == (4, 30)
    assert (settings.job_max_attempts, settings.ingest_preset) == (5, "faster")
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"KUSH_JOB_LEASE_SECONDS": "1", "KUSH_INGEST_PRESET": "turbo"})
    assert [p.split(":")[0] for p in caught.value.problems] == [
        "KUSH_JOB_LEASE_SECONDS",
        "KUSH_INGEST_PRESET",
    ]

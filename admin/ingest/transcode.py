"""Transcode a source into an HLS VOD ladder, checked and written with the ``hls`` core.

One concern, kept in one module on purpose (about 700 lines): planning the rungs, the one
ffmpeg invocation that encodes them and the checks that validate its output all share
the same timing invariants (segment boundaries, first timestamps, audio cut points), and
splitting them would scatter those invariants across files.

Package layout written into ``out_dir`` (later uploaded as ``videos/{id}/...``)::

    master.m3u8                  written here, not by ffmpeg
    {rendition}/index.m3u8       one media playlist per rung (1080p ... 240p, audio)
    {rendition}/seg_00000.ts     MPEG-TS segments, keyframe-aligned across renditions
    poster.jpg
    download.mp4                 the offline copy: one rendition remuxed (`write_download`)

One ffmpeg process decodes the source once and ``split``s the picture into one scaled
H.264 encode per rung, so every encoder sees identical frames and identical keyframe
decisions. The package is built in a hidden staging directory next to ``out_dir`` and
moved into place only when it validates, so an origin never serves half a film.
ffmpeg's media playlists are read with `hls.parse_media_playlist` and the master
playlist is written with `hls.write_master_playlist`. The synthetic demo film is made
in `admin.ingest.demo`.

Timestamps: every rendition's first segment starts at the same instant, audio and
video together, so the timeline a player builds from the first fragment starts at 0
with no hole (hls.js reported ``bufferSeekOverHole`` when the video started 0.1-0.2 s
after the audio). Two things made them differ: the AAC encoder's priming frame (1024
samples; the audio is now shifted by as much, so its first packet sits where the first
picture does) and x264's B-frame reorder delay, which shifts a video rendition's
timestamps by two frames but not an audio-only one (which now gets the same
``output_ts_offset``). `transcode_to_hls` checks the result with `first_timestamps` on
every first segment. The MPEG-TS muxer's own offset (1.4 s, `TS_MUX_OFFSET_S`, the same
in every rendition) stays: ``muxdelay 0`` would remove it but also put every 21 ms AAC
frame in a PES packet of its own, +74 % bytes for the audio-only rendition.

An audio-only rendition is cut on AAC frames (1024 samples, 21.3 ms at 48 kHz), so its
cuts land up to a frame after the video's: 6 s is 281.25 frames, no sample rate a
player takes makes it whole. Its segments hold the same audio as the video renditions'
segments of the same index, so its playlist states the video's durations (after
checking every cut is within two AAC frames of the video's and never drifts): all
renditions of a film, and of an ad creative, then have identical EXTINF values, which
is what the ad stitcher's 1 ms alignment rule (`hls.ads.align_pods`) compares.

The offline download (premium, README "Offline downloads") is the 480p rendition's
segments remuxed, not encoded again, into one progressive MP4 with its index (``moov``)
before the media (``+faststart``), so a phone can start playing a partial file and a
download resumes with Range requests. Copying costs a read and a write of one rendition
and no encoder time; the picture and sound are exactly the 480p stream's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import secrets
import shutil
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Final

import ffmpeg

from admin.ingest.ffmpeg import (
    ALLOWED_CONTAINERS,
    FfmpegError,
    Limits,
    MediaInfo,
    encode_timeout,
    file_url,
    first_timestamps,
    probe,
    run_ffmpeg,
)
from admin.ingest.ladder import (
    DEFAULT_LADDER,
    Rung,
    h264_codec_string,
    h264_level,
    scaled_size,
    select_rungs,
)
from hls import (
    MediaPlaylist,
    PlaylistError,
    Resolution,
    VariantStream,
    parse_media_playlist,
    write_master_playlist,
)
from hls.tags import EXTINF

__all__ = [
    "DOWNLOAD_FILE",
    "DownloadFile",
    "HlsPackage",
    "Rendition",
    "RenditionPlan",
    "build_download_args",
    "build_hls_args",
    "choose_download_rendition",
    "plan_renditions",
    "render_master_playlist",
    "transcode_to_hls",
    "write_download",
]

logger = logging.getLogger(__name__)

MASTER_PLAYLIST: Final = "master.m3u8"
MEDIA_PLAYLIST: Final = "index.m3u8"
POSTER: Final = "poster.jpg"
#: The offline copy's file name in a package (and on the origin, in the version's folder).
DOWNLOAD_FILE: Final = "download.mp4"
#: The offline copy's picture height (DESIGN.md: premium downloads; 480p holds a
#: two-hour film in about 1 GB on the phone).
DOWNLOAD_HEIGHT: Final = 480
SEGMENT_PATTERN: Final = "seg_%05d.ts"
POSTER_WIDTH: Final = 640
#: RFC 6381 codec string of AAC-LC (object type 2), the only audio codec we encode.
AAC_LC_CODECS: Final = "mp4a.40.2"
AUDIO_SAMPLE_RATE: Final = 48_000
#: Samples of the AAC encoder's priming frame (ffmpeg's native encoder).
AAC_PRIMING_SAMPLES: Final = 1024
AAC_FRAME_S: Final = 1024 / AUDIO_SAMPLE_RATE
#: x264 B-frames: three, with a B-pyramid, whatever the preset (ultrafast has none):
#: the reorder delay is then two frames for every video rung.
X264_BFRAMES: Final = 3
X264_REORDER_FRAMES: Final = 2
#: How far an audio-only cut may land from the video's (two AAC frames).
AUDIO_CUT_TOLERANCE_S: Final = 2 * AAC_FRAME_S
#: The MPEG-TS muxer's offset of every timestamp (twice its default 0.7 s ``muxdelay``).
TS_MUX_OFFSET_S: Final = 1.4
#: Largest difference between the first timestamps of two streams or renditions.
START_TOLERANCE_S: Final = 0.001

#: EXT-X-VERSION of the master playlist: 3, as ffmpeg writes in the media playlists
#: (decimal EXTINF durations, RFC 8216 §7); nothing in the master needs more.
MASTER_VERSION: Final = 3

#: How much one segment's duration may differ between the renditions of a film and
#: still count as aligned for switching (RFC 8216 §6.2.4 lets content that is in one
#: variant but not another sit at a segment's start or end). Not the stitcher's
#: `hls.ads.ALIGNMENT_TOLERANCE_S` (1 ms), which bounds how far an ad's EXTINF may be
#: restated in another rendition: an audio-only rendition is cut on 1024-sample AAC
#: frames (21.3 ms at 48 kHz; ffmpeg's cuts come out 16 ms after the video's), so with
#: 1 ms every ladder with an audio-only rung would be refused. 0.1 s holds a frame with
#: room to spare and is far below a segment.
LADDER_ALIGNMENT_TOLERANCE_S: Final = 0.1
_POSTER_TIMEOUT_S: Final = 120.0
_DOWNLOAD_TIMEOUT_S: Final = 120.0
#: Longest trailing audio-only sliver folded into the previous segment; short enough
#: that the merged EXTINF still rounds to the target duration (RFC 8216 §4.3.3.1).
_MAX_TRAILING_FRAGMENT_S: Final = 0.25


@dataclass(frozen=True, slots=True, kw_only=True)
class RenditionPlan:
    """How one rung is encoded for a given source: output size and H.264 level."""

    rung: Rung
    width: int
    height: int
    level_idc: int | None
    codecs: str

    @property
    def name(self) -> str:
        """The rendition's directory name, e.g. ``720p``."""
        return self.rung.name

    @property
    def level(self) -> str | None:
        """The level as x264 takes it, e.g. ``3.1`` (None for audio only)."""
        if self.level_idc is None:
            return None
        return f"{self.level_idc // 10}.{self.level_idc % 10}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rendition:
    """One produced rendition, as listed in the master playlist."""

    name: str
    width: int
    height: int
    bandwidth: int
    average_bandwidth: int
    codecs: str
    frame_rate: Fraction | None
    segment_count: int

    @property
    def is_audio_only(self) -> bool:
        """True for the audio-only variant (no picture)."""
        return self.height == 0

    @property
    def uri(self) -> str:
        """The media playlist's URI relative to the master playlist."""
        return f"{self.name}/{MEDIA_PLAYLIST}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadFile:
    """The progressive MP4 of a package, offered for offline viewing."""

    path: Path
    size: int
    rendition: str
    width: int
    height: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HlsPackage:
    """A finished, validated HLS package on disk (``download``: its offline MP4, if
    one was asked for)."""

    renditions: tuple[Rendition, ...]
    duration_s: float
    master_path: Path
    poster_path: Path
    download: DownloadFile | None = None


def plan_renditions(
    rungs: Sequence[Rung],
    *,
    source_width: int,
    source_height: int,
    fps: Fraction | float,
    has_audio: bool = True,
) -> list[RenditionPlan]:
    """Output sizes, levels and codec strings for the rungs, in master order.

    Video rungs highest first, then audio-only; the audio-only rung is dropped when
    the source has no audio.
    """
    plans: list[RenditionPlan] = []
    for rung in sorted(rungs, key=lambda r: (r.is_audio_only, -r.height)):
        if rung.is_audio_only:
            if has_audio:
                plans.append(
                    RenditionPlan(
                        rung=rung, width=0, height=0, level_idc=None, codecs=AAC_LC_CODECS
                    )
                )
            continue
        size = scaled_size(source_width, source_height, rung.height)
        level_idc = h264_level(size.width, size.height, fps, rung.maxrate, rung.bufsize)
        codecs = h264_codec_string(level_idc)
        if has_audio:
            codecs = f"{codecs},{AAC_LC_CODECS}"
        plans.append(
            RenditionPlan(
                rung=rung,
                width=size.width,
                height=size.height,
                level_idc=level_idc,
                codecs=codecs,
            )
        )
    if not any(plan.level_idc is not None for plan in plans):
        raise ValueError("an HLS ladder needs at least one video rung")
    return plans


def _fps_arg(fps: Fraction) -> str:
    return str(fps.numerator) if fps.denominator == 1 else f"{fps.numerator}/{fps.denominator}"


def build_hls_args(
    src: Path | str,
    out_dir: Path | str,
    rungs: Sequence[Rung],
    *,
    fps: Fraction | float,
    source_width: int,
    source_height: int,
    has_audio: bool = True,
    segment_seconds: int = 6,
    preset: str = "veryfast",
) -> list[str]:
    """The ffmpeg arguments (without the executable) that encode every rung at once.

    The source is decoded once, converted to constant frame rate and 4:2:0, and
    ``split`` into one scaled H.264 High encode per video rung (AAC-LC 48 kHz stereo
    muxed in); an audio-only rung gets AAC alone. Keyframes are forced at every
    ``segment_seconds`` of output time with scene-cut detection off and closed GOPs,
    so every rendition cuts its segments at the same instants (RFC 8216 §6.2.4:
    variants must be aligned for a client to switch between them).
    """
    rate = Fraction(fps).limit_denominator(1001)
    out = Path(out_dir)
    plans = plan_renditions(
        rungs,
        source_width=source_width,
        source_height=source_height,
        fps=rate,
        has_audio=has_audio,
    )
    video_plans = [plan for plan in plans if plan.level_idc is not None]
    source = ffmpeg.input(
        file_url(src),
        protocol_whitelist="file,pipe",
        format_whitelist=",".join(ALLOWED_CONTAINERS),
    )
    frames = source["v:0"].filter("fps", fps=_fps_arg(rate)).filter("format", "yuv420p")
    branches = frames.split() if len(video_plans) > 1 else None
    # The priming frame is put where the first picture is (see the module docstring).
    audio_users = sum(1 for plan in plans if has_audio or plan.level_idc is None)
    audio = source["a:0"].filter("asetpts", f"PTS+{AAC_PRIMING_SAMPLES}/{AUDIO_SAMPLE_RATE}/TB")
    audio_branches = audio.asplit() if audio_users > 1 else None
    audio_index = 0
    reorder_delay = Fraction(X264_REORDER_FRAMES) / rate if video_plans else Fraction(0)
    gop = math.ceil(rate * segment_seconds)
    outputs: list[Any] = []
    branch_index = 0
    for plan in plans:
        hls_options: dict[str, Any] = {
            "f": "hls",
            "hls_time": segment_seconds,
            "hls_playlist_type": "vod",
            "hls_segment_type": "mpegts",
            "hls_segment_filename": str(out / plan.name / SEGMENT_PATTERN),
            "start_number": 0,
            "max_muxing_queue_size": 4096,
            "map_metadata": -1,
        }
        audio_options: dict[str, Any] = {
            "c:a": "aac",
            "profile:a": "aac_low",
            "b:a": plan.rung.audio_bitrate,
            "ar": AUDIO_SAMPLE_RATE,
            "ac": 2,
        }
        streams: list[Any] = []
        options = dict(hls_options)

        def next_audio() -> Any:
            nonlocal audio_index
            stream = audio if audio_branches is None else audio_branches[audio_index]
            audio_index += 1
            return stream

        if plan.level_idc is None:
            streams.append(next_audio())
            options.update(audio_options)
            if reorder_delay:
                options["output_ts_offset"] = f"{float(reorder_delay):.6f}"
        else:
            branch = frames if branches is None else branches[branch_index]
            branch_index += 1
            streams.append(branch.filter("scale", plan.width, plan.height).filter("setsar", "1"))
            options.update(
                {
                    "c:v": "libx264",
                    "preset": preset,
                    "profile:v": "high",
                    "level:v": plan.level,
                    "pix_fmt": "yuv420p",
                    "b:v": plan.rung.video_bitrate,
                    "maxrate:v": plan.rung.maxrate,
                    "bufsize:v": plan.rung.bufsize,
                    # Aligned, closed GOPs: a forced IDR at every segment boundary, the
                    # GOP never longer than a segment, no extra scene-cut keyframes.
                    "force_key_frames": f"expr:gte(t,n_forced*{segment_seconds})",
                    "forced-idr": 1,
                    "g": gop,
                    "keyint_min": gop,
                    "sc_threshold": 0,
                    "flags": "+cgop",
                    "bf": X264_BFRAMES,
                    "x264-params": "b-pyramid=normal",
                }
            )
            if has_audio:
                streams.append(next_audio())
                options.update(audio_options)
        outputs.append(ffmpeg.output(*streams, str(out / plan.name / MEDIA_PLAYLIST), **options))
    args: list[str] = ffmpeg.merge_outputs(*outputs).get_args()
    return args


def render_master_playlist(renditions: Sequence[Rendition]) -> str:
    """The master playlist text: video variants highest first, audio-only last.

    BANDWIDTH is the peak segment bit rate and AVERAGE-BANDWIDTH the mean over the
    whole presentation (RFC 8216 §4.3.4.2); the audio-only variant has no RESOLUTION
    or FRAME-RATE. INDEPENDENT-SEGMENTS holds (§4.3.5.1): every segment starts with
    a forced IDR frame (`build_hls_args`).
    """
    ordered = sorted(renditions, key=lambda r: (r.is_audio_only, -r.height, -r.bandwidth))
    variants = [
        VariantStream(
            uri=rendition.uri,
            bandwidth=rendition.bandwidth,
            average_bandwidth=rendition.average_bandwidth,
            resolution=None
            if rendition.is_audio_only
            else Resolution(rendition.width, rendition.height),
            frame_rate=None
            if rendition.is_audio_only or rendition.frame_rate is None
            else float(rendition.frame_rate),
            codecs=rendition.codecs,
        )
        for rendition in ordered
    ]
    return write_master_playlist(variants, version=MASTER_VERSION, independent_segments=True)


def _read_media_playlist(path: Path) -> MediaPlaylist:
    """Read a VOD media playlist ffmpeg wrote; `FfmpegError` unless it is complete."""
    name = f"{path.parent.name}/{path.name}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise FfmpegError(f"ffmpeg wrote no playlist {name}") from err
    try:
        playlist = parse_media_playlist(text)
    except PlaylistError as err:
        raise FfmpegError(f"{name} is not a valid media playlist: {err}") from err
    # §4.3.3.5 and §4.3.3.4: a VOD playlist is complete and will not change.
    if not (playlist.endlist and playlist.playlist_type == "VOD" and playlist.segments):
        raise FfmpegError(f"{name} is not a complete VOD playlist")
    return playlist


def _measure(
    plan: RenditionPlan, directory: Path, fps: Fraction
) -> tuple[Rendition, tuple[float, ...]]:
    """Measure a rendition's peak and average bit rate from its segment files.

    Returns the rendition and its segment durations (EXTINF, in playlist order).
    """
    playlist = _read_media_playlist(directory / MEDIA_PLAYLIST)
    peak = 0.0
    total_bits = 0
    for segment in playlist.segments:
        duration, uri = segment.duration, segment.uri
        if "/" in uri or uri in {".", ".."}:
            raise FfmpegError(f"unexpected segment URI {uri!r} in {plan.name}")
        try:
            bits = (directory / uri).stat().st_size * 8
        except FileNotFoundError as err:
            raise FfmpegError(f"segment {plan.name}/{uri} is missing") from err
        total_bits += bits
        if duration > 0:
            peak = max(peak, bits / duration)
    durations = tuple(segment.duration for segment in playlist.segments)
    total_duration = sum(durations)
    rendition = Rendition(
        name=plan.name,
        width=plan.width,
        height=plan.height,
        bandwidth=math.ceil(peak),
        average_bandwidth=math.ceil(total_bits / total_duration) if total_duration else 0,
        codecs=plan.codecs,
        frame_rate=None if plan.level_idc is None else fps,
        segment_count=len(durations),
    )
    return rendition, durations


def _fold_trailing_fragment(directory: Path, expected_segments: int) -> None:
    """Fold an audio-only rendition's extra sliver of a last segment into the one before.

    With no video, ffmpeg cuts audio at the first AAC frame at or after each boundary,
    and the encoder's priming frame makes the audio last ~21 ms longer than the video:
    when the film ends on a segment boundary this leaves one extra, tiny segment, and
    the renditions no longer have the same segment count. MPEG-TS segments written by
    one muxer concatenate into a valid stream, so the sliver is appended to the
    previous segment and the playlist entry merged.
    """
    segments = _read_media_playlist(directory / MEDIA_PLAYLIST).segments
    if len(segments) != expected_segments + 1 or expected_segments == 0:
        return
    fragment = segments[-1].duration
    merged = segments[-2].duration + fragment
    if fragment > _MAX_TRAILING_FRAGMENT_S:
        return
    last, previous = directory / segments[-1].uri, directory / segments[-2].uri
    with previous.open("ab") as target:
        target.write(last.read_bytes())
    last.unlink()
    # An edit of ffmpeg's text, where each EXTINF is followed by its URI line (§4.3.2.1).
    lines = (directory / MEDIA_PLAYLIST).read_text(encoding="utf-8").splitlines()
    extinf = [index for index, line in enumerate(lines) if line.startswith(f"{EXTINF}:")]
    # Drop the last EXTINF and its URI line; the one before now covers both.
    del lines[extinf[-1] : extinf[-1] + 2]
    lines[extinf[-2]] = f"{EXTINF}:{merged:.6f},"
    (directory / MEDIA_PLAYLIST).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _restate_audio_durations(
    directory: Path, name: str, reference: Sequence[float], reference_name: str
) -> None:
    """Give an audio-only rendition the video's segment durations (module docstring).

    Refused (`FfmpegError`) unless it has as many segments and every cut, counted from
    the start, is within `AUDIO_CUT_TOLERANCE_S` of the video's: the segments then hold
    the audio of the same stretch of the film, only cut on AAC frames.
    """
    playlist_path = directory / MEDIA_PLAYLIST
    durations = [s.duration for s in _read_media_playlist(playlist_path).segments]
    if len(durations) != len(reference):
        raise FfmpegError(
            f"renditions are not aligned: {name} has {len(durations)} segments, "
            f"{reference_name} has {len(reference)}"
        )
    ours = theirs = 0.0
    for index, (duration, expected) in enumerate(zip(durations, reference, strict=True)):
        ours += duration
        theirs += expected
        if abs(ours - theirs) > AUDIO_CUT_TOLERANCE_S + 1e-6:
            raise FfmpegError(
                f"renditions are not aligned: {name} segment {index} ends at {ours:.3f} s, "
                f"{reference_name}'s at {theirs:.3f} s"
            )
    lines = playlist_path.read_text(encoding="utf-8").splitlines()
    extinf = iter(reference)
    for index, line in enumerate(lines):
        if line.startswith(f"{EXTINF}:"):
            lines[index] = f"{EXTINF}:{next(extinf):.6f},"
    playlist_path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _finish_package(
    staging: Path, plans: Sequence[RenditionPlan], fps: Fraction
) -> tuple[list[Rendition], float]:
    """Validate alignment across renditions and write our own master playlist."""
    reference_plan = next(plan for plan in plans if plan.level_idc is not None)
    reference_playlist = _read_media_playlist(staging / reference_plan.name / MEDIA_PLAYLIST)
    expected = len(reference_playlist.segments)
    video_durations = [segment.duration for segment in reference_playlist.segments]
    for plan in plans:
        if plan.level_idc is None:
            _fold_trailing_fragment(staging / plan.name, expected)
            _restate_audio_durations(
                staging / plan.name, plan.name, video_durations, reference_plan.name
            )
    measured = [_measure(plan, staging / plan.name, fps) for plan in plans]
    reference_name = measured[0][0].name
    reference = measured[0][1]
    for rendition, durations in measured[1:]:
        if len(durations) != len(reference):
            raise FfmpegError(
                f"renditions are not aligned: {rendition.name} has "
                f"{len(durations)} segments, {reference_name} has {len(reference)}"
            )
        for index, (ours, theirs) in enumerate(zip(durations, reference, strict=True)):
            if abs(ours - theirs) > LADDER_ALIGNMENT_TOLERANCE_S:
                raise FfmpegError(
                    f"renditions are not aligned: segment {index} lasts {ours:.3f} s in "
                    f"{rendition.name} and {theirs:.3f} s in {reference_name}"
                )
    renditions = [rendition for rendition, _ in measured]
    (staging / MASTER_PLAYLIST).write_text(render_master_playlist(renditions), encoding="utf-8")
    return renditions, sum(reference)


async def check_start_times(package_dir: Path, names: Sequence[str]) -> float:
    """Every stream of every rendition's first segment starts at the same instant;
    returns it (`FfmpegError` otherwise)."""
    starts: dict[str, float] = {}
    for name in names:
        first_segment = package_dir / name / (SEGMENT_PATTERN % 0)
        found = await first_timestamps(first_segment)
        for kind, start in found.items():
            starts[f"{name} {kind}"] = start
    if not starts:
        raise FfmpegError("the first segments hold no audio or video")
    low, high = min(starts.values()), max(starts.values())
    if high - low > START_TOLERANCE_S:
        described = ", ".join(f"{k} {v:.3f} s" for k, v in sorted(starts.items()))
        raise FfmpegError(f"renditions do not start together: {described}")
    return low


def _prepare_staging(out_dir: Path, names: Sequence[str]) -> Path:
    """Create a hidden staging directory beside ``out_dir`` with one folder per rung."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} exists and is not an empty directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.partial-{secrets.token_hex(4)}"
    staging.mkdir()
    for name in names:
        (staging / name).mkdir()
    return staging


def _publish(staging: Path, out_dir: Path) -> None:
    """Move the finished package into place (rename replaces an empty directory)."""
    os.replace(staging, out_dir)


async def _extract_poster(src: Path, dest: Path, at_s: float) -> None:
    """Write one frame at ``at_s`` as a JPEG ``POSTER_WIDTH`` pixels wide."""
    args = (
        ffmpeg.input(
            file_url(src),
            ss=f"{at_s:.3f}",
            protocol_whitelist="file,pipe",
            format_whitelist=",".join(ALLOWED_CONTAINERS),
        )
        .video.filter("scale", POSTER_WIDTH, -2)
        .filter("setsar", "1")
        .output(str(dest), vframes=1, update=1, **{"q:v": 3})
        .get_args()
    )
    await run_ffmpeg(args, timeout_s=_POSTER_TIMEOUT_S)
    if not await asyncio.to_thread(dest.is_file):
        raise FfmpegError(f"no frame at {at_s:.1f} s for the poster")


def choose_download_rendition(renditions: Sequence[Rendition]) -> Rendition | None:
    """The rendition the offline MP4 is made of: the tallest video rendition at most
    `DOWNLOAD_HEIGHT` high, else (a ladder without one) the smallest video rendition;
    None without video."""
    videos = [r for r in renditions if not r.is_audio_only]
    if not videos:
        return None
    fitting = [r for r in videos if r.height <= DOWNLOAD_HEIGHT]
    if fitting:
        return max(fitting, key=lambda r: (r.height, r.bandwidth))
    return min(videos, key=lambda r: (r.height, r.bandwidth))


def build_download_args(playlist: Path, out: Path) -> list[str]:
    """The ffmpeg arguments that remux a rendition of ours (its VOD media playlist) into
    one progressive MP4: streams copied, the first video and (if any) audio stream only,
    the index written first (``+faststart``). Our own files: only the ``file`` protocol,
    through the ``hls`` demuxer."""
    return [
        "-protocol_whitelist",
        "file",
        "-f",
        "hls",
        "-i",
        file_url(playlist),
        "-map",
        "0:v:0",
        "-map",
        "0:a:0?",
        "-c",
        "copy",
        "-map_metadata",
        "-1",
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
        "-y",
        str(out),
    ]


async def write_download(
    package_dir: Path, renditions: Sequence[Rendition], *, duration_s: float
) -> DownloadFile | None:
    """Write ``download.mp4`` into ``package_dir`` from the rendition
    `choose_download_rendition` picks (`FfmpegError` if ffmpeg fails); None without a
    video rendition."""
    chosen = choose_download_rendition(renditions)
    if chosen is None:
        return None
    out = package_dir / DOWNLOAD_FILE
    args = build_download_args(package_dir / chosen.name / MEDIA_PLAYLIST, out)
    # a copy: bounded by reading and writing one rendition, not by an encoder
    await run_ffmpeg(args, timeout_s=_DOWNLOAD_TIMEOUT_S + duration_s)
    try:
        size = (await asyncio.to_thread(out.stat)).st_size
    except FileNotFoundError as err:
        raise FfmpegError("ffmpeg wrote no download file") from err
    if size == 0:
        raise FfmpegError("ffmpeg wrote an empty download file")
    return DownloadFile(
        path=out, size=size, rendition=chosen.name, width=chosen.width, height=chosen.height
    )


def output_budget(plans: Sequence[RenditionPlan], duration_s: float) -> int:
    """The most bytes a package may take: twice every rung's peak rate over the film,
    plus room for playlists, the poster and short films' overheads."""
    bits_per_s = sum(plan.rung.maxrate + plan.rung.audio_bitrate for plan in plans)
    return int(bits_per_s / 8 * max(duration_s, 1.0) * 2) + 64 * 1024 * 1024


def _tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


async def _guard_output(staging: Path, max_bytes: int, every_s: float = 1.0) -> None:
    """Raise `FfmpegError` as soon as the package grows over ``max_bytes``."""
    while True:
        await asyncio.sleep(every_s)
        size = await asyncio.to_thread(_tree_size, staging)
        if size > max_bytes:
            raise FfmpegError(f"the output grew over its limit of {max_bytes} bytes")


async def _run_guarded(encode: Awaitable[None], staging: Path, max_bytes: int) -> None:
    """Run the encode while watching the output size; whichever fails first wins."""
    tasks = [
        asyncio.ensure_future(encode),
        asyncio.ensure_future(_guard_output(staging, max_bytes)),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def transcode_to_hls(
    src: Path,
    out_dir: Path,
    *,
    rungs: Sequence[Rung] | None = None,
    on_progress: Callable[[float], None] | None = None,
    timeout_s: float | None = None,
    segment_seconds: int = 6,
    preset: str = "veryfast",
    info: MediaInfo | None = None,
    limits: Limits | None = None,
    max_output_bytes: int | None = None,
    download: bool = True,
) -> HlsPackage:
    """Transcode ``src`` into a validated HLS package in ``out_dir``.

    ``rungs`` (default `DEFAULT_LADDER`) is cut down by `select_rungs` to those that
    fit the source. ``out_dir``
    must not exist or be empty; it appears only once the package is complete.
    Progress is reported as a fraction in [0, 1]. Raises `FfmpegError` when ffmpeg
    fails or times out (``timeout_s`` defaults to ten times the duration plus ten
    minutes), passes ``limits`` or ``max_output_bytes`` (default `output_budget`), or
    when the renditions come out misaligned. ``info`` is the source's probe, if known.
    ``download``: also write the offline MP4 (`write_download`; ads need none).
    """
    if info is None:
        info = await probe(src)
    if not info.has_video or info.width is None or info.height is None:
        raise FfmpegError(f"{src.name} has no video stream to transcode")
    # Explicit rungs get the same rule as the default ladder: none above the source.
    chosen = select_rungs(info.height, DEFAULT_LADDER if rungs is None else rungs)
    fps = _output_rate(info)
    plans = plan_renditions(
        chosen,
        source_width=info.width,
        source_height=info.height,
        fps=fps,
        has_audio=info.has_audio,
    )
    budget = max_output_bytes or output_budget(plans, info.duration_s or 3600.0)
    staging = await asyncio.to_thread(_prepare_staging, out_dir, [plan.name for plan in plans])
    try:
        args = build_hls_args(
            src,
            staging,
            [plan.rung for plan in plans],
            fps=fps,
            source_width=info.width,
            source_height=info.height,
            has_audio=info.has_audio,
            segment_seconds=segment_seconds,
            preset=preset,
        )
        encode_share = 0.97
        await _run_guarded(
            run_ffmpeg(
                args,
                on_progress=None
                if on_progress is None
                else (lambda f: on_progress(f * encode_share)),
                duration_s=info.duration_s,
                timeout_s=timeout_s if timeout_s is not None else encode_timeout(info.duration_s),
                limits=limits,
            ),
            staging,
            budget,
        )
        renditions, duration = await asyncio.to_thread(_finish_package, staging, plans, fps)
        await check_start_times(staging, [plan.name for plan in plans])
        offline = (
            await write_download(staging, renditions, duration_s=duration) if download else None
        )
        await _extract_poster(src, staging / POSTER, at_s=duration * 0.1)
        await asyncio.to_thread(_publish, staging, out_dir)
    except BaseException:
        await asyncio.shield(asyncio.to_thread(shutil.rmtree, staging, ignore_errors=True))
        raise
    if on_progress is not None:
        on_progress(1.0)
    logger.info("transcoded %s into %d renditions (%.1f s)", src.name, len(renditions), duration)
    return HlsPackage(
        renditions=tuple(renditions),
        duration_s=duration,
        master_path=out_dir / MASTER_PLAYLIST,
        poster_path=out_dir / POSTER,
        download=None
        if offline is None
        else dataclasses.replace(offline, path=out_dir / DOWNLOAD_FILE),
    )


def _output_rate(info: MediaInfo) -> Fraction:
    """The constant frame rate to encode at: the source's, halved until at most 60."""
    rate = info.frame_rate if info.frame_rate and info.frame_rate > 0 else Fraction(25)
    while rate > 60:
        rate /= 2
    return rate

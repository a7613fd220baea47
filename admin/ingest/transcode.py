"""Transcode a source into an HLS VOD ladder, and generate the synthetic demo film.

Package layout written into ``out_dir`` (later uploaded as ``videos/{id}/...``)::

    master.m3u8                  written here, not by ffmpeg
    {rendition}/index.m3u8       one media playlist per rung (1080p ... 240p, audio)
    {rendition}/seg_00000.ts     MPEG-TS segments, keyframe-aligned across renditions
    poster.jpg

One ffmpeg process decodes the source once and ``split``s the picture into one scaled
H.264 encode per rung, so every encoder sees identical frames and identical keyframe
decisions. The package is built in a hidden staging directory next to ``out_dir`` and
moved into place only when it validates, so an origin never serves half a film.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Final, NamedTuple

import ffmpeg

from admin.ingest.ffmpeg import (
    FfmpegError,
    MediaInfo,
    find_ffmpeg,
    kill_and_reap,
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

__all__ = [
    "HlsPackage",
    "Rendition",
    "RenditionPlan",
    "build_demo_film",
    "build_hls_args",
    "generate_test_source",
    "plan_renditions",
    "render_master_playlist",
    "transcode_to_hls",
]

logger = logging.getLogger(__name__)

MASTER_PLAYLIST: Final = "master.m3u8"
MEDIA_PLAYLIST: Final = "index.m3u8"
POSTER: Final = "poster.jpg"
SEGMENT_PATTERN: Final = "seg_%05d.ts"
POSTER_WIDTH: Final = 640
#: RFC 6381 codec string of AAC-LC (object type 2), the only audio codec we encode.
AAC_LC_CODECS: Final = "mp4a.40.2"
AUDIO_SAMPLE_RATE: Final = 48_000

# Tag names (RFC 8216 §4.3); the gateway's HLS core owns the full set.
_EXTM3U: Final = "#EXTM3U"
_EXT_X_VERSION: Final = "#EXT-X-VERSION"
_EXT_X_INDEPENDENT_SEGMENTS: Final = "#EXT-X-INDEPENDENT-SEGMENTS"
_EXT_X_STREAM_INF: Final = "#EXT-X-STREAM-INF"
_EXTINF: Final = "#EXTINF"
_EXT_X_ENDLIST: Final = "#EXT-X-ENDLIST"
_EXT_X_PLAYLIST_TYPE: Final = "#EXT-X-PLAYLIST-TYPE"

#: Renditions' segment durations may differ by this much and still count as aligned
#: (an audio-only rendition is cut on 1024-sample AAC frames, ~21 ms at 48 kHz).
ALIGNMENT_TOLERANCE_S: Final = 0.1
_POSTER_TIMEOUT_S: Final = 120.0
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
class HlsPackage:
    """A finished, validated HLS package on disk."""

    renditions: tuple[Rendition, ...]
    duration_s: float
    master_path: Path
    poster_path: Path


class _MediaPlaylist(NamedTuple):
    durations: tuple[float, ...]
    uris: tuple[str, ...]


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
    source = ffmpeg.input(str(src))
    frames = source["v:0"].filter("fps", fps=_fps_arg(rate)).filter("format", "yuv420p")
    branches = frames.split() if len(video_plans) > 1 else None
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
        if plan.level_idc is None:
            streams.append(source["a:0"])
            options.update(audio_options)
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
                }
            )
            if has_audio:
                streams.append(source["a:0"])
                options.update(audio_options)
        outputs.append(ffmpeg.output(*streams, str(out / plan.name / MEDIA_PLAYLIST), **options))
    args: list[str] = ffmpeg.merge_outputs(*outputs).get_args()
    return args


def render_master_playlist(renditions: Sequence[Rendition]) -> str:
    """The master playlist text: video variants highest first, audio-only last.

    BANDWIDTH is the peak segment bit rate and AVERAGE-BANDWIDTH the mean over the
    whole presentation (RFC 8216 §4.3.4.2).
    """
    lines = [_EXTM3U, f"{_EXT_X_VERSION}:3", _EXT_X_INDEPENDENT_SEGMENTS]
    ordered = sorted(renditions, key=lambda r: (r.is_audio_only, -r.height, -r.bandwidth))
    for rendition in ordered:
        attributes = [
            f"BANDWIDTH={rendition.bandwidth}",
            f"AVERAGE-BANDWIDTH={rendition.average_bandwidth}",
        ]
        if not rendition.is_audio_only:
            attributes.append(f"RESOLUTION={rendition.width}x{rendition.height}")
            if rendition.frame_rate is not None:
                attributes.append(f"FRAME-RATE={float(rendition.frame_rate):.3f}")
        attributes.append(f'CODECS="{rendition.codecs}"')
        lines.append(f"{_EXT_X_STREAM_INF}:{','.join(attributes)}")
        lines.append(rendition.uri)
    return "\n".join(lines) + "\n"


def _read_media_playlist(path: Path) -> _MediaPlaylist:
    """Read the segment durations and URIs of a VOD media playlist ffmpeg wrote."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise FfmpegError(f"ffmpeg wrote no playlist {path.parent.name}/{path.name}") from err
    durations: list[float] = []
    uris: list[str] = []
    pending: float | None = None
    has_endlist = is_vod = False
    for line in (raw.strip() for raw in text.splitlines()):
        if line.startswith(f"{_EXTINF}:"):
            pending = float(line[len(_EXTINF) + 1 :].split(",", 1)[0])
        elif line == _EXT_X_ENDLIST:
            has_endlist = True
        elif line == f"{_EXT_X_PLAYLIST_TYPE}:VOD":
            is_vod = True
        elif line and not line.startswith("#"):
            if pending is None:
                raise FfmpegError(f"segment {line} in {path.parent.name} has no EXTINF")
            durations.append(pending)
            uris.append(line)
            pending = None
    if not (has_endlist and is_vod and uris):
        raise FfmpegError(f"{path.parent.name}/{path.name} is not a complete VOD playlist")
    return _MediaPlaylist(tuple(durations), tuple(uris))


def _measure(
    plan: RenditionPlan, directory: Path, fps: Fraction
) -> tuple[Rendition, _MediaPlaylist]:
    """Measure a rendition's peak and average bit rate from its segment files."""
    playlist = _read_media_playlist(directory / MEDIA_PLAYLIST)
    peak = 0.0
    total_bits = 0
    for duration, uri in zip(playlist.durations, playlist.uris, strict=True):
        if "/" in uri or uri in {".", ".."}:
            raise FfmpegError(f"unexpected segment URI {uri!r} in {plan.name}")
        try:
            bits = (directory / uri).stat().st_size * 8
        except FileNotFoundError as err:
            raise FfmpegError(f"segment {plan.name}/{uri} is missing") from err
        total_bits += bits
        if duration > 0:
            peak = max(peak, bits / duration)
    total_duration = sum(playlist.durations)
    rendition = Rendition(
        name=plan.name,
        width=plan.width,
        height=plan.height,
        bandwidth=math.ceil(peak),
        average_bandwidth=math.ceil(total_bits / total_duration) if total_duration else 0,
        codecs=plan.codecs,
        frame_rate=None if plan.level_idc is None else fps,
        segment_count=len(playlist.uris),
    )
    return rendition, playlist


def _fold_trailing_fragment(directory: Path, expected_segments: int) -> None:
    """Fold an audio-only rendition's extra sliver of a last segment into the one before.

    With no video, ffmpeg cuts audio at the first AAC frame at or after each boundary,
    and the encoder's priming frame makes the audio last ~21 ms longer than the video:
    when the film ends on a segment boundary this leaves one extra, tiny segment, and
    the renditions no longer have the same segment count. MPEG-TS segments written by
    one muxer concatenate into a valid stream, so the sliver is appended to the
    previous segment and the playlist entry merged.
    """
    playlist = _read_media_playlist(directory / MEDIA_PLAYLIST)
    if len(playlist.uris) != expected_segments + 1 or expected_segments == 0:
        return
    fragment = playlist.durations[-1]
    merged = playlist.durations[-2] + fragment
    if fragment > _MAX_TRAILING_FRAGMENT_S:
        return
    last, previous = directory / playlist.uris[-1], directory / playlist.uris[-2]
    with previous.open("ab") as target:
        target.write(last.read_bytes())
    last.unlink()
    lines = (directory / MEDIA_PLAYLIST).read_text(encoding="utf-8").splitlines()
    extinf = [index for index, line in enumerate(lines) if line.startswith(f"{_EXTINF}:")]
    # Drop the last EXTINF and its URI line; the one before now covers both.
    del lines[extinf[-1] : extinf[-1] + 2]
    lines[extinf[-2]] = f"{_EXTINF}:{merged:.6f},"
    (directory / MEDIA_PLAYLIST).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _finish_package(
    staging: Path, plans: Sequence[RenditionPlan], fps: Fraction
) -> tuple[list[Rendition], float]:
    """Validate alignment across renditions and write our own master playlist."""
    expected = len(_read_media_playlist(staging / plans[0].name / MEDIA_PLAYLIST).uris)
    for plan in plans:
        if plan.level_idc is None:
            _fold_trailing_fragment(staging / plan.name, expected)
    measured = [_measure(plan, staging / plan.name, fps) for plan in plans]
    reference_name = measured[0][0].name
    reference = measured[0][1].durations
    for rendition, playlist in measured[1:]:
        if len(playlist.durations) != len(reference):
            raise FfmpegError(
                f"renditions are not aligned: {rendition.name} has "
                f"{len(playlist.durations)} segments, {reference_name} has {len(reference)}"
            )
        for index, (ours, theirs) in enumerate(zip(playlist.durations, reference, strict=True)):
            if abs(ours - theirs) > ALIGNMENT_TOLERANCE_S:
                raise FfmpegError(
                    f"renditions are not aligned: segment {index} lasts {ours:.3f} s in "
                    f"{rendition.name} and {theirs:.3f} s in {reference_name}"
                )
    renditions = [rendition for rendition, _ in measured]
    (staging / MASTER_PLAYLIST).write_text(render_master_playlist(renditions), encoding="utf-8")
    return renditions, sum(reference)


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


def _default_timeout(duration_s: float | None) -> float:
    # Generous: a 2-core worker encodes five rungs at roughly real time.
    return 600.0 + 10.0 * (duration_s or 3600.0)


async def _extract_poster(src: Path, dest: Path, at_s: float) -> None:
    """Write one frame at ``at_s`` as a JPEG ``POSTER_WIDTH`` pixels wide."""
    args = (
        ffmpeg.input(str(src), ss=f"{at_s:.3f}")
        .video.filter("scale", POSTER_WIDTH, -2)
        .filter("setsar", "1")
        .output(str(dest), vframes=1, update=1, **{"q:v": 3})
        .get_args()
    )
    await run_ffmpeg(args, timeout_s=_POSTER_TIMEOUT_S)
    if not await asyncio.to_thread(dest.is_file):
        raise FfmpegError(f"no frame at {at_s:.1f} s for the poster")


async def transcode_to_hls(
    src: Path,
    out_dir: Path,
    *,
    rungs: Sequence[Rung] | None = None,
    on_progress: Callable[[float], None] | None = None,
    timeout_s: float | None = None,
    segment_seconds: int = 6,
    preset: str = "veryfast",
) -> HlsPackage:
    """Transcode ``src`` into a validated HLS package in ``out_dir``.

    ``rungs`` (default `DEFAULT_LADDER`) is cut down by `select_rungs` to those that
    fit the source. ``out_dir``
    must not exist or be empty; it appears only once the package is complete.
    Progress is reported as a fraction in [0, 1]. Raises `FfmpegError` when ffmpeg
    fails or times out (``timeout_s`` defaults to ten times the duration plus ten
    minutes) or when the renditions come out misaligned.
    """
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
        await run_ffmpeg(
            args,
            on_progress=None if on_progress is None else (lambda f: on_progress(f * encode_share)),
            duration_s=info.duration_s,
            timeout_s=timeout_s if timeout_s is not None else _default_timeout(info.duration_s),
        )
        renditions, duration = await asyncio.to_thread(_finish_package, staging, plans, fps)
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
    )


def _output_rate(info: MediaInfo) -> Fraction:
    """The constant frame rate to encode at: the source's, halved until at most 60."""
    rate = info.frame_rate if info.frame_rate and info.frame_rate > 0 else Fraction(25)
    while rate > 60:
        rate /= 2
    return rate


# --- the synthetic demo film -------------------------------------------------------

_FONT_CANDIDATES: Final = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
)
_SAFE_FONT_PATH = re.compile(r"^[\w./-]+$")
_SAFE_LABEL = re.compile(r"[^A-Za-z0-9 .,_-]")


class _Drawtext(NamedTuple):
    available: bool
    fontfile: str | None


_drawtext_cache: dict[str, _Drawtext] = {}


async def _try_drawtext(exe: str, fontfile: str | None) -> bool:
    """True if this ffmpeg can render text with this font (None: fontconfig default)."""
    spec = "drawtext=text=0" + (f":fontfile={fontfile}" if fontfile else "")
    proc = await asyncio.create_subprocess_exec(
        exe,
        "-hide_banner",
        "-nostdin",
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        "color=size=64x64:duration=0.1",
        "-vf",
        spec,
        "-f",
        "null",
        "-",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(30):
            return await proc.wait() == 0
    except TimeoutError:
        # A hung font lookup counts as "no": the fallback pattern still shows time.
        await kill_and_reap(proc)
        return False
    except BaseException:
        await kill_and_reap(proc)
        raise


def _font_candidates() -> list[str]:
    return [
        path for path in _FONT_CANDIDATES if _SAFE_FONT_PATH.match(path) and os.path.isfile(path)
    ]


async def _detect_drawtext(exe: str) -> _Drawtext:
    """Whether ``exe`` has a working drawtext filter, and with which font file."""
    if exe in _drawtext_cache:
        return _drawtext_cache[exe]
    found = _Drawtext(available=False, fontfile=None)
    # An explicit font file first: fontconfig in static builds may not find any font.
    fonts: list[str | None] = [*(await asyncio.to_thread(_font_candidates))[:2], None]
    for fontfile in fonts:
        if await _try_drawtext(exe, fontfile):
            found = _Drawtext(available=True, fontfile=fontfile)
            break
    logger.info("ffmpeg %s drawtext: %s", exe, found)
    _drawtext_cache[exe] = found
    return found


def _tone_expression() -> str:
    """A tone that steps through four pitches every 3 s, faded in and out (no clicks).

    Written without commas or colons so that it needs no escaping inside a lavfi
    graph: ``t-3*floor(t/3)`` is ``mod(t, 3)``.
    """
    step = "(floor(t/3)-4*floor(t/12))"
    envelope = "sin(PI*(t-3*floor(t/3))/3)"
    return f"0.25*{envelope}*sin(2*PI*(330+110*{step})*t)"


async def generate_test_source(
    out: Path,
    *,
    duration_s: float,
    width: int = 1920,
    height: int = 1080,
    fps: int = 24,
    label: str = "Kush Films demo",
    timeout_s: float | None = None,
) -> Path:
    """Write a synthetic film (test pattern, running clock, stepping tone) as MP4.

    The clock is drawn with ``drawtext`` when this ffmpeg has it and a usable font;
    otherwise the ``testsrc`` pattern, whose built-in counter shows the time.
    ``label`` is reduced to letters, digits and simple punctuation.
    """
    if duration_s <= 0 or width <= 0 or height <= 0 or fps <= 0:
        raise ValueError("duration, size and frame rate must be positive")
    size = f"{width}x{height}"
    drawtext = await _detect_drawtext(find_ffmpeg())
    pattern = "testsrc2" if drawtext.available else "testsrc"
    video = ffmpeg.input(
        f"{pattern}=size={size}:rate={fps}:duration={duration_s:.3f}", f="lavfi"
    ).video
    if drawtext.available:
        font: dict[str, Any] = {"fontfile": drawtext.fontfile} if drawtext.fontfile else {}
        clean_label = _SAFE_LABEL.sub("", label).strip()[:60]
        if clean_label:
            video = video.filter(
                "drawtext",
                text=clean_label,
                expansion="none",
                fontsize=max(12, height // 14),
                fontcolor="white",
                box=1,
                boxcolor="black@0.6",
                boxborderw=max(4, height // 90),
                x="(w-text_w)/2",
                y=f"{height // 8}",
                **font,
            )
        video = video.filter(
            "drawtext",
            text="%{pts:hms}",
            fontsize=max(16, height // 8),
            fontcolor="white",
            box=1,
            boxcolor="black@0.6",
            boxborderw=max(4, height // 60),
            x="(w-text_w)/2",
            y=f"h-text_h-{height // 8}",
            **font,
        )
    audio = ffmpeg.input(
        f"aevalsrc=exprs={_tone_expression()}|{_tone_expression()}"
        f":sample_rate={AUDIO_SAMPLE_RATE}:channel_layout=stereo:duration={duration_s:.3f}",
        f="lavfi",
    ).audio
    args: list[str] = (
        ffmpeg.output(
            video,
            audio,
            str(out),
            **{
                "c:v": "libx264",
                "preset": "ultrafast",
                "crf": 18,
                "pix_fmt": "yuv420p",
                "g": fps * 2,
                "c:a": "aac",
                "b:a": 160_000,
                "ar": AUDIO_SAMPLE_RATE,
                "ac": 2,
                "t": f"{duration_s:.3f}",
                "movflags": "+faststart",
            },
        )
        .overwrite_output()
        .get_args()
    )
    await asyncio.to_thread(out.parent.mkdir, parents=True, exist_ok=True)
    await run_ffmpeg(
        args,
        duration_s=duration_s,
        timeout_s=timeout_s if timeout_s is not None else _default_timeout(duration_s),
    )
    return out


async def build_demo_film(
    out_dir: Path,
    *,
    duration_s: float = 120,
    heights: Sequence[int] = (1080, 720, 480, 360),
    include_audio_only: bool = False,
    on_progress: Callable[[float], None] | None = None,
    preset: str = "superfast",
    label: str = "Kush Films demo",
) -> HlsPackage:
    """Generate a 1080p synthetic film and package it as HLS with exactly ``heights``.

    The source lives in a temporary directory beside ``out_dir`` and is deleted after.
    x264 ``superfast`` by default: a test pattern needs no better, and `kush up` is
    ready sooner (about a fifth less CPU than ``veryfast``).
    """
    by_height = {rung.height: rung for rung in DEFAULT_LADDER if not rung.is_audio_only}
    missing = [h for h in heights if h not in by_height]
    if missing:
        raise ValueError(f"no ladder rung for heights {missing}")
    rungs = [by_height[h] for h in heights]
    if include_audio_only:
        rungs.extend(rung for rung in DEFAULT_LADDER if rung.is_audio_only)
    await asyncio.to_thread(out_dir.parent.mkdir, parents=True, exist_ok=True)
    workdir = Path(
        await asyncio.to_thread(
            tempfile.mkdtemp, prefix=f".{out_dir.name}.source-", dir=out_dir.parent
        )
    )
    # Generating the source costs far less than encoding the ladder.
    generate_share = 0.2
    try:
        source = await generate_test_source(
            workdir / "source.mp4", duration_s=duration_s, label=label
        )
        if on_progress is not None:
            on_progress(generate_share)
        return await transcode_to_hls(
            source,
            out_dir,
            rungs=rungs,
            preset=preset,
            on_progress=None
            if on_progress is None
            else (lambda f: on_progress(generate_share + (1 - generate_share) * f)),
        )
    finally:
        await asyncio.shield(asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True))

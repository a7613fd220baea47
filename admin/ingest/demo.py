"""The synthetic demo film: a test card with a running clock and a tone, packaged as HLS.

`generate_test_source` writes a source MP4 from ffmpeg's own test patterns, so
`kush up`, the demo seed, generated ads and the ingest tests need no media on
disk; `build_demo_film` packages one with `transcode_to_hls` like any upload.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple

import ffmpeg

from admin.ingest.ffmpeg import encode_timeout, find_ffmpeg, kill_and_reap, run_ffmpeg
from admin.ingest.ladder import DEFAULT_LADDER
from admin.ingest.transcode import AUDIO_SAMPLE_RATE, HlsPackage, transcode_to_hls

__all__ = ["build_demo_film", "generate_test_source"]

logger = logging.getLogger(__name__)

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
        timeout_s=timeout_s if timeout_s is not None else encode_timeout(duration_s),
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
    download: bool = True,
) -> HlsPackage:
    """Generate a 1080p synthetic film and package it as HLS with exactly ``heights``,
    with its offline MP4 unless ``download`` is False (an ad).

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
            download=download,
            on_progress=None
            if on_progress is None
            else (lambda f: on_progress(generate_share + (1 - generate_share) * f)),
        )
    finally:
        await asyncio.shield(asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True))

"""Running ffmpeg without blocking the event loop: locate it, probe media, report progress.

ffmpeg-python only builds argument lists elsewhere; every process is started here with
``asyncio.create_subprocess_exec`` and killed on timeout or cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

__all__ = [
    "FfmpegError",
    "IngestError",
    "MediaInfo",
    "encode_timeout",
    "find_ffmpeg",
    "probe",
    "run_ffmpeg",
]

logger = logging.getLogger(__name__)

#: Lines of stderr kept for an error message: enough to see why, never the whole log.
STDERR_TAIL_LINES = 8
_MAX_LINE_CHARS = 300
PROBE_TIMEOUT_S = 30.0


def encode_timeout(duration_s: float | None) -> float:
    """How long an encode of ``duration_s`` seconds of media may run (an hour if unknown).

    Generous: a 2-core worker encodes five rungs at roughly real time.
    """
    return 600.0 + 10.0 * (duration_s or 3600.0)


class IngestError(Exception):
    """Base class of the ingest domain errors."""


class FfmpegError(IngestError):
    """ffmpeg failed, timed out, or produced output that does not pass validation.

    ``stderr_tail`` holds only the last few lines of ffmpeg's log.
    """

    def __init__(
        self, message: str, *, stderr_tail: Sequence[str] = (), returncode: int | None = None
    ) -> None:
        self.message = message
        self.stderr_tail: tuple[str, ...] = tuple(stderr_tail)
        self.returncode = returncode
        detail = " | ".join(self.stderr_tail)
        super().__init__(f"{message}: {detail}" if detail else message)


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaInfo:
    """What ffmpeg reports about the first video and first audio stream of a file."""

    duration_s: float | None
    width: int | None
    height: int | None
    has_audio: bool
    has_video: bool
    video_codec: str | None
    audio_codec: str | None
    frame_rate: Fraction | None = None


def find_ffmpeg() -> str:
    """The ffmpeg executable: the system's on ``PATH`` if any, else imageio-ffmpeg's
    (the ``demo`` extra, imported only when needed)."""
    system = shutil.which("ffmpeg")
    if system:
        return system
    try:
        import imageio_ffmpeg
    except ImportError:
        raise IngestError(
            "ffmpeg not found: install ffmpeg on this machine or install kush-edge[demo]"
        ) from None
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def _clip(line: str) -> str:
    return line if len(line) <= _MAX_LINE_CHARS else line[: _MAX_LINE_CHARS - 1] + "…"


async def kill_and_reap(proc: asyncio.subprocess.Process) -> None:
    """Kill a child and reap it so that no zombie is left behind."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    await proc.wait()


async def _collect_stderr(stream: asyncio.StreamReader, tail: deque[str]) -> None:
    """Drain stderr (so ffmpeg never blocks on a full pipe), keeping the last lines."""
    async for raw in stream:
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            tail.append(_clip(line))


async def _report_progress(
    stream: asyncio.StreamReader,
    on_progress: Callable[[float], None] | None,
    duration_s: float | None,
) -> None:
    """Parse ``-progress`` key=value blocks and report the fraction of output written."""
    last = 0.0
    async for raw in stream:
        key, _, value = raw.decode("ascii", "replace").strip().partition("=")
        fraction: float | None = None
        if key == "out_time_us" and duration_s and value.lstrip("-").isdigit():
            fraction = min(1.0, max(0.0, int(value) / 1e6 / duration_s))
        elif key == "progress" and value == "end":
            fraction = 1.0
        if on_progress is not None and fraction is not None and fraction > last:
            last = fraction
            on_progress(fraction)


async def run_ffmpeg(
    args: Sequence[str],
    *,
    on_progress: Callable[[float], None] | None = None,
    duration_s: float | None = None,
    timeout_s: float | None = None,
) -> None:
    """Run ffmpeg with ``args`` (without the executable) and wait for success.

    Progress is read from ``-progress pipe:1`` and reported as a fraction of
    ``duration_s``. Raises `FfmpegError` on a non-zero exit or after ``timeout_s``;
    on timeout or cancellation the process is killed before returning.
    """
    exe = find_ffmpeg()
    cmd = [
        exe,
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "warning",
        "-progress",
        "pipe:1",
        "-nostats",
        *args,
    ]
    logger.debug("running %s", " ".join(cmd))
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(
                _collect_stderr(proc.stderr, tail),
                _report_progress(proc.stdout, on_progress, duration_s),
            )
            returncode = await proc.wait()
    except TimeoutError as err:
        await kill_and_reap(proc)
        raise FfmpegError(
            f"ffmpeg timed out after {timeout_s:g} s", stderr_tail=tail, returncode=proc.returncode
        ) from err
    except BaseException:
        # Cancellation (or anything else): never leave an encoder running unattended.
        await kill_and_reap(proc)
        raise
    if returncode != 0:
        raise FfmpegError(
            f"ffmpeg exited with status {returncode}", stderr_tail=tail, returncode=returncode
        )


_DURATION_RE = re.compile(r"^\s*Duration:\s*(?:(\d+):(\d{2}):(\d{2}(?:\.\d+)?)|N/A)")
_STREAM_RE = re.compile(r"^\s*Stream #\d+:\d+.*?: (Video|Audio): (\w+)(.*)$")
_SIZE_RE = re.compile(r", (\d{1,5})x(\d{1,5})(?=[ ,]|$)")
_FPS_RE = re.compile(r", (\d+(?:\.\d+)?)(k?) (fps|tbr)\b")

# ffmpeg prints rates rounded to 2 decimals; snap the NTSC family to its exact ratio.
_NTSC_RATES = tuple(Fraction(n * 1000, 1001) for n in (24, 30, 48, 60, 120))


def _parse_rate(match: re.Match[str]) -> Fraction:
    rate = Fraction(match.group(1)) * (1000 if match.group(2) else 1)
    for ntsc in _NTSC_RATES:
        if abs(rate - ntsc) < Fraction(1, 100):
            return ntsc
    return rate.limit_denominator(1001)


def parse_probe_output(stderr: str) -> MediaInfo:
    """Parse the ``Input #0`` section that ``ffmpeg -i FILE`` prints to stderr."""
    duration: float | None = None
    width = height = None
    video_codec = audio_codec = None
    frame_rate: Fraction | None = None
    for line in stderr.splitlines():
        if line.startswith("Output #"):
            break
        if duration is None and (m := _DURATION_RE.match(line)) and m.group(1) is not None:
            hours, minutes, seconds = m.groups()
            duration = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
            continue
        stream = _STREAM_RE.match(line)
        if stream is None:
            continue
        kind, codec, rest = stream.groups()
        if kind == "Audio" and audio_codec is None:
            audio_codec = codec
        elif kind == "Video" and video_codec is None and "(attached pic)" not in rest:
            video_codec = codec
            if size := _SIZE_RE.search(rest):
                width, height = int(size.group(1)), int(size.group(2))
            rates = {m.group(3): m for m in _FPS_RE.finditer(rest)}
            rate = rates.get("fps") or rates.get("tbr")
            frame_rate = _parse_rate(rate) if rate else None
    return MediaInfo(
        duration_s=duration,
        width=width,
        height=height,
        has_audio=audio_codec is not None,
        has_video=video_codec is not None,
        video_codec=video_codec,
        audio_codec=audio_codec,
        frame_rate=frame_rate,
    )


async def probe(path: Path | str, *, timeout_s: float = PROBE_TIMEOUT_S) -> MediaInfo:
    """Describe a media file by parsing ``ffmpeg -hide_banner -i FILE`` (no ffprobe here).

    Raises `FfmpegError` when ffmpeg cannot open the file or finds no audio or video.
    """
    # With no output file ffmpeg always exits 1 after printing the input description.
    proc = await asyncio.create_subprocess_exec(
        find_ffmpeg(),
        "-hide_banner",
        "-nostdin",
        "-i",
        str(path),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout_s):
            _, stderr_bytes = await proc.communicate()
    except TimeoutError as err:
        await kill_and_reap(proc)
        raise FfmpegError(f"probing timed out after {timeout_s:g} s") from err
    except BaseException:
        await kill_and_reap(proc)
        raise
    stderr = stderr_bytes.decode("utf-8", "replace")
    info = parse_probe_output(stderr)
    if not (info.has_video or info.has_audio):
        lines = [
            _clip(line)
            for line in stderr.splitlines()
            if line.strip() and "output file" not in line.lower()
        ]
        raise FfmpegError(
            "not a media file ffmpeg can read",
            stderr_tail=lines[-STDERR_TAIL_LINES:],
            returncode=proc.returncode,
        )
    return info

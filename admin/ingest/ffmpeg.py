"""Running ffmpeg without blocking the event loop: locate it, probe media, report progress.

ffmpeg-python only builds argument lists elsewhere; every process is started here with
``asyncio.create_subprocess_exec`` and killed on timeout or cancellation.

Uploaded files are untrusted. ffmpeg opens them only through `untrusted_input`: a
``file:`` URL with ``-protocol_whitelist file,pipe`` (no network, no ``concat:``,
``subfile:`` or ``data:`` tricks) and ``-format_whitelist`` of plain video containers,
so an uploaded HLS playlist, an ``ffconcat`` list or an AVI carrying a playlist in a
GAB2 subtitle (the known ffmpeg file-inclusion trick) is refused at the demuxer and
can never read other files of the server into a published film. `check_source` then
refuses what we will not encode, with a reason an admin can act on; encodes run with
CPU-time and file-size limits (`Limits`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import resource
import shutil
import signal
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

__all__ = [
    "ALLOWED_CONTAINERS",
    "FfmpegError",
    "IngestError",
    "Limits",
    "MediaInfo",
    "SourceRefused",
    "check_source",
    "encode_timeout",
    "find_ffmpeg",
    "first_timestamps",
    "probe",
    "run_ffmpeg",
    "untrusted_input",
]

logger = logging.getLogger(__name__)

#: Lines of stderr kept for an error message: enough to see why, never the whole log.
STDERR_TAIL_LINES = 8
_MAX_LINE_CHARS = 300
PROBE_TIMEOUT_S = 30.0

#: The demuxers an uploaded file may be read with: plain audio/video containers. Not
#: hls, concat, image2, lavfi, tty or any other that opens further files or URLs.
ALLOWED_CONTAINERS: tuple[str, ...] = (
    "mov",
    "mp4",
    "m4a",
    "3gp",
    "3g2",
    "mj2",
    "matroska",
    "webm",
    "avi",
    "mpegts",
    "flv",
    "mpeg",
    "asf",
    "ogg",
)
#: The largest picture we encode ("4K": 3840x2160, either orientation).
MAX_SOURCE_PIXELS = 3840 * 2160
MAX_SOURCE_SIDE = 4096


def file_url(path: Path | str) -> str:
    """A ``file:`` URL for ``path`` (absolute: ffmpeg reads nothing else as a file)."""
    return f"file:{os.path.abspath(path)}"


def untrusted_input(path: Path | str, *, any_format: bool = False) -> list[str]:
    """The ffmpeg input arguments for a file we did not make: only local-file reads and
    only the demuxers of `ALLOWED_CONTAINERS` (nested demuxers inherit both lists).
    ``any_format`` lifts the demuxer list, for files we wrote ourselves (a poster)."""
    formats = [] if any_format else ["-format_whitelist", ",".join(ALLOWED_CONTAINERS)]
    return ["-protocol_whitelist", "file,pipe", *formats, "-i", file_url(path)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Resource limits of one ffmpeg process: CPU seconds and the size of any one file
    it writes (the kernel stops it with SIGXCPU / SIGXFSZ past them)."""

    cpu_seconds: int | None = None
    file_bytes: int | None = None

    def apply(self) -> None:
        """Set the limits in the child before it runs ffmpeg (``preexec_fn``)."""
        if self.cpu_seconds is not None:
            resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_seconds, self.cpu_seconds + 5))
        if self.file_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_bytes, self.file_bytes))


def encode_timeout(duration_s: float | None) -> float:
    """How long an encode of ``duration_s`` seconds of media may run (an hour if unknown).

    Generous: a 2-core worker encodes five rungs at roughly real time.
    """
    return 600.0 + 10.0 * (duration_s or 3600.0)


class IngestError(Exception):
    """Base class of the ingest domain errors."""


class SourceRefused(IngestError):
    """An upload we will not ingest, with a stable ``code`` and a reason for the admin:
    ``unreadable``, ``not_a_video`` (a playlist, an image, a text...), ``no_video``,
    ``too_long``, ``too_large``."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


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
    container: str | None = None


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
    limits: Limits | None = None,
) -> None:
    """Run ffmpeg with ``args`` (without the executable) and wait for success.

    Progress is read from ``-progress pipe:1`` and reported as a fraction of
    ``duration_s``. Raises `FfmpegError` on a non-zero exit, after ``timeout_s`` or past
    ``limits``; on timeout or cancellation the process is killed before returning.
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
        preexec_fn=None if limits is None else limits.apply,
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
    if returncode == -signal.SIGXCPU and limits is not None:
        raise FfmpegError(
            f"ffmpeg used more than its {limits.cpu_seconds} s of CPU time",
            stderr_tail=tail,
            returncode=returncode,
        )
    if returncode == -signal.SIGXFSZ and limits is not None:
        raise FfmpegError(
            f"ffmpeg wrote a file over its limit of {limits.file_bytes} bytes",
            stderr_tail=tail,
            returncode=returncode,
        )
    if returncode != 0:
        raise FfmpegError(
            f"ffmpeg exited with status {returncode}", stderr_tail=tail, returncode=returncode
        )


_NOT_ALLOWED_RE = re.compile(r"^\[(\w+) @ [^\]]*\] Format not on whitelist", re.MULTILINE)
# ffmpeg 7.1+ no longer probes a playlist saved under a video's extension (trailer.mp4):
# it says so, then fails on it as a broken MP4. Still a playlist, not an unreadable video.
_HLS_UNDETECTED_RE = re.compile(r"^Not detecting m3u8/hls with non standard extension", re.M)
_INPUT_RE = re.compile(r"^Input #0, ([\w,]+), from ")
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
    container: str | None = None
    for line in stderr.splitlines():
        if line.startswith("Output #"):
            break
        if container is None and (m := _INPUT_RE.match(line)):
            container = m.group(1)
            continue
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
        container=container,
    )


async def probe(
    path: Path | str, *, timeout_s: float = PROBE_TIMEOUT_S, ours: bool = False
) -> MediaInfo:
    """Describe a media file by parsing ``ffmpeg -hide_banner -i FILE`` (no ffprobe here).

    The file is opened as an untrusted input (`untrusted_input`). Raises `SourceRefused`
    (``not_a_video``) for a container outside `ALLOWED_CONTAINERS`, `FfmpegError` when
    ffmpeg cannot open the file or finds no audio or video. ``ours``: a file we made
    (any demuxer, e.g. a JPEG poster).
    """
    # With no output file ffmpeg always exits 1 after printing the input description.
    proc = await asyncio.create_subprocess_exec(
        find_ffmpeg(),
        "-hide_banner",
        "-nostdin",
        *untrusted_input(path, any_format=ours),
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
    if (found := _NOT_ALLOWED_RE.search(stderr)) is not None or _HLS_UNDETECTED_RE.search(stderr):
        demuxer = found.group(1) if found is not None else "hls"
        raise SourceRefused(
            "not_a_video",
            f"the file is not a video file we accept: ffmpeg reads it as '{demuxer}' "
            "(a playlist, a list of files or another format that is not a plain video "
            "container)",
        )
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


def check_source(info: MediaInfo, *, max_seconds: float) -> None:
    """Refuse a probed upload we will not encode (`SourceRefused` with the reason)."""
    if not info.has_video or info.width is None or info.height is None:
        raise SourceRefused(
            "no_video", "the file has no video stream (audio only, or not a video at all)"
        )
    if info.duration_s is None or info.duration_s <= 0:
        raise SourceRefused("unreadable", "ffmpeg cannot tell how long the video is")
    if info.duration_s > max_seconds:
        raise SourceRefused(
            "too_long",
            f"the video lasts {info.duration_s:.0f} s, longer than the limit of "
            f"{max_seconds:.0f} s (KUSH_MAX_SOURCE_SECONDS)",
        )
    if info.width * info.height > MAX_SOURCE_PIXELS or max(info.width, info.height) > (
        MAX_SOURCE_SIDE
    ):
        raise SourceRefused(
            "too_large",
            f"the picture is {info.width}x{info.height}, larger than 4K (3840x2160)",
        )


_FRAMECRC_RE = re.compile(r"^\s*(\d+),\s*(-?\d+),\s*(-?\d+),")
_TIMEBASE_RE = re.compile(r"^#tb (\d+): (\d+)/(\d+)")
_STREAM_TYPE_RE = re.compile(r"^#media_type (\d+): (\w+)")


async def first_timestamps(path: Path, *, timeout_s: float = PROBE_TIMEOUT_S) -> dict[str, float]:
    """The first presentation time of each stream of a media file, in seconds, keyed by
    ``video``/``audio`` (read with ffmpeg's ``framecrc`` muxer: no ffprobe needed)."""
    proc = await asyncio.create_subprocess_exec(
        find_ffmpeg(),
        "-hide_banner",
        "-nostdin",
        "-v",
        "error",
        *untrusted_input(path),
        "-copyts",
        "-map",
        "0",
        "-c",
        "copy",
        "-f",
        "framecrc",
        "-",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, _ = await proc.communicate()
    except BaseException:
        await kill_and_reap(proc)
        raise
    bases: dict[int, Fraction] = {}
    kinds: dict[int, str] = {}
    first: dict[str, float] = {}
    for line in out.decode("ascii", "replace").splitlines():
        if m := _TIMEBASE_RE.match(line):
            bases[int(m.group(1))] = Fraction(int(m.group(2)), int(m.group(3)))
        elif m := _STREAM_TYPE_RE.match(line):
            kinds[int(m.group(1))] = m.group(2)
        elif m := _FRAMECRC_RE.match(line):
            index, pts = int(m.group(1)), int(m.group(3))
            kind = kinds.get(index, str(index))
            if index in bases:
                start = float(pts * bases[index])
                first[kind] = min(first.get(kind, start), start)
    return first

"""The encoding ladder: which renditions a film gets, their sizes and H.264 levels.

Pure code (no ffmpeg, no event loop) so that ladder decisions are unit-testable.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

__all__ = [
    "AUDIO_RUNG_NAME",
    "DEFAULT_LADDER",
    "Rung",
    "h264_codec_string",
    "h264_level",
    "scaled_size",
    "select_rungs",
]

#: Name of the audio-only rendition (for 2G/3G listeners).
AUDIO_RUNG_NAME = "audio"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rung:
    """One step of the ladder; bit rates are in bits per second.

    An audio-only rung has ``height == 0`` and no video bit rates.
    """

    name: str
    height: int
    video_bitrate: int
    maxrate: int
    bufsize: int
    audio_bitrate: int

    @property
    def is_audio_only(self) -> bool:
        """True for the audio-only rendition (no video stream)."""
        return self.height == 0


def _video_rung(name: str, height: int, kbps: int, audio_kbps: int) -> Rung:
    # Capped VBR: peaks of +10 % over the average with a two-second VBV buffer keep
    # segments close to the nominal rate, which is what a phone on a metered link wants.
    bitrate = kbps * 1000
    return Rung(
        name=name,
        height=height,
        video_bitrate=bitrate,
        maxrate=bitrate * 11 // 10,
        bufsize=bitrate * 2,
        audio_bitrate=audio_kbps * 1000,
    )


#: The Kush Films ladder (DESIGN.md): highest first, audio-only last.
DEFAULT_LADDER: tuple[Rung, ...] = (
    _video_rung("1080p", 1080, 5000, 128),
    _video_rung("720p", 720, 2500, 128),
    _video_rung("480p", 480, 1000, 96),
    _video_rung("360p", 360, 500, 64),
    _video_rung("240p", 240, 300, 64),
    Rung(
        name=AUDIO_RUNG_NAME, height=0, video_bitrate=0, maxrate=0, bufsize=0, audio_bitrate=64_000
    ),
)


def select_rungs(
    source_height: int,
    ladder: Sequence[Rung] = DEFAULT_LADDER,
    names: Iterable[str] | None = None,
) -> list[Rung]:
    """Pick the rungs to encode for a source, video highest first, audio-only last.

    Never a video rung above the source height (no upscaling wastes bits), but always
    at least the lowest video rung, so even a tiny source gets a playable rendition.
    ``names`` restricts the choice to those rung names (unknown names are an error).
    """
    candidates = list(ladder)
    if names is not None:
        wanted = set(names)
        unknown = wanted - {rung.name for rung in ladder}
        if unknown:
            raise ValueError(f"unknown rung names: {', '.join(sorted(unknown))}")
        candidates = [rung for rung in ladder if rung.name in wanted]
    video = sorted(
        (rung for rung in candidates if not rung.is_audio_only),
        key=lambda rung: rung.height,
        reverse=True,
    )
    chosen = [rung for rung in video if rung.height <= source_height]
    if not chosen and video:
        chosen = [video[-1]]
    chosen.extend(rung for rung in candidates if rung.is_audio_only)
    return chosen


class Size(NamedTuple):
    """A frame size in pixels."""

    width: int
    height: int


def _even(value: float) -> int:
    """Round half up to the nearest even integer of at least 2 (4:2:0 chroma needs even sizes)."""
    return max(2, 2 * math.floor(value / 2 + 0.5))


def scaled_size(source_width: int, source_height: int, rung_height: int) -> Size:
    """The output size for a rung: the source aspect kept, even sides, never upscaled.

    A rung above the source (the lowest rung kept for a tiny source) is encoded at the
    source height instead.
    """
    if source_width <= 0 or source_height <= 0 or rung_height <= 0:
        raise ValueError("sizes must be positive")
    height = _even(min(rung_height, source_height))
    width = _even(height * source_width / source_height)
    return Size(width, height)


class _Level(NamedTuple):
    level_idc: int
    max_mbps: int  # macroblocks per second
    max_fs: int  # macroblocks per frame
    max_br_kbps: int  # for Baseline/Main; High allows 1.25x (H.264 Table)
    max_cpb_kbits: int


# ITU-T H.264 Annex A, Table A-1 (level 1b omitted: never chosen for High profile).
_LEVELS: tuple[_Level, ...] = (
    _Level(10, 1_485, 99, 64, 175),
    _Level(11, 3_000, 396, 192, 500),
    _Level(12, 6_000, 396, 384, 1_000),
    _Level(13, 11_880, 396, 768, 2_000),
    _Level(20, 11_880, 396, 2_000, 2_000),
    _Level(21, 19_800, 792, 4_000, 4_000),
    _Level(22, 20_250, 1_620, 4_000, 4_000),
    _Level(30, 40_500, 1_620, 10_000, 10_000),
    _Level(31, 108_000, 3_600, 14_000, 14_000),
    _Level(32, 216_000, 5_120, 20_000, 20_000),
    _Level(40, 245_760, 8_192, 20_000, 25_000),
    _Level(41, 245_760, 8_192, 50_000, 62_500),
    _Level(42, 522_240, 8_704, 50_000, 62_500),
    _Level(50, 589_824, 22_080, 135_000, 135_000),
    _Level(51, 983_040, 36_864, 240_000, 240_000),
    _Level(52, 2_073_600, 36_864, 240_000, 240_000),
)

# High profile scales MaxBR and MaxCPB by cpbBrVclFactor/1000 = 1.25 (Table A-2).
_HIGH_FACTOR = Fraction(5, 4)


def h264_level(width: int, height: int, fps: Fraction | float, maxrate: int, bufsize: int) -> int:
    """The lowest H.264 High-profile ``level_idc`` (e.g. 31 for 3.1) for a stream."""
    mb_w = math.ceil(width / 16)
    mb_h = math.ceil(height / 16)
    frame_mbs = mb_w * mb_h
    mbps = frame_mbs * Fraction(fps)
    for level in _LEVELS:
        # A.3.1: each side is limited to sqrt(8 * MaxFS) macroblocks.
        max_side = math.isqrt(8 * level.max_fs)
        if (
            frame_mbs <= level.max_fs
            and mb_w <= max_side
            and mb_h <= max_side
            and mbps <= level.max_mbps
            and maxrate <= level.max_br_kbps * 1000 * _HIGH_FACTOR
            and bufsize <= level.max_cpb_kbits * 1000 * _HIGH_FACTOR
        ):
            return level.level_idc
    raise ValueError(f"no H.264 level fits {width}x{height}@{float(fps):.3f}")


def h264_codec_string(level_idc: int) -> str:
    """RFC 6381 ``CODECS`` value for H.264 High profile at a level, e.g. ``avc1.64001f``."""
    # avc1.PPCCLL: profile_idc 100 (High) = 0x64, no constraint flags, level_idc in hex.
    return f"avc1.6400{level_idc:02x}"

"""Typed, immutable model of parsed playlists (RFC 8216), one small class per concept.

The model is for code that reasons about playlists (ad stitching, tier checks);
the hot rewrite path works on `PlaylistTemplate` instead. URIs are kept exactly
as written in the playlist, unresolved.
"""

import re
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from .attributes import AttributeList, Resolution
from .errors import PlaylistError, excerpt

_BYTERANGE = re.compile(r"([0-9]{1,20})(?:@([0-9]{1,20}))?")


class ByteRange(NamedTuple):
    """A sub-range ``<length>[@<offset>]`` (§4.3.2.2); ``offset`` None means "follows
    the previous sub-range of the same resource"."""

    length: int
    offset: int | None

    @classmethod
    def parse(cls, text: str) -> "ByteRange":
        """Parse ``<n>[@<o>]`` as used by EXT-X-BYTERANGE and EXT-X-MAP BYTERANGE."""
        match = _BYTERANGE.fullmatch(text)
        if match is None:
            raise PlaylistError(f"malformed byte range: {excerpt(text)}")
        offset = match.group(2)
        return cls(int(match.group(1)), None if offset is None else int(offset))

    def __str__(self) -> str:
        return str(self.length) if self.offset is None else f"{self.length}@{self.offset}"


class Start(NamedTuple):
    """EXT-X-START (§4.3.5.2): where a player should begin; negative is from the end."""

    time_offset: float
    precise: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Key:
    """EXT-X-KEY (§4.3.2.4) or EXT-X-SESSION-KEY (§4.3.4.5)."""

    method: str
    uri: str | None = None
    iv: bytes | None = None
    keyformat: str | None = None
    keyformat_versions: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InitSection:
    """EXT-X-MAP (§4.3.2.5): the initialization section, e.g. an fMP4 ``init.mp4``."""

    uri: str
    byterange: ByteRange | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DateRange:
    """EXT-X-DATERANGE (§4.3.2.7), including its SCTE-35 attributes (§4.3.2.7.1)."""

    id: str
    start_date: str
    class_name: str | None = None
    end_date: str | None = None
    duration: float | None = None
    planned_duration: float | None = None
    scte35_cmd: str | None = None
    scte35_out: str | None = None
    scte35_in: str | None = None
    end_on_next: bool = False
    attributes: AttributeList
    line: str


class CueKind(Enum):
    """Ad cue dialects outside RFC 8216 (Adobe/Elemental style and SCTE-35 passthrough)."""

    OUT = "#EXT-X-CUE-OUT"
    OUT_CONT = "#EXT-X-CUE-OUT-CONT"
    IN = "#EXT-X-CUE-IN"
    OATCLS_SCTE35 = "#EXT-OATCLS-SCTE35"
    SCTE35 = "#EXT-X-SCTE35"


@dataclass(frozen=True, slots=True, kw_only=True)
class Cue:
    """A cue tag; ``duration`` is the break length when the dialect states one."""

    kind: CueKind
    duration: float | None
    line: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Segment:
    """A media segment (§3) with the tags that apply to it.

    ``key`` and ``map`` are those in effect for this segment (they persist until
    replaced, §4.3.2.4 and §4.3.2.5); the other fields come from tags right
    before its URI line. ``other_tags`` keeps unmodelled tags and comments verbatim.
    """

    uri: str
    duration: float
    title: str = ""
    byterange: ByteRange | None = None
    discontinuity: bool = False
    key: Key | None = None
    map: InitSection | None = None
    program_date_time: str | None = None
    dateranges: tuple[DateRange, ...] = ()
    cues: tuple[Cue, ...] = ()
    other_tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaPlaylist:
    """A media playlist (§4.3.3); ``header_tags`` keeps unmodelled playlist tags."""

    target_duration: int
    version: int | None = None
    media_sequence: int = 0  # §4.3.3.2: absent means 0
    discontinuity_sequence: int = 0  # §4.3.3.3: absent means 0
    playlist_type: str | None = None
    endlist: bool = False
    i_frames_only: bool = False
    independent_segments: bool = False
    start: Start | None = None
    header_tags: tuple[str, ...] = ()
    segments: tuple[Segment, ...] = ()
    trailing_tags: tuple[str, ...] = ()

    @property
    def duration(self) -> float:
        """Total duration in seconds, the sum of EXTINF durations."""
        return sum(segment.duration for segment in self.segments)


@dataclass(frozen=True, slots=True, kw_only=True)
class Variant:
    """A variant stream: EXT-X-STREAM-INF and its URI line (§4.3.4.2)."""

    uri: str
    bandwidth: int
    average_bandwidth: int | None = None
    resolution: Resolution | None = None
    codecs: str | None = None
    frame_rate: float | None = None
    audio: str | None = None
    video: str | None = None
    subtitles: str | None = None
    closed_captions: str | None = None
    attributes: AttributeList
    other_tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class IFrameVariant:
    """An I-frame playlist, EXT-X-I-FRAME-STREAM-INF (§4.3.4.3)."""

    uri: str
    bandwidth: int
    average_bandwidth: int | None = None
    resolution: Resolution | None = None
    codecs: str | None = None
    video: str | None = None
    attributes: AttributeList


@dataclass(frozen=True, slots=True, kw_only=True)
class Rendition:
    """An alternative rendition, EXT-X-MEDIA (§4.3.4.1): audio, subtitles, video, CC."""

    type: str
    group_id: str
    name: str
    uri: str | None = None
    language: str | None = None
    assoc_language: str | None = None
    default: bool = False
    autoselect: bool = False
    forced: bool = False
    instream_id: str | None = None
    characteristics: str | None = None
    channels: str | None = None
    attributes: AttributeList


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionData:
    """EXT-X-SESSION-DATA (§4.3.4.4): a VALUE or a URI to a JSON document."""

    data_id: str
    value: str | None = None
    uri: str | None = None
    language: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MasterPlaylist:
    """A master playlist (§4.3.4); ``other_tags`` keeps unmodelled tags verbatim."""

    version: int | None = None
    independent_segments: bool = False
    start: Start | None = None
    variants: tuple[Variant, ...] = ()
    iframe_variants: tuple[IFrameVariant, ...] = ()
    renditions: tuple[Rendition, ...] = ()
    session_keys: tuple[Key, ...] = ()
    session_data: tuple[SessionData, ...] = ()
    other_tags: tuple[str, ...] = ()

"""What the stitcher needs to know about the content lines, found in one pass.

`scan_content` reads a media playlist that `hls.rewrite.media_pieces` has already
checked and records, per media segment, where a pod before it would go and the
state in effect there (keys, init section, byte range, discontinuity), plus the
header values a stitch may have to change. `check_stitchable` refuses content
whose stitched form would be wrong.
"""

from dataclasses import dataclass, field
from typing import NamedTuple

from .. import tags
from ..attributes import parse_decimal_integer, parse_tag_attributes
from ..errors import PlaylistError
from ..lines import Line, LineKind
from ..model import ByteRange
from ..parser import parse_extinf

_SCTE35_ATTRIBUTES = frozenset({"SCTE35-OUT", "SCTE35-IN", "SCTE35-CMD"})
_IDENTITY = "identity"  # §5.1: the default KEYFORMAT

# Tags that bind to the next media segment or change state for the segments
# after them (§4.3.2); the first one after the header starts segment 0, and a
# pre-roll goes just before it.
_SEGMENT_TAGS = frozenset(
    {
        tags.EXTINF,
        tags.EXT_X_BYTERANGE,
        tags.EXT_X_DISCONTINUITY,
        tags.EXT_X_KEY,
        tags.EXT_X_MAP,
        tags.EXT_X_PROGRAM_DATE_TIME,
        tags.EXT_X_DATERANGE,
        tags.EXT_X_GAP,
        tags.EXT_X_BITRATE,
        tags.EXT_X_PART,
    }
    | tags.CUE_TAGS
)


class KeyLine(NamedTuple):
    """An EXT-X-KEY line of the content: its line index and what matters about it."""

    line: int
    encrypted: bool  # METHOD is not NONE
    implicit_iv: bool  # the IV is the Media Sequence Number (§5.2)


@dataclass(slots=True)
class ContentScan:
    """What a scan of the content lines found, per segment and for the header."""

    uri_lines: list[int] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    lead_starts: list[int] = field(default_factory=list)  # where a pod before it goes
    lead_disc: list[int | None] = field(default_factory=list)  # its first DISCONTINUITY
    lead_key: list[bool] = field(default_factory=list)
    lead_map: list[bool] = field(default_factory=list)
    keys: list[tuple[KeyLine, ...]] = field(default_factory=list)  # in effect
    maps: list[int | None] = field(default_factory=list)  # EXT-X-MAP line in effect
    # Segments whose EXT-X-BYTERANGE has no offset: segment -> (line, length, offset).
    implicit_ranges: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    dropped: set[int] = field(default_factory=set)
    target_line: int | None = None
    target_duration: int = 0
    version_line: int | None = None
    version: int = 1  # §7: no EXT-X-VERSION means version 1
    media_sequence: int = 0  # §4.3.3.2: absent means 0
    i_frames_only: bool = False
    endlist: bool = False


def _replaced_by_stitching(name: str, text: str) -> bool:
    """Source dates and ad-cue markers, which a stitched playlist states anew."""
    if name == tags.EXT_X_PROGRAM_DATE_TIME or name in tags.CUE_TAGS:
        return True
    if name != tags.EXT_X_DATERANGE:
        return False
    try:
        names = parse_tag_attributes(text).names()
    except PlaylistError:
        return False  # not ours to judge: it passes through untouched
    return not _SCTE35_ATTRIBUTES.isdisjoint(names)


def _key_line(index: int, text: str) -> KeyLine:
    attributes = parse_tag_attributes(text)
    method = attributes.enum("METHOD")
    keyformat = attributes.string("KEYFORMAT")
    encrypted = method != tags.KEY_METHOD_NONE
    implicit = encrypted and "IV" not in attributes and keyformat in (None, _IDENTITY)
    return KeyLine(index, encrypted, implicit)


def scan_content(lines: list[Line]) -> ContentScan:
    """One pass over the (already checked) content lines."""
    content = ContentScan()
    first_segment_tag: int | None = None
    duration = 0.0
    keys: list[KeyLine] = []
    keys_open = False  # EXT-X-KEY tags since the last URI form one set (§4.3.2.4)
    current_map: int | None = None
    disc: int | None = None
    has_key = has_map = False
    byterange: tuple[int, ByteRange] | None = None  # line and value, for this segment
    range_end: int | None = None  # where the previous segment's sub-range ended
    for index, line in enumerate(lines[1:], 1):
        kind = line.kind
        if kind is LineKind.URI:
            content.uri_lines.append(index)
            content.durations.append(duration)
            if len(content.uri_lines) == 1:
                lead = index if first_segment_tag is None else first_segment_tag
            else:
                lead = content.uri_lines[-2] + 1
            content.lead_starts.append(lead)
            content.lead_disc.append(disc)
            content.lead_key.append(has_key)
            content.lead_map.append(has_map)
            content.keys.append(tuple(keys))
            content.maps.append(current_map)
            end: int | None = None
            if byterange is not None:
                range_line, (length, offset) = byterange
                if offset is None and range_end is not None:
                    segment = len(content.uri_lines) - 1
                    content.implicit_ranges[segment] = (range_line, length, range_end)
                    offset = range_end
                end = None if offset is None else offset + length
            range_end = end
            keys_open = has_key = has_map = False
            disc = None
            byterange = None
            continue
        if kind is not LineKind.TAG:
            continue
        text = line.text
        name = tags.tag_name(text)
        if name in _SEGMENT_TAGS and first_segment_tag is None and not content.uri_lines:
            first_segment_tag = index
        if name == tags.EXTINF:
            duration = parse_extinf(tags.tag_value(text))[0]
        elif name == tags.EXT_X_DISCONTINUITY:
            disc = index if disc is None else disc
        elif name == tags.EXT_X_BYTERANGE:
            byterange = (index, ByteRange.parse(tags.tag_value(text).strip()))
        elif name == tags.EXT_X_KEY:
            if not keys_open:
                keys, keys_open = [], True
            keys.append(_key_line(index, text))
            has_key = True
        elif name == tags.EXT_X_MAP:
            current_map, has_map = index, True
        elif _replaced_by_stitching(name, text):
            content.dropped.add(index)
        elif name == tags.EXT_X_TARGETDURATION:
            content.target_line = index
            content.target_duration = parse_decimal_integer(tags.tag_value(text).strip())
        elif name == tags.EXT_X_VERSION:
            content.version_line = index
            content.version = parse_decimal_integer(tags.tag_value(text).strip())
        elif name == tags.EXT_X_MEDIA_SEQUENCE:
            content.media_sequence = parse_decimal_integer(tags.tag_value(text).strip())
        elif name == tags.EXT_X_I_FRAMES_ONLY:
            content.i_frames_only = True
        elif name == tags.EXT_X_ENDLIST:
            content.endlist = True
    return content


def check_stitchable(content: ContentScan, container: str) -> None:
    """Refuse content whose stitched form would be wrong rather than emit it."""
    if content.i_frames_only:
        raise PlaylistError("I-frame playlists are not stitched")  # §4.3.3.6
    if not content.endlist:
        # §6.2.1: inserting segments would renumber a live playlist between reloads.
        raise PlaylistError("only VOD playlists (with EXT-X-ENDLIST) are stitched")
    if not content.uri_lines:
        raise PlaylistError("no media segments to stitch ads into")
    has_maps = {line is not None for line in content.maps}
    if container == "fmp4" and has_maps != {True}:
        raise PlaylistError("fMP4 content needs an EXT-X-MAP for every segment (§3.3)")
    if container == "ts" and has_maps != {False}:
        # Ads after a content EXT-X-MAP would be given the content's init section.
        raise PlaylistError("TS content with EXT-X-MAP is not stitched")


def segment_lines(lines: list[Line]) -> tuple[list[int], list[float]]:
    """URI line indexes and EXTINF durations of (compiled, so checked) content lines."""
    uri_lines: list[int] = []
    durations: list[float] = []
    duration = 0.0
    for index, line in enumerate(lines):
        kind = line.kind
        if kind is LineKind.URI:
            uri_lines.append(index)
            durations.append(duration)
        elif kind is LineKind.TAG and tags.tag_name(line.text) == tags.EXTINF:
            duration = parse_extinf(tags.tag_value(line.text))[0]
    return uri_lines, durations

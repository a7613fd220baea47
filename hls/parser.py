"""Parse playlist text into the immutable model (`MediaPlaylist`, `MasterPlaylist`).

Malformed input raises `PlaylistError` and nothing else, so callers can map one
exception to one response. URIs are not resolved or checked here; that is the
rewriter's job (`hls.rewrite`).
"""

import re
from dataclasses import dataclass, field
from typing import TypeVar

from . import tags
from .attributes import (
    AttributeList,
    parse_decimal_float,
    parse_decimal_integer,
    parse_tag_attributes,
)
from .errors import PlaylistError, excerpt
from .lines import Line, LineKind, split_playlist
from .model import (
    ByteRange,
    Cue,
    CueKind,
    DateRange,
    IFrameVariant,
    InitSection,
    Key,
    MasterPlaylist,
    MediaPlaylist,
    Rendition,
    Segment,
    SessionData,
    Start,
    Variant,
)

_T = TypeVar("_T")
_CUE_DURATION = re.compile(r"(?:^|[,:])DURATION=([0-9.]+)", re.IGNORECASE)
_CUE_CONT_FRACTION = re.compile(r"^[0-9.]+/([0-9.]+)$")  # CUE-OUT-CONT:<elapsed>/<total>


def _required(value: _T | None, what: str) -> _T:
    """Return ``value``, or raise `PlaylistError` for a missing REQUIRED attribute."""
    if value is None:
        raise PlaylistError(f"missing {what}")
    return value


def parse_key(attributes: AttributeList) -> Key:
    """Build a `Key` from EXT-X-KEY or EXT-X-SESSION-KEY attributes (§4.3.2.4)."""
    method = _required(attributes.enum("METHOD"), "METHOD")
    uri = attributes.string("URI")
    if method != tags.KEY_METHOD_NONE and uri is None:
        raise PlaylistError(f"METHOD={method} needs a URI")  # §4.3.2.4
    if method == tags.KEY_METHOD_NONE and len(attributes.items) > 1:
        # §4.3.2.4: "other attributes MUST NOT be present"; a URI there would be
        # copied to the player unsigned
        raise PlaylistError("METHOD=NONE with other attributes")
    return Key(
        method=method,
        uri=uri,
        iv=attributes.hex("IV"),
        keyformat=attributes.string("KEYFORMAT"),
        keyformat_versions=attributes.string("KEYFORMATVERSIONS"),
    )


def parse_init_section(attributes: AttributeList) -> InitSection:
    """Build an `InitSection` from EXT-X-MAP attributes (§4.3.2.5)."""
    byterange = attributes.string("BYTERANGE")
    return InitSection(
        uri=_required(attributes.string("URI"), "EXT-X-MAP URI"),
        byterange=None if byterange is None else ByteRange.parse(byterange),
    )


def parse_daterange(line: str) -> DateRange:
    """Build a `DateRange` from an EXT-X-DATERANGE line (§4.3.2.7)."""
    attributes = parse_tag_attributes(line)
    return DateRange(
        id=_required(attributes.string("ID"), "EXT-X-DATERANGE ID"),
        start_date=_required(attributes.string("START-DATE"), "EXT-X-DATERANGE START-DATE"),
        class_name=attributes.string("CLASS"),
        end_date=attributes.string("END-DATE"),
        duration=attributes.decimal("DURATION"),
        planned_duration=attributes.decimal("PLANNED-DURATION"),
        scte35_cmd=attributes.enum("SCTE35-CMD"),
        scte35_out=attributes.enum("SCTE35-OUT"),
        scte35_in=attributes.enum("SCTE35-IN"),
        end_on_next=attributes.enum("END-ON-NEXT") == "YES",
        attributes=attributes,
        line=line,
    )


def parse_cue(line: str) -> Cue:
    """Build a `Cue` from a cue tag line; an unreadable duration becomes None.

    These dialects are not standardised, so the duration is best effort:
    ``CUE-OUT:30``, ``CUE-OUT:DURATION=30``, ``CUE-OUT-CONT:10/30`` and
    ``CUE-OUT-CONT:ElapsedTime=10,Duration=30`` are understood.
    """
    kind = CueKind(tags.tag_name(line))
    value = tags.tag_value(line)
    candidate: str | None = None
    if kind in (CueKind.OUT, CueKind.OUT_CONT, CueKind.SCTE35):
        if (match := _CUE_DURATION.search(value)) or (match := _CUE_CONT_FRACTION.match(value)):
            candidate = match.group(1)
        elif kind is CueKind.OUT and value:
            candidate = value
    duration: float | None = None
    if candidate is not None:
        try:
            duration = parse_decimal_float(candidate)
        except PlaylistError:
            duration = None
    return Cue(kind=kind, duration=duration, line=line)


def parse_start(line: str) -> Start:
    """Build a `Start` from an EXT-X-START line (§4.3.5.2)."""
    attributes = parse_tag_attributes(line)
    offset = attributes.decimal("TIME-OFFSET", signed=True)
    if offset is None:
        raise PlaylistError("EXT-X-START without TIME-OFFSET")
    return Start(offset, attributes.enum("PRECISE") == "YES")


MAX_SEGMENT_DURATION_S = 86_400
"""The longest EXTINF accepted, a day: RFC 8216 sets no limit, but a longer segment is
no film's, and the bound keeps every sum of durations (at most a 4 MiB playlist's worth)
within what dates and the stitcher's timeline can represent."""


def parse_extinf(value: str) -> tuple[float, str]:
    """Split an EXTINF value ``<duration>,[<title>]`` (§4.3.2.1)."""
    duration, _, title = value.partition(",")
    seconds = parse_decimal_float(duration.strip())
    if seconds > MAX_SEGMENT_DURATION_S:
        raise PlaylistError(f"EXTINF longer than {MAX_SEGMENT_DURATION_S} s: {excerpt(duration)}")
    return seconds, title


@dataclass(slots=True)
class _PendingSegment:
    """Tags seen since the last URI line, waiting for the URI they apply to."""

    duration: float | None = None
    title: str = ""
    byterange: ByteRange | None = None
    discontinuity: bool = False
    program_date_time: str | None = None
    dateranges: list[DateRange] = field(default_factory=list)
    cues: list[Cue] = field(default_factory=list)
    other_tags: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _MediaHeader:
    """Playlist-level values of a media playlist, filled in while scanning."""

    version: int | None = None
    media_sequence: int = 0
    discontinuity_sequence: int = 0
    playlist_type: str | None = None
    endlist: bool = False
    i_frames_only: bool = False
    independent_segments: bool = False
    start: Start | None = None


def _integer_value(line: str) -> int:
    return parse_decimal_integer(tags.tag_value(line).strip())


def parse_media_playlist(text: str) -> MediaPlaylist:
    """Parse a media playlist (§4.3.3); raise `PlaylistError` if it is malformed."""
    lines = split_playlist(text)
    header_fields = _MediaHeader()
    target_duration: int | None = None
    header: list[str] = []
    in_header = True
    key: Key | None = None
    init: InitSection | None = None
    segments: list[Segment] = []
    pending = _PendingSegment()
    for line in lines[1:]:
        try:
            kind = line.kind
            content = line.text
            if kind is LineKind.BLANK:
                continue
            if kind is LineKind.URI:
                if pending.duration is None:
                    raise PlaylistError("URI line without EXTINF")  # §4.3.2.1: REQUIRED
                segments.append(
                    Segment(
                        uri=content.strip(),
                        duration=pending.duration,
                        title=pending.title,
                        byterange=pending.byterange,
                        discontinuity=pending.discontinuity,
                        key=key,
                        map=init,
                        program_date_time=pending.program_date_time,
                        dateranges=tuple(pending.dateranges),
                        cues=tuple(pending.cues),
                        other_tags=tuple(pending.other_tags),
                    )
                )
                pending = _PendingSegment()
                in_header = False
                continue
            name = tags.tag_name(content) if kind is LineKind.TAG else ""
            if name in tags.MASTER_ONLY_TAGS:
                raise PlaylistError(f"{name} in a media playlist")
            segment_tag = True
            if name == tags.EXTINF:
                if pending.duration is not None:
                    raise PlaylistError("two EXTINF tags for one segment")
                pending.duration, pending.title = parse_extinf(tags.tag_value(content))
            elif name == tags.EXT_X_BYTERANGE:
                pending.byterange = ByteRange.parse(tags.tag_value(content).strip())
            elif name == tags.EXT_X_DISCONTINUITY:
                pending.discontinuity = True
            elif name == tags.EXT_X_PROGRAM_DATE_TIME:
                pending.program_date_time = tags.tag_value(content).strip()
            elif name == tags.EXT_X_DATERANGE:
                pending.dateranges.append(parse_daterange(content))
            elif name in tags.CUE_TAGS:
                pending.cues.append(parse_cue(content))
            else:
                segment_tag = False
            if segment_tag:
                in_header = False
                pending.lines.append(content)
                continue
            # §4.3.2.4 and §4.3.2.5: a key or map applies until the next one.
            if name == tags.EXT_X_KEY:
                parsed_key = parse_key(parse_tag_attributes(content))
                key = None if parsed_key.method == tags.KEY_METHOD_NONE else parsed_key
            elif name == tags.EXT_X_MAP:
                init = parse_init_section(parse_tag_attributes(content))
            elif name == tags.EXT_X_TARGETDURATION:
                target_duration = _integer_value(content)
            elif name == tags.EXT_X_MEDIA_SEQUENCE:
                header_fields.media_sequence = _integer_value(content)
            elif name == tags.EXT_X_DISCONTINUITY_SEQUENCE:
                header_fields.discontinuity_sequence = _integer_value(content)
            elif name == tags.EXT_X_VERSION:
                header_fields.version = _integer_value(content)
            elif name == tags.EXT_X_PLAYLIST_TYPE:
                header_fields.playlist_type = tags.tag_value(content).strip()
            elif name == tags.EXT_X_ENDLIST:
                header_fields.endlist = True
            elif name == tags.EXT_X_I_FRAMES_ONLY:
                header_fields.i_frames_only = True
            elif name == tags.EXT_X_INDEPENDENT_SEGMENTS:
                header_fields.independent_segments = True
            elif name == tags.EXT_X_START:
                header_fields.start = parse_start(content)
            elif in_header:
                header.append(content)
            else:
                pending.other_tags.append(content)
                pending.lines.append(content)
        except PlaylistError as err:
            raise _at_line(err, line) from err
    if pending.duration is not None or pending.byterange is not None:
        raise PlaylistError("EXTINF or EXT-X-BYTERANGE without a URI line at end of playlist")
    if target_duration is None:
        raise PlaylistError("missing EXT-X-TARGETDURATION")  # §4.3.3.1: REQUIRED
    return MediaPlaylist(
        target_duration=target_duration,
        header_tags=tuple(header),
        segments=tuple(segments),
        trailing_tags=tuple(pending.lines),
        version=header_fields.version,
        media_sequence=header_fields.media_sequence,
        discontinuity_sequence=header_fields.discontinuity_sequence,
        playlist_type=header_fields.playlist_type,
        endlist=header_fields.endlist,
        i_frames_only=header_fields.i_frames_only,
        independent_segments=header_fields.independent_segments,
        start=header_fields.start,
    )


def _at_line(err: PlaylistError, line: Line) -> PlaylistError:
    """Attach a line number to an error raised without one."""
    if err.line is not None:
        return err
    return type(err)(err.message, line=line.number)


def _parse_variant(attributes: AttributeList, uri: str, other: list[str]) -> Variant:
    closed_captions = attributes.get("CLOSED-CAPTIONS")
    return Variant(
        uri=uri,
        bandwidth=_required(attributes.integer("BANDWIDTH"), "BANDWIDTH"),
        average_bandwidth=attributes.integer("AVERAGE-BANDWIDTH"),
        resolution=attributes.resolution("RESOLUTION"),
        codecs=attributes.string("CODECS"),
        frame_rate=attributes.decimal("FRAME-RATE"),
        audio=attributes.string("AUDIO"),
        video=attributes.string("VIDEO"),
        subtitles=attributes.string("SUBTITLES"),
        # §4.3.4.2: a quoted GROUP-ID, or the enumerated string NONE.
        closed_captions=None if closed_captions is None else closed_captions.value,
        attributes=attributes,
        other_tags=tuple(other),
    )


def _parse_iframe_variant(attributes: AttributeList) -> IFrameVariant:
    return IFrameVariant(
        uri=_required(attributes.string("URI"), "EXT-X-I-FRAME-STREAM-INF URI"),
        bandwidth=_required(attributes.integer("BANDWIDTH"), "BANDWIDTH"),
        average_bandwidth=attributes.integer("AVERAGE-BANDWIDTH"),
        resolution=attributes.resolution("RESOLUTION"),
        codecs=attributes.string("CODECS"),
        video=attributes.string("VIDEO"),
        attributes=attributes,
    )


def _parse_rendition(attributes: AttributeList) -> Rendition:
    media_type = _required(attributes.enum("TYPE"), "EXT-X-MEDIA TYPE")
    uri = attributes.string("URI")
    if media_type == "CLOSED-CAPTIONS" and uri is not None:
        raise PlaylistError("CLOSED-CAPTIONS rendition must not have a URI")  # §4.3.4.1
    return Rendition(
        type=media_type,
        group_id=_required(attributes.string("GROUP-ID"), "EXT-X-MEDIA GROUP-ID"),
        name=_required(attributes.string("NAME"), "EXT-X-MEDIA NAME"),
        uri=uri,
        language=attributes.string("LANGUAGE"),
        assoc_language=attributes.string("ASSOC-LANGUAGE"),
        default=attributes.enum("DEFAULT") == "YES",
        autoselect=attributes.enum("AUTOSELECT") == "YES",
        forced=attributes.enum("FORCED") == "YES",
        instream_id=attributes.string("INSTREAM-ID"),
        characteristics=attributes.string("CHARACTERISTICS"),
        channels=attributes.string("CHANNELS"),
        attributes=attributes,
    )


def _parse_session_data(attributes: AttributeList) -> SessionData:
    return SessionData(
        data_id=_required(attributes.string("DATA-ID"), "EXT-X-SESSION-DATA DATA-ID"),
        value=attributes.string("VALUE"),
        uri=attributes.string("URI"),
        language=attributes.string("LANGUAGE"),
    )


def parse_master_playlist(text: str) -> MasterPlaylist:
    """Parse a master playlist (§4.3.4); raise `PlaylistError` if it is malformed."""
    lines = split_playlist(text)
    version: int | None = None
    independent_segments = False
    start: Start | None = None
    variants: list[Variant] = []
    iframes: list[IFrameVariant] = []
    renditions: list[Rendition] = []
    session_keys: list[Key] = []
    session_data: list[SessionData] = []
    other: list[str] = []
    pending: AttributeList | None = None
    pending_other: list[str] = []
    for line in lines[1:]:
        try:
            kind = line.kind
            content = line.text
            if kind is LineKind.BLANK:
                continue
            if kind is LineKind.URI:
                if pending is None:
                    raise PlaylistError("URI line without EXT-X-STREAM-INF")
                variants.append(_parse_variant(pending, content.strip(), pending_other))
                pending, pending_other = None, []
                continue
            name = tags.tag_name(content) if kind is LineKind.TAG else ""
            if name in tags.MEDIA_ONLY_TAGS:
                raise PlaylistError(f"{name} in a master playlist")
            if name == tags.EXT_X_STREAM_INF:
                if pending is not None:
                    raise PlaylistError("EXT-X-STREAM-INF without a URI line")
                pending = parse_tag_attributes(content)
            elif name == tags.EXT_X_I_FRAME_STREAM_INF:
                iframes.append(_parse_iframe_variant(parse_tag_attributes(content)))
            elif name == tags.EXT_X_MEDIA:
                renditions.append(_parse_rendition(parse_tag_attributes(content)))
            elif name == tags.EXT_X_SESSION_KEY:
                session_key = parse_key(parse_tag_attributes(content))
                if session_key.method == tags.KEY_METHOD_NONE:
                    raise PlaylistError("EXT-X-SESSION-KEY with METHOD=NONE")  # §4.3.4.5
                session_keys.append(session_key)
            elif name == tags.EXT_X_SESSION_DATA:
                session_data.append(_parse_session_data(parse_tag_attributes(content)))
            elif name == tags.EXT_X_VERSION:
                version = _integer_value(content)
            elif name == tags.EXT_X_INDEPENDENT_SEGMENTS:
                independent_segments = True
            elif name == tags.EXT_X_START:
                start = parse_start(content)
            elif pending is not None:
                pending_other.append(content)
            else:
                other.append(content)
        except PlaylistError as err:
            raise _at_line(err, line) from err
    if pending is not None:
        raise PlaylistError("EXT-X-STREAM-INF without a URI line at end of playlist")
    return MasterPlaylist(
        variants=tuple(variants),
        iframe_variants=tuple(iframes),
        renditions=tuple(renditions),
        session_keys=tuple(session_keys),
        session_data=tuple(session_data),
        other_tags=tuple(other),
        version=version,
        independent_segments=independent_segments,
        start=start,
    )

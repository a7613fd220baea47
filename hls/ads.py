"""Server-side ad insertion (SSAI): ad pods stitched into VOD media playlists.

The ad decision (which creatives in which pods) is made once per playback
session elsewhere. This module does the pure playlist work around it:

* `find_cue_points` and `plan_break_times` decide where breaks go;
* `choose_ad_rendition` and `align_pods` pick the ad rendition that plays in
  each content rendition, keeping only ads that line up in all of them, so
  every rendition and audio group of a session gets identical pods;
* `stitch_media_playlist` compiles content text plus pods into a
  `PlaylistTemplate`, the class `compile_media_playlist` returns, so serving a
  stitched playlist still costs the token MACs and one join, and the template
  can be cached per (content version, rendition, pod plan).

A pod in the output, for a mid-roll in AES-128 fMP4 content::

    #EXT-X-DISCONTINUITY                   one per creative (§4.3.2.3)
    #EXT-X-KEY:METHOD=NONE                 ads are clear (§4.3.2.4)
    #EXT-X-DATERANGE:ID="ad-1",CLASS="com.kushfilms.ad",START-DATE=...
    #EXT-X-MAP:URI="/hls/ads/<id>/<rendition>/init.mp4?t=..."
    #EXT-X-PROGRAM-DATE-TIME:...           maps START-DATE to media time (§4.3.2.6)
    #EXTINF:5.000000,
    /hls/ads/<id>/<rendition>/seg_00000.ts?t=...
    #EXT-X-DISCONTINUITY                   back to the content
    #EXT-X-KEY:METHOD=AES-128,URI=...      the content key restored
    #EXT-X-MAP:URI="init.mp4?t=..."        the content init section restored
    #EXT-X-PROGRAM-DATE-TIME:...
"""

import bisect
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Final, Literal, NamedTuple

from . import tags
from .attributes import parse_decimal_integer, parse_tag_attributes
from .errors import PlaylistError
from .lines import Line, LineKind
from .model import ByteRange, CueKind, MediaPlaylist, Segment
from .parser import parse_extinf
from .rewrite import TOKEN_PARAMETER, _assemble, _media_pieces, _Piece, _Slot
from .template import PlaylistTemplate

Container = Literal["ts", "fmp4"]
"""How a rendition's segments are packaged: MPEG-TS (§3.2) or fragmented MP4 (§3.3)."""

CONTAINERS: Final = ("ts", "fmp4")

AD_DATERANGE_CLASS: Final = "com.kushfilms.ad"
"""EXT-X-DATERANGE CLASS that marks an ad pod; a contract with players (DESIGN.md)."""

DEFAULT_ANCHOR: Final = datetime(2000, 1, 1, tzinfo=UTC)
"""EXT-X-PROGRAM-DATE-TIME of the first stitched segment unless the caller picks one."""

ALIGNMENT_TOLERANCE_S: Final = 0.001
"""Largest difference between an ad's segment durations in two renditions (1 ms)."""

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
# An absolute path of plain names: no dot segments, query, fragment or escapes,
# so it can be written into a playlist and signed as is.
_NAME = r"[A-Za-z0-9_~-][A-Za-z0-9._~-]*"
_AD_PATH = re.compile(rf"(?:/{_NAME})+")
_SCTE35_CUE_OUT = re.compile(r"[:,]CUE-OUT=YES(?:,|$)")
_SCTE35_ATTRIBUTES = frozenset({"SCTE35-OUT", "SCTE35-IN", "SCTE35-CMD"})
_IDENTITY = "identity"  # §5.1: the default KEYFORMAT
_TOKEN_QUERY = f"?{TOKEN_PARAMETER}="

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


# --- Types -------------------------------------------------------------------


class AdSegment(NamedTuple):
    """One ad media segment: absolute URL path and duration in seconds."""

    path: str
    duration: float


class ContentRendition(NamedTuple):
    """A content rendition of a session: ``("720p", 720, "ts")``; audio-only has no height."""

    name: str
    height: int | None
    container: str


def _check_path(path: str, what: str) -> None:
    if _AD_PATH.fullmatch(path) is None:
        raise ValueError(f"{what} must be an absolute path of plain names: {path!r}")


def _check_id(value: str, what: str) -> None:
    # Ids are written inside quoted-strings (§4.2) and joined with commas.
    if _ID.fullmatch(value) is None:
        raise ValueError(f"{what} must match {_ID.pattern}: {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class AdMedia:
    """One rendition of an ad creative, itself an HLS rendition.

    ``segments`` are ``(path, duration)`` pairs with absolute paths such as
    ``/hls/ads/{ad_id}/{rendition}/seg_00000.ts``. fMP4 needs ``init_path``
    (its EXT-X-MAP, RFC 8216 §3.3, §4.3.2.5); TS has none, because an
    EXT-X-MAP cannot be cancelled for content without one after the pod.
    """

    name: str
    height: int | None
    container: Container
    segments: tuple[tuple[str, float], ...]
    init_path: str | None = None

    def __post_init__(self) -> None:
        if self.container not in CONTAINERS:
            raise ValueError(f"container must be one of {CONTAINERS}: {self.container!r}")
        if self.height is not None and self.height <= 0:
            raise ValueError("height must be positive, or None for audio-only")
        if not self.segments:
            raise ValueError("an ad rendition needs at least one segment")
        for path, duration in self.segments:
            _check_path(path, "ad segment path")
            if not (math.isfinite(duration) and duration > 0):
                raise ValueError(f"ad segment duration must be positive: {duration!r}")
        if self.container == "fmp4" and self.init_path is None:
            raise ValueError("an fMP4 ad rendition needs init_path (RFC 8216 §3.3)")
        if self.container == "ts" and self.init_path is not None:
            raise ValueError("a TS ad rendition must not have init_path")
        if self.init_path is not None:
            _check_path(self.init_path, "ad init path")

    @property
    def duration(self) -> float:
        """Total duration in seconds, as written in the EXTINF tags."""
        return sum(_extinf_seconds(duration) for _, duration in self.segments)


@dataclass(frozen=True, slots=True, kw_only=True)
class AdCreative:
    """An ad creative: an HLS ladder of `AdMedia` renditions, paid for by a campaign."""

    ad_id: str
    campaign_id: str
    renditions: tuple[AdMedia, ...]

    def __post_init__(self) -> None:
        _check_id(self.ad_id, "ad_id")
        _check_id(self.campaign_id, "campaign_id")


@dataclass(frozen=True, slots=True, kw_only=True)
class Pod:
    """An ad break: ``ads`` played back to back at content time ``at_s``.

    ``at_s`` is 0.0 for a pre-roll and the content duration for a post-roll;
    ``index`` identifies the pod in tracking and in its DATERANGE ID.
    """

    index: int
    at_s: float
    ads: tuple[AdCreative, ...]

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ValueError("pod index must not be negative")
        if not (math.isfinite(self.at_s) and self.at_s >= 0):
            raise ValueError(f"pod time must be a finite time >= 0: {self.at_s!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakPolicy:
    """Where breaks go in a film (the ``break_policies`` table).

    ``max_pod_s`` and ``max_ads_per_pod`` bound what the ad decider puts in
    each pod; `plan_break_times` uses the others.
    """

    preroll: bool
    midroll_every_s: int | None
    use_cue_points: bool
    postroll: bool
    max_pod_s: float
    max_ads_per_pod: int

    def __post_init__(self) -> None:
        if self.midroll_every_s is not None and self.midroll_every_s <= 0:
            raise ValueError("midroll_every_s must be positive or None")
        if not (math.isfinite(self.max_pod_s) and self.max_pod_s > 0):
            raise ValueError("max_pod_s must be positive")
        if self.max_ads_per_pod < 1:
            raise ValueError("max_ads_per_pod must be at least 1")


class AdSegmentInfo(NamedTuple):
    """What an ad segment fetch means for tracking (impressions, quartiles, completes)."""

    pod_index: int
    ad_id: str
    campaign_id: str
    segment_index: int
    segment_count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PodSpan:
    """Where a pod landed in one stitched playlist.

    ``content_s`` is the content time the pod sits at, snapped to a segment
    boundary of this rendition: content resumes there, so a later fetch of a
    content segment starting at or after it confirms the pod's impressions.
    ``resume_path`` is that first content segment (None for a post-roll).
    ``start_s`` and ``duration_s`` are on the stitched timeline.
    """

    index: int
    ad_ids: tuple[str, ...]
    content_s: float
    start_s: float
    duration_s: float
    resume_path: str | None

    @property
    def end_s(self) -> float:
        """Stitched time at which the pod ends."""
        return self.start_s + self.duration_s


def _no_ad_segments() -> Mapping[str, tuple[AdSegmentInfo, ...]]:
    return MappingProxyType({})


def _no_content_segments() -> Mapping[str, float]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class StitchedPlaylist:
    """A stitched media playlist template and what the gateway needs for tracking.

    ``ad_segments`` maps each ad segment path to every place it plays, in
    playlist order: one creative may fill several pods, and its path is the
    same each time. ``content_segments`` maps each content segment path to its
    content start time (first occurrence).
    """

    template: PlaylistTemplate
    ad_segments: Mapping[str, tuple[AdSegmentInfo, ...]] = field(default_factory=_no_ad_segments)
    pods: tuple[PodSpan, ...] = ()
    content_segments: Mapping[str, float] = field(default_factory=_no_content_segments)

    @property
    def paths(self) -> tuple[str, ...]:
        """The paths to compute tokens for, in slot order."""
        return self.template.paths

    def render(self, tokens: Sequence[str], *, start_offset: float | None = None) -> str:
        """Render the playlist; see `PlaylistTemplate.render`.

        ``start_offset`` counts on the stitched timeline: see `output_time`.
        """
        return self.template.render(tokens, start_offset=start_offset)

    def output_time(self, content_s: float) -> float:
        """Stitched time at which content time ``content_s`` plays (after any pod there)."""
        return content_s + sum(pod.duration_s for pod in self.pods if pod.content_s <= content_s)


# --- Break planning ------------------------------------------------------------


def _boundaries(durations: Iterable[float]) -> list[float]:
    """Content times of every segment boundary: ``[0, d0, d0 + d1, ..., total]``."""
    times = [0.0]
    elapsed = 0.0
    for duration in durations:
        elapsed += duration
        times.append(elapsed)
    return times


def _nearest(boundaries: Sequence[float], at: float) -> int:
    """Index of the boundary nearest to ``at``; a tie goes to the earlier one."""
    index = bisect.bisect_left(boundaries, at)
    if index == len(boundaries):
        return index - 1
    if index > 0 and at - boundaries[index - 1] <= boundaries[index] - at:
        return index - 1
    return index


def _starts_break(segment: Segment) -> bool:
    """Whether an ad-break marker precedes ``segment``."""
    for cue in segment.cues:
        if cue.kind in (CueKind.OUT, CueKind.OATCLS_SCTE35):
            return True
        if cue.kind is CueKind.SCTE35 and _SCTE35_CUE_OUT.search(cue.line):
            return True
    # §4.3.2.7.1: SCTE35-OUT carries the splice_info_section of a splice out.
    return any(daterange.scte35_out is not None for daterange in segment.dateranges)


def find_cue_points(playlist: MediaPlaylist) -> list[float]:
    """Content times (seconds from the start) of the ad-break markers in ``playlist``.

    Understood: ``EXT-X-CUE-OUT`` (CUE-OUT-CONT and CUE-IN continue and end a
    break, they do not start one), ``EXT-X-DATERANGE`` with ``SCTE35-OUT``
    (RFC 8216 §4.3.2.7.1), ``EXT-OATCLS-SCTE35`` and ``EXT-X-SCTE35`` with
    ``CUE-OUT=YES``. A marker applies at the start of the segment it precedes;
    one after the last segment starts nothing. Sorted, without duplicates.
    """
    points: list[float] = []
    elapsed = 0.0
    for segment in playlist.segments:
        if _starts_break(segment):
            points.append(elapsed)
        elapsed += segment.duration
    return points


def plan_break_times(playlist: MediaPlaylist, policy: BreakPolicy) -> list[float]:
    """Content times at which ad pods start, in order.

    A pre-roll at 0; mid-rolls at the content's cue points when the policy
    uses them and there are any, otherwise every ``midroll_every_s`` snapped
    to the nearest segment boundary; a post-roll at the end. Mid-rolls are
    never at 0 or at the end, and no two breaks share a boundary.
    """
    boundaries = _boundaries(segment.duration for segment in playlist.segments)
    if len(boundaries) < 2:
        return []
    end = boundaries[-1]
    times: list[float] = []
    if policy.preroll:
        times.append(0.0)
    midrolls = (
        [t for t in find_cue_points(playlist) if 0 < t < end] if policy.use_cue_points else []
    )
    every = policy.midroll_every_s
    if not midrolls and every is not None:
        step = 1
        while step * every < end:
            snapped = boundaries[_nearest(boundaries, step * every)]
            if 0 < snapped < end and (not midrolls or midrolls[-1] != snapped):
                midrolls.append(snapped)
            step += 1
    times.extend(midrolls)
    if policy.postroll and end not in times:
        times.append(end)
    return times


# --- Choosing and aligning ad renditions ---------------------------------------


def choose_ad_rendition(
    content_height: int | None, content_container: str, ad: AdCreative
) -> AdMedia | None:
    """The rendition of ``ad`` to play inside a content rendition, or None if none fits.

    Same container (§3: one playlist cannot mix how its segments are packed
    without a discontinuity and map for each, and we keep the ladder simple);
    audio-only content (no height) gets an audio-only ad rendition, video the
    one closest in height, the lower on a tie (cheaper on mobile data).
    """
    best: AdMedia | None = None
    best_key = (0, False)
    for media in ad.renditions:
        if media.container != content_container:
            continue
        if media.height is None or content_height is None:
            if media.height is None and content_height is None and best is None:
                best = media
            continue
        key = (abs(media.height - content_height), media.height > content_height)
        if best is None or key < best_key:
            best, best_key = media, key
    return best


def _align_ad(
    ad: AdCreative, renditions: Sequence[tuple[str, int | None, str]]
) -> AdCreative | None:
    """``ad`` narrowed to the renditions the session plays, or None if they differ."""
    chosen: list[AdMedia] = []
    for _, height, container in renditions:
        media = choose_ad_rendition(height, container, ad)
        if media is None:
            return None
        chosen.append(media)
    reference = chosen[0].segments
    for media in chosen[1:]:
        if len(media.segments) != len(reference):
            return None
        for (_, duration), (_, expected) in zip(media.segments, reference, strict=True):
            if abs(duration - expected) > ALIGNMENT_TOLERANCE_S + 1e-9:
                return None
    # Every kept rendition gets the reference durations, so every playlist of
    # the session writes byte-identical EXTINF values for the ad.
    kept = tuple(
        replace(
            media,
            segments=tuple(
                AdSegment(path, expected)
                for (path, _), (_, expected) in zip(media.segments, reference, strict=True)
            ),
        )
        for media in ad.renditions
        if any(media is choice for choice in chosen)
    )
    return replace(ad, renditions=kept)


def align_pods(
    pods: Iterable[Pod], content_renditions: Sequence[tuple[str, int | None, str]]
) -> tuple[Pod, ...]:
    """Keep only the ads that play identically in every content rendition of a session.

    ``content_renditions`` are ``(name, height, container)`` for every video
    rendition and alternate-audio playlist. An ad stays in its pod only if
    `choose_ad_rendition` finds a rendition for each, all with the same
    segment count and durations within `ALIGNMENT_TOLERANCE_S`; otherwise it
    is dropped for all of them, and empty pods disappear. Kept ads are narrowed
    to the chosen renditions with one set of durations, so each stitched
    playlist has the same discontinuities at the same times: players align
    renditions by discontinuity sequence and time (§6.2.2, §6.3.3), and
    misaligned ones stall at ad breaks.
    """
    if not content_renditions:
        raise ValueError("align_pods needs at least one content rendition")
    aligned: list[Pod] = []
    for pod in pods:
        ads = tuple(kept for kept in (_align_ad(ad, content_renditions) for ad in pod.ads) if kept)
        if ads:
            aligned.append(replace(pod, ads=ads))
    return tuple(aligned)


# --- Stitching ------------------------------------------------------------------


def _extinf_text(duration: float) -> str:
    """EXTINF duration as written for ad segments (§4.3.2.1, needs version 3)."""
    return f"{duration:.6f}"


def _extinf_seconds(duration: float) -> float:
    return float(_extinf_text(duration))


def _round_half_up(seconds: float) -> int:
    """§4.3.3.1: each EXTINF "rounded to the nearest integer" <= target duration."""
    return math.floor(seconds + 0.5)


def _iso_date(anchor: datetime, seconds: float) -> str:
    """ISO 8601 date (RFC 3339 profile, §4.3.2.6) ``seconds`` after ``anchor``."""
    moment = anchor + timedelta(milliseconds=round(seconds * 1000))
    text = moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")
    return text + "Z"


class _KeyLine(NamedTuple):
    """An EXT-X-KEY line of the content: its line index and what matters about it."""

    line: int
    encrypted: bool  # METHOD is not NONE
    implicit_iv: bool  # the IV is the Media Sequence Number (§5.2)


@dataclass(slots=True)
class _Content:
    """What a scan of the content lines found, per segment and for the header."""

    uri_lines: list[int] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    lead_starts: list[int] = field(default_factory=list)  # where a pod before it goes
    lead_disc: list[int | None] = field(default_factory=list)  # its first DISCONTINUITY
    lead_key: list[bool] = field(default_factory=list)
    lead_map: list[bool] = field(default_factory=list)
    keys: list[tuple[_KeyLine, ...]] = field(default_factory=list)  # in effect
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


def _key_line(index: int, text: str) -> _KeyLine:
    attributes = parse_tag_attributes(text)
    method = attributes.enum("METHOD")
    keyformat = attributes.string("KEYFORMAT")
    encrypted = method != tags.KEY_METHOD_NONE
    implicit = encrypted and "IV" not in attributes and keyformat in (None, _IDENTITY)
    return _KeyLine(index, encrypted, implicit)


def _scan(lines: list[Line]) -> _Content:
    """One pass over the (already checked) content lines."""
    content = _Content()
    first_segment_tag: int | None = None
    duration = 0.0
    keys: list[_KeyLine] = []
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


def _check_stitchable(content: _Content, container: str) -> None:
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


class _Splice:
    """Pieces to add to or change in the content's pieces, by line index."""

    def __init__(self, lines: list[Line], pieces: list[_Piece], starts: list[int]) -> None:
        self.lines = lines
        self.pieces = pieces
        self.starts = starts
        self.eol = lines[0].eol or "\n"
        self.before: dict[int, list[_Piece]] = {}
        self.after: dict[int, list[_Piece]] = {}
        self.replaced: dict[int, list[_Piece]] = {}

    def line_pieces(self, index: int) -> list[_Piece]:
        return self.pieces[self.starts[index] : self.starts[index + 1]]

    def tag(self, text: str) -> str:
        return text + self.eol

    def key_line(self, key: _KeyLine, media_sequence: int | None) -> list[_Piece]:
        """The pieces of a content key line, with an explicit IV when asked (§5.2)."""
        pieces = self.line_pieces(key.line)
        if media_sequence is None or not key.implicit_iv:
            return pieces
        eol = self.lines[key.line].eol
        last = pieces[-1]
        assert isinstance(last, str)  # a line's pieces end with its text and terminator
        iv = f",IV=0x{media_sequence:032X}"
        return [*pieces[:-1], last[: len(last) - len(eol)] + iv + eol]

    def join(self, dropped: set[int]) -> list[_Piece]:
        out: list[_Piece] = list(self.line_pieces(0))
        for index in range(1, len(self.lines)):
            out.extend(self.before.get(index, ()))
            if index in self.replaced:
                out.extend(self.replaced[index])
            elif index not in dropped:
                out.extend(self.line_pieces(index))
            out.extend(self.after.get(index, ()))
        out.extend(self.before.get(len(self.lines), ()))
        return out


def _check_pods(pods: Sequence[Pod]) -> None:
    indexes = [pod.index for pod in pods]
    if len(set(indexes)) != len(indexes):
        raise ValueError("pod indexes must be unique: they name the pods' DATERANGE IDs")


def _slot_path(pieces: Iterable[_Piece]) -> str:
    return next(piece.path for piece in pieces if isinstance(piece, _Slot))


def stitch_media_playlist(
    text: str,
    *,
    playlist_path: str,
    root: str,
    pods: Sequence[Pod],
    content_height: int | None,
    content_container: str,
    anchor: datetime = DEFAULT_ANCHOR,
) -> StitchedPlaylist:
    """Compile a VOD media playlist with ad ``pods`` stitched in (RFC 8216).

    Content lines and URIs come out exactly as `compile_media_playlist` writes
    them (same code), with no pods byte for byte. With pods:

    * each pod goes before the content segment whose start is nearest to
      ``pod.at_s`` (after the last for a post-roll); each creative is preceded
      by EXT-X-DISCONTINUITY (§4.3.2.3), except at the very start of the
      playlist, where there is no earlier segment to be discontinuous with, and
      one follows the pod unless the content segment already has its own;
    * the pod is marked by an EXT-X-DATERANGE of CLASS `AD_DATERANGE_CLASS`
      (§4.3.2.7) before its first segment; EXT-X-PROGRAM-DATE-TIME (§4.3.2.6)
      is written on the first segment and after every discontinuity, on one
      timeline from ``anchor``, so START-DATE maps to media time. The source's
      own PROGRAM-DATE-TIME tags and ad-cue markers (CUE-OUT/-CONT/-IN,
      OATCLS-SCTE35, EXT-X-SCTE35, SCTE-35 DATERANGEs) are left out: the breaks
      are filled and marked by us, and stale markers would put "Ad" on film;
    * fMP4 ads carry their own EXT-X-MAP and the content's is restated after
      the pod (§4.3.2.5); for encrypted content METHOD=NONE precedes the ads
      and the content key lines in effect are restated after them (§4.3.2.4).
      A content key with no IV uses the Media Sequence Number as IV (§5.2),
      which the inserted segments shift, so from the first pod on such keys
      are restated before each content segment with its original number as IV;
    * ad URIs are absolute paths with a token slot; EXT-X-TARGETDURATION is
      raised to cover every rounded EXTINF (§4.3.3.1) and EXT-X-VERSION to what
      the output needs (§7); MEDIA-SEQUENCE and DISCONTINUITY-SEQUENCE are
      kept (§4.3.3.2, §4.3.3.3).

    Pods must fit this rendition (see `align_pods`), else `ValueError`.
    Raises `PlaylistError` for malformed content and for content that cannot
    be stitched (I-frame, live, no segments, container mismatch).
    """
    if content_container not in CONTAINERS:
        raise ValueError(f"content_container must be one of {CONTAINERS}")
    if anchor.utcoffset() is None:
        raise ValueError("anchor must be an aware datetime")
    _check_pods(pods)
    lines, pieces, starts = _media_pieces(text, playlist_path, root)
    splice = _Splice(lines, pieces, starts)
    live_pods = [pod for pod in pods if pod.ads]
    if not live_pods:
        # Exactly compile_media_playlist: nothing beyond what it checks is read.
        return StitchedPlaylist(
            template=_assemble(pieces, lines[0]),
            content_segments=_content_segments(splice, *_segment_lines(lines)),
        )
    content = _scan(lines)
    _check_stitchable(content, content_container)
    content_paths = [_slot_path(splice.line_pieces(index)) for index in content.uri_lines]
    boundaries = _boundaries(content.durations)

    # Group the pods by the boundary they snap to, and pick each ad's rendition.
    groups: dict[int, list[tuple[Pod, list[tuple[AdCreative, AdMedia]]]]] = {}
    for pod in sorted(live_pods, key=lambda p: (p.at_s, p.index)):
        chosen: list[tuple[AdCreative, AdMedia]] = []
        for ad in pod.ads:
            media = choose_ad_rendition(content_height, content_container, ad)
            if media is None:
                raise ValueError(
                    f"ad {ad.ad_id} has no {content_container} rendition for height "
                    f"{content_height}: align the pods first"
                )
            chosen.append((ad, media))
        groups.setdefault(_nearest(boundaries, pod.at_s), []).append((pod, chosen))

    stitcher = _Stitcher(splice, content, anchor)
    clock = 0.0  # stitched time at the current boundary, before its pods
    for boundary, content_s in enumerate(boundaries):
        if boundary:
            clock += content.durations[boundary - 1]
        block: list[_Piece] = []
        resume_path = content_paths[boundary] if boundary < len(content_paths) else None
        for pod, chosen in groups.get(boundary, ()):
            span = stitcher.add_pod(
                block, pod, chosen, clock, boundary, content_s=content_s, resume_path=resume_path
            )
            stitcher.spans.append(span)
            clock = span.end_s
        if boundary < len(content_paths):
            stitcher.resume(block, boundary, clock, after_pod=boundary in groups)
            insert_at = content.lead_starts[boundary]
        else:
            insert_at = content.uri_lines[-1] + 1
            if block and insert_at == len(lines) and not lines[-1].eol:
                block.insert(0, splice.eol)  # the source's last line had no terminator
        if block:
            splice.before.setdefault(insert_at, []).extend(block)
    stitcher.fix_header()

    return StitchedPlaylist(
        template=_assemble(splice.join(content.dropped), lines[0]),
        ad_segments=MappingProxyType(
            {path: tuple(infos) for path, infos in stitcher.ad_segments.items()}
        ),
        pods=tuple(stitcher.spans),
        content_segments=_content_segments(splice, content.uri_lines, content.durations),
    )


def _segment_lines(lines: list[Line]) -> tuple[list[int], list[float]]:
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


def _content_segments(
    splice: _Splice, uri_lines: list[int], durations: list[float]
) -> Mapping[str, float]:
    """Content segment path -> content time it starts at (its first occurrence)."""
    starts: dict[str, float] = {}
    for index, start in zip(uri_lines, _boundaries(durations), strict=False):
        starts.setdefault(_slot_path(splice.line_pieces(index)), start)
    return MappingProxyType(starts)


class _Stitcher:
    """Builds the lines of pods and of the returns to content, and the header fixes."""

    def __init__(self, splice: _Splice, content: _Content, anchor: datetime) -> None:
        self.splice = splice
        self.content = content
        self.anchor = anchor
        self.spans: list[PodSpan] = []
        self.ad_segments: dict[str, list[AdSegmentInfo]] = {}
        self.longest = max(content.durations)
        self.maps_written = False
        self.shifted = False  # ad segments precede, and so renumber, the content from here

    def _date(self, seconds: float) -> str:
        return _iso_date(self.anchor, seconds)

    def _keys_before(self, boundary: int) -> tuple[_KeyLine, ...]:
        return self.content.keys[boundary - 1] if boundary else ()

    def add_pod(
        self,
        block: list[_Piece],
        pod: Pod,
        chosen: list[tuple[AdCreative, AdMedia]],
        clock: float,
        boundary: int,
        *,
        content_s: float,
        resume_path: str | None,
    ) -> PodSpan:
        """Append ``pod``'s lines to ``block``; return where it lies on the stitched timeline."""
        tag = self.splice.tag
        start = clock
        seconds = sum(media.duration for _, media in chosen)
        # A pod after a pod at the same boundary finds its key already cleared.
        clear_key = not block and any(key.encrypted for key in self._keys_before(boundary))
        for position, (ad, media) in enumerate(chosen):
            if block or boundary:  # §4.3.2.3: nothing to be discontinuous with at the start
                block.append(tag(tags.EXT_X_DISCONTINUITY))
            if clear_key:
                block.append(tag(f"{tags.EXT_X_KEY}:METHOD={tags.KEY_METHOD_NONE}"))
                clear_key = False
            date = self._date(clock)
            if position == 0:
                ad_ids = ",".join(a.ad_id for a, _ in chosen)
                block.append(
                    tag(
                        f'{tags.EXT_X_DATERANGE}:ID="ad-{pod.index}",'
                        f'CLASS="{AD_DATERANGE_CLASS}",START-DATE="{date}",'
                        f'DURATION={seconds:.3f},X-AD-IDS="{ad_ids}"'
                    )
                )
            if media.init_path is not None:
                block += [
                    f'{tags.EXT_X_MAP}:URI="{media.init_path}{_TOKEN_QUERY}',
                    _Slot(media.init_path),
                    tag('"'),
                ]
                self.maps_written = True
            block.append(tag(f"{tags.EXT_X_PROGRAM_DATE_TIME}:{date}"))
            count = len(media.segments)
            for number, (path, duration) in enumerate(media.segments):
                block += [
                    tag(f"{tags.EXTINF}:{_extinf_text(duration)},"),
                    path + _TOKEN_QUERY,
                    _Slot(path),
                    self.splice.eol,
                ]
                self.ad_segments.setdefault(path, []).append(
                    AdSegmentInfo(pod.index, ad.ad_id, ad.campaign_id, number, count)
                )
                self.longest = max(self.longest, _extinf_seconds(duration))
                clock += _extinf_seconds(duration)
        self.shifted = True
        return PodSpan(
            index=pod.index,
            ad_ids=tuple(ad.ad_id for ad, _ in chosen),
            content_s=content_s,
            start_s=start,
            duration_s=clock - start,
            resume_path=resume_path,
        )

    def resume(self, block: list[_Piece], boundary: int, clock: float, *, after_pod: bool) -> None:
        """Lines before content segment ``boundary``: discontinuity, date, key and map."""
        content, splice = self.content, self.splice
        date = splice.tag(f"{tags.EXT_X_PROGRAM_DATE_TIME}:{self._date(clock)}")
        own_disc = content.lead_disc[boundary]
        # §4.3.2.6: a date on the first segment and after every discontinuity, ours
        # or the content's own (whose tag then serves; two would count twice).
        if own_disc is not None:
            splice.after[own_disc] = [date]
        elif after_pod:
            block += [splice.tag(tags.EXT_X_DISCONTINUITY), date]
        elif boundary == 0:
            block.append(date)
        # §4.3.2.4: restate the key(s) in effect after METHOD=NONE; §5.2: once ad
        # segments have shifted the Media Sequence Numbers, a key without IV gets
        # the segment's original number as explicit IV, on every segment.
        keys = content.keys[boundary]
        sequence = content.media_sequence + boundary if self.shifted else None
        if content.lead_key[boundary]:
            if sequence is not None:
                for key in keys:
                    if key.implicit_iv:
                        splice.replaced[key.line] = splice.key_line(key, sequence)
        elif (after_pod and any(key.encrypted for key in self._keys_before(boundary))) or (
            sequence is not None and any(key.implicit_iv for key in keys)
        ):
            for key in keys:
                block += splice.key_line(key, sequence)
        # §4.3.2.5: the content's init section, unless the segment brings its own.
        map_before = content.maps[boundary - 1] if boundary else None
        if after_pod and map_before is not None and not content.lead_map[boundary]:
            block += splice.line_pieces(map_before)
        # §4.3.2.2: a sub-range without offset continues the previous segment's,
        # which is now an ad segment: state the offset.
        implicit = content.implicit_ranges.get(boundary)
        if after_pod and implicit is not None:
            line, length, offset = implicit
            eol = splice.lines[line].eol
            splice.replaced[line] = [f"{tags.EXT_X_BYTERANGE}:{ByteRange(length, offset)}{eol}"]

    def fix_header(self) -> None:
        """Raise EXT-X-TARGETDURATION (§4.3.3.1) and EXT-X-VERSION (§7) as needed."""
        content, splice = self.content, self.splice
        target = max(content.target_duration, _round_half_up(self.longest))
        if content.target_line is not None and target != content.target_duration:
            eol = splice.lines[content.target_line].eol
            splice.replaced[content.target_line] = [f"{tags.EXT_X_TARGETDURATION}:{target}{eol}"]
        # Version 3 for decimal EXTINF durations, 6 for EXT-X-MAP in a media playlist.
        needed = 6 if self.maps_written else 3
        if content.version >= needed:
            return
        if content.version_line is None:
            splice.before.setdefault(1, []).insert(0, splice.tag(f"{tags.EXT_X_VERSION}:{needed}"))
        else:
            eol = splice.lines[content.version_line].eol
            splice.replaced[content.version_line] = [f"{tags.EXT_X_VERSION}:{needed}{eol}"]

"""Stitching: a VOD media playlist plus ad pods, compiled into one template.

`stitch_media_playlist` snaps each pod to a content segment boundary (with the
same functions that plan break times), lets `PodWriter` write the pods and the
returns to content into a `Splice` of the compiled content, and assembles the
result with `assemble_template`, the function `compile_media_playlist` uses:
serving a stitched playlist still costs the token MACs and one join, and the
template can be cached per (content version, rendition, pod plan).
"""

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final

from ..rewrite import media_pieces
from ..template import Piece, Slot, assemble_template
from .align import choose_ad_rendition
from .breaks import nearest_boundary, segment_boundaries
from .content import ContentScan, check_stitchable, scan_content, segment_lines
from .model import CONTAINERS, AdCreative, AdMedia, Pod, StitchedPlaylist
from .pods import PodWriter
from .splice import Splice

DEFAULT_ANCHOR: Final = datetime(2000, 1, 1, tzinfo=UTC)
"""EXT-X-PROGRAM-DATE-TIME of the first stitched segment unless the caller picks one."""


def _check_pods(pods: Sequence[Pod]) -> None:
    indexes = [pod.index for pod in pods]
    if len(set(indexes)) != len(indexes):
        raise ValueError("pod indexes must be unique: they name the pods' DATERANGE IDs")


def _slot_path(pieces: Iterable[Piece]) -> str:
    return next(piece.path for piece in pieces if isinstance(piece, Slot))


class StitchSource:
    """A content media playlist compiled once for stitching: what every pod plan of it
    shares (its lines and compiled pieces, and the scan that places pods), so a new pod
    plan of an already stitched film costs only its own pods and the join.

    Read-only once built (stitches only add edits of their own), so one source serves
    any number of stitches, in any thread. The scan is done on the first stitch with
    pods; a scan that fails is not kept and fails again the next time.
    """

    __slots__ = ("_placed", "_scan", "lines", "pieces", "starts")

    def __init__(self, text: str, *, playlist_path: str, root: str) -> None:
        self.lines, self.pieces, self.starts = media_pieces(text, playlist_path, root)
        self._scan: ContentScan | None = None
        self._placed: tuple[list[str], list[float], Mapping[str, float]] | None = None

    def scan(self) -> ContentScan:
        """The content scan (`scan_content`), done once."""
        if self._scan is None:
            self._scan = scan_content(self.lines)
        return self._scan

    def placed(
        self, splice: Splice, content: ContentScan
    ) -> tuple[list[str], list[float], Mapping[str, float]]:
        """Each content segment's path, the segment boundaries, and the content
        segments' start times, computed once (for stitchable content only)."""
        if self._placed is None:
            paths = [_slot_path(splice.line_pieces(index)) for index in content.uri_lines]
            self._placed = (
                paths,
                segment_boundaries(content.durations),
                _content_segments(splice, content.uri_lines, content.durations),
            )
        return self._placed


def _check_arguments(pods: Sequence[Pod], content_container: str, anchor: datetime) -> None:
    if content_container not in CONTAINERS:
        raise ValueError(f"content_container must be one of {CONTAINERS}")
    if anchor.utcoffset() is None:
        raise ValueError("anchor must be an aware datetime")
    _check_pods(pods)


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
    _check_arguments(pods, content_container, anchor)
    return stitch_source(
        StitchSource(text, playlist_path=playlist_path, root=root),
        pods=pods,
        content_height=content_height,
        content_container=content_container,
        anchor=anchor,
    )


def stitch_source(
    source: StitchSource,
    *,
    pods: Sequence[Pod],
    content_height: int | None,
    content_container: str,
    anchor: datetime = DEFAULT_ANCHOR,
) -> StitchedPlaylist:
    """`stitch_media_playlist` of a content playlist compiled once (`StitchSource`):
    the same output, without parsing and scanning the content again."""
    _check_arguments(pods, content_container, anchor)
    lines, pieces = source.lines, source.pieces
    splice = Splice(lines, pieces, source.starts)
    live_pods = [pod for pod in pods if pod.ads]
    if not live_pods:
        # Exactly compile_media_playlist: nothing beyond what it checks is read.
        return StitchedPlaylist(
            template=assemble_template(pieces, lines[0]),
            content_segments=_content_segments(splice, *segment_lines(lines)),
        )
    content = source.scan()
    check_stitchable(content, content_container)
    content_paths, boundaries, content_segments = source.placed(splice, content)

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
        groups.setdefault(nearest_boundary(boundaries, pod.at_s), []).append((pod, chosen))

    writer = PodWriter(splice, content, anchor)
    clock = 0.0  # stitched time at the current boundary, before its pods
    for boundary, content_s in enumerate(boundaries):
        if boundary:
            clock += content.durations[boundary - 1]
        block: list[Piece] = []
        resume_path = content_paths[boundary] if boundary < len(content_paths) else None
        for pod, chosen in groups.get(boundary, ()):
            span = writer.add_pod(
                block, pod, chosen, clock, boundary, content_s=content_s, resume_path=resume_path
            )
            writer.spans.append(span)
            clock = span.end_s
        if boundary < len(content_paths):
            writer.resume(block, boundary, clock, after_pod=boundary in groups)
            insert_at = content.lead_starts[boundary]
        else:
            insert_at = content.uri_lines[-1] + 1
            if block and insert_at == len(lines) and not lines[-1].eol:
                block.insert(0, splice.eol)  # the source's last line had no terminator
        if block:
            splice.before.setdefault(insert_at, []).extend(block)
    writer.fix_header()

    return StitchedPlaylist(
        template=assemble_template(splice.join(content.dropped), lines[0]),
        ad_segments=MappingProxyType(
            {path: tuple(infos) for path, infos in writer.ad_segments.items()}
        ),
        pods=tuple(writer.spans),
        content_segments=content_segments,
    )


def _content_segments(
    splice: Splice, uri_lines: list[int], durations: list[float]
) -> Mapping[str, float]:
    """Content segment path -> content time it starts at (its first occurrence)."""
    starts: dict[str, float] = {}
    for index, start in zip(uri_lines, segment_boundaries(durations), strict=False):
        starts.setdefault(_slot_path(splice.line_pieces(index)), start)
    return MappingProxyType(starts)

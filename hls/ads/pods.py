"""The pod writer: the lines of each ad pod, of each return to content, and header fixes.

`PodWriter` is driven by `stitch_media_playlist` boundary by boundary. For each
pod it writes the discontinuities, DATERANGE, dates, init sections and ad
segments (with token slots); for each content segment after a pod it restates
what the ads changed (discontinuity, date, key, init section, byte range
offset); at the end it raises EXT-X-TARGETDURATION and EXT-X-VERSION as the
output needs. Every rule applied is cited at the line that applies it.
"""

import math
from datetime import UTC, datetime, timedelta

from .. import tags
from ..model import ByteRange
from ..rewrite import TOKEN_QUERY
from ..template import Piece, Slot
from .content import ContentScan, KeyLine
from .model import (
    AD_DATERANGE_CLASS,
    AdCreative,
    AdMedia,
    AdSegmentInfo,
    Pod,
    PodSpan,
    extinf_seconds,
    extinf_text,
)
from .splice import Splice


def _round_half_up(seconds: float) -> int:
    """§4.3.3.1: each EXTINF "rounded to the nearest integer" <= target duration."""
    return math.floor(seconds + 0.5)


def _iso_date(anchor: datetime, seconds: float) -> str:
    """ISO 8601 date (RFC 3339 profile, §4.3.2.6) ``seconds`` after ``anchor``."""
    moment = anchor + timedelta(milliseconds=round(seconds * 1000))
    text = moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")
    return text + "Z"


class PodWriter:
    """Builds the lines of pods and of the returns to content, and the header fixes."""

    def __init__(self, splice: Splice, content: ContentScan, anchor: datetime) -> None:
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

    def _keys_before(self, boundary: int) -> tuple[KeyLine, ...]:
        return self.content.keys[boundary - 1] if boundary else ()

    def add_pod(
        self,
        block: list[Piece],
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
                    f'{tags.EXT_X_MAP}:URI="{media.init_path}{TOKEN_QUERY}',
                    Slot(media.init_path),
                    tag('"'),
                ]
                self.maps_written = True
            block.append(tag(f"{tags.EXT_X_PROGRAM_DATE_TIME}:{date}"))
            count = len(media.segments)
            for number, (path, duration) in enumerate(media.segments):
                block += [
                    tag(f"{tags.EXTINF}:{extinf_text(duration)},"),
                    path + TOKEN_QUERY,
                    Slot(path),
                    self.splice.eol,
                ]
                self.ad_segments.setdefault(path, []).append(
                    AdSegmentInfo(pod.index, ad.ad_id, ad.campaign_id, number, count)
                )
                self.longest = max(self.longest, extinf_seconds(duration))
                clock += extinf_seconds(duration)
        self.shifted = True
        return PodSpan(
            index=pod.index,
            ad_ids=tuple(ad.ad_id for ad, _ in chosen),
            content_s=content_s,
            start_s=start,
            duration_s=clock - start,
            resume_path=resume_path,
        )

    def resume(self, block: list[Piece], boundary: int, clock: float, *, after_pod: bool) -> None:
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

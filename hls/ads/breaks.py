"""Where ad breaks go: cue points in the content, and break times snapped to segments.

A pod can only go between two media segments, so every break time is a segment
boundary of the content. `segment_boundaries` and `nearest_boundary` are also
what the stitcher snaps each pod's time with, so a planned time and the place
the pod lands agree.
"""

import bisect
import re
from collections.abc import Iterable, Sequence

from ..model import CueKind, MediaPlaylist, Segment
from .model import BreakPolicy

_SCTE35_CUE_OUT = re.compile(r"[:,]CUE-OUT=YES(?:,|$)")


def segment_boundaries(durations: Iterable[float]) -> list[float]:
    """Content times of every segment boundary: ``[0, d0, d0 + d1, ..., total]``."""
    times = [0.0]
    elapsed = 0.0
    for duration in durations:
        elapsed += duration
        times.append(elapsed)
    return times


def nearest_boundary(boundaries: Sequence[float], at: float) -> int:
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
        # most segments carry no marker: skip the call (a playback start runs this over
        # every segment of the film)
        if (segment.cues or segment.dateranges) and _starts_break(segment):
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
    boundaries = segment_boundaries(segment.duration for segment in playlist.segments)
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
            snapped = boundaries[nearest_boundary(boundaries, step * every)]
            if 0 < snapped < end and (not midrolls or midrolls[-1] != snapped):
                midrolls.append(snapped)
            step += 1
    times.extend(midrolls)
    if policy.postroll and end not in times:
        times.append(end)
    return times

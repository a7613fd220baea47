"""The typed model of ad insertion: creatives, pods, break policies, what a stitch reports.

Each type checks its own invariants on construction, so the planning, alignment
and stitching code (`hls.ads.breaks`, `hls.ads.align`, `hls.ads.stitch`) can
trust what it is given: ad paths are absolute paths of plain names that can be
written into a playlist and signed as they are, ids fit inside a quoted-string
(RFC 8216 §4.2), durations are positive and finite.
"""

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, NamedTuple

from ..template import PlaylistTemplate

Container = Literal["ts", "fmp4"]
"""How a rendition's segments are packaged: MPEG-TS (§3.2) or fragmented MP4 (§3.3)."""

CONTAINERS: Final = ("ts", "fmp4")

AD_DATERANGE_CLASS: Final = "com.kushfilms.ad"
"""EXT-X-DATERANGE CLASS that marks an ad pod; a contract with players (DESIGN.md)."""

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
# An absolute path of plain names: no dot segments, query, fragment or escapes,
# so it can be written into a playlist and signed as is.
_NAME = r"[A-Za-z0-9_~-][A-Za-z0-9._~-]*"
_AD_PATH = re.compile(rf"(?:/{_NAME})+")


def extinf_text(duration: float) -> str:
    """EXTINF duration as written for ad segments (§4.3.2.1, needs version 3)."""
    return f"{duration:.6f}"


def extinf_seconds(duration: float) -> float:
    """The duration a player reads back from `extinf_text`: what the timeline adds up."""
    return float(extinf_text(duration))


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
        return sum(extinf_seconds(duration) for _, duration in self.segments)


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

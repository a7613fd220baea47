"""Server-side ad insertion (SSAI): ad pods stitched into VOD media playlists.

The ad decision (which creatives in which pods) is made once per playback
session elsewhere. This package does the pure playlist work around it, one
concern a module:

* `model`: creatives, pods, break policies and what a stitch reports;
* `breaks`: `find_cue_points` and `plan_break_times` decide where breaks go;
* `align`: `choose_ad_rendition` and `align_pods` pick the ad rendition that
  plays in each content rendition, keeping only ads that line up in all of
  them, so every rendition and audio group of a session gets identical pods;
* `stitch`: `stitch_media_playlist` compiles content text plus pods into a
  `PlaylistTemplate`, the class `compile_media_playlist` returns, so serving a
  stitched playlist still costs the token MACs and one join, and the template
  can be cached per (content version, rendition, pod plan); it scans the
  content (`content`), edits its compiled lines (`splice`) and has the pod
  writer (`pods`) write what goes between them; `StitchSource` and
  `stitch_source` keep the content compiled and scanned once for any number of
  pod plans.

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

from .align import ALIGNMENT_TOLERANCE_S, align_pods, choose_ad_rendition
from .breaks import find_cue_points, plan_break_times
from .model import (
    AD_DATERANGE_CLASS,
    CONTAINERS,
    AdCreative,
    AdMedia,
    AdSegment,
    AdSegmentInfo,
    BreakPolicy,
    Container,
    ContentRendition,
    Pod,
    PodSpan,
    StitchedPlaylist,
)
from .stitch import DEFAULT_ANCHOR, StitchSource, stitch_media_playlist, stitch_source

__all__ = [
    "AD_DATERANGE_CLASS",
    "ALIGNMENT_TOLERANCE_S",
    "CONTAINERS",
    "DEFAULT_ANCHOR",
    "AdCreative",
    "AdMedia",
    "AdSegment",
    "AdSegmentInfo",
    "BreakPolicy",
    "Container",
    "ContentRendition",
    "Pod",
    "PodSpan",
    "StitchSource",
    "StitchedPlaylist",
    "align_pods",
    "choose_ad_rendition",
    "find_cue_points",
    "plan_break_times",
    "stitch_media_playlist",
    "stitch_source",
]

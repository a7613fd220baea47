"""The pure HLS core: parse, check, rewrite and write playlists (RFC 8216). No I/O.

The gateway compiles each origin playlist once into a template
(`compile_media_playlist`, `compile_master_playlist`, or `stitch_media_playlist`
with ad pods for the free tier), caches it, and per request computes one token
per ``template.paths`` entry and calls ``template.render``. Ingest writes the
master playlist of each ladder it packages with `write_master_playlist`.
"""

from .ads import (
    AD_DATERANGE_CLASS,
    AdCreative,
    AdMedia,
    AdSegment,
    AdSegmentInfo,
    BreakPolicy,
    ContentRendition,
    Pod,
    PodSpan,
    StitchedPlaylist,
    StitchSource,
    align_pods,
    choose_ad_rendition,
    find_cue_points,
    plan_break_times,
    stitch_media_playlist,
    stitch_source,
)
from .attributes import AttributeList, Resolution, parse_attribute_list
from .errors import ForeignUriError, PlaylistError
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
from .parser import parse_master_playlist, parse_media_playlist
from .rewrite import (
    TOKEN_PARAMETER,
    MasterTemplate,
    VariantRef,
    compile_master_playlist,
    compile_media_playlist,
    resolve_uri,
)
from .template import PlaylistTemplate
from .writer import AudioRendition, VariantStream, write_master_playlist

__all__ = [
    "AD_DATERANGE_CLASS",
    "TOKEN_PARAMETER",
    "AdCreative",
    "AdMedia",
    "AdSegment",
    "AdSegmentInfo",
    "AttributeList",
    "AudioRendition",
    "BreakPolicy",
    "ByteRange",
    "ContentRendition",
    "Cue",
    "CueKind",
    "DateRange",
    "ForeignUriError",
    "IFrameVariant",
    "InitSection",
    "Key",
    "MasterPlaylist",
    "MasterTemplate",
    "MediaPlaylist",
    "PlaylistError",
    "PlaylistTemplate",
    "Pod",
    "PodSpan",
    "Rendition",
    "Resolution",
    "Segment",
    "SessionData",
    "Start",
    "StitchSource",
    "StitchedPlaylist",
    "Variant",
    "VariantRef",
    "VariantStream",
    "align_pods",
    "choose_ad_rendition",
    "compile_master_playlist",
    "compile_media_playlist",
    "find_cue_points",
    "parse_attribute_list",
    "parse_master_playlist",
    "parse_media_playlist",
    "plan_break_times",
    "resolve_uri",
    "stitch_media_playlist",
    "stitch_source",
    "write_master_playlist",
]

"""The pure HLS core: parse, check and rewrite playlists (RFC 8216). No I/O.

The gateway compiles each origin playlist once into a template
(`compile_media_playlist`, `compile_master_playlist`), caches it, and per request
computes one token per ``template.paths`` entry and calls ``template.render``.
"""

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

__all__ = [
    "TOKEN_PARAMETER",
    "AttributeList",
    "ByteRange",
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
    "Rendition",
    "Resolution",
    "Segment",
    "SessionData",
    "Start",
    "Variant",
    "VariantRef",
    "compile_master_playlist",
    "compile_media_playlist",
    "parse_attribute_list",
    "parse_master_playlist",
    "parse_media_playlist",
    "resolve_uri",
]

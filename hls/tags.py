"""HLS tag names (RFC 8216 §4.3 and its low-latency successor draft) in one place.

Every constant includes the leading ``#`` so that a tag line can be compared
against it directly: ``tag_name(line) == EXTINF``.
"""

from typing import Final

# §4.3.1 Basic tags.
EXTM3U: Final = "#EXTM3U"
EXT_X_VERSION: Final = "#EXT-X-VERSION"

# §4.3.2 Media segment tags.
EXTINF: Final = "#EXTINF"
EXT_X_BYTERANGE: Final = "#EXT-X-BYTERANGE"
EXT_X_DISCONTINUITY: Final = "#EXT-X-DISCONTINUITY"
EXT_X_KEY: Final = "#EXT-X-KEY"
EXT_X_MAP: Final = "#EXT-X-MAP"
EXT_X_PROGRAM_DATE_TIME: Final = "#EXT-X-PROGRAM-DATE-TIME"
EXT_X_DATERANGE: Final = "#EXT-X-DATERANGE"
EXT_X_GAP: Final = "#EXT-X-GAP"
EXT_X_BITRATE: Final = "#EXT-X-BITRATE"

# §4.3.3 Media playlist tags.
EXT_X_TARGETDURATION: Final = "#EXT-X-TARGETDURATION"
EXT_X_MEDIA_SEQUENCE: Final = "#EXT-X-MEDIA-SEQUENCE"
EXT_X_DISCONTINUITY_SEQUENCE: Final = "#EXT-X-DISCONTINUITY-SEQUENCE"
EXT_X_ENDLIST: Final = "#EXT-X-ENDLIST"
EXT_X_PLAYLIST_TYPE: Final = "#EXT-X-PLAYLIST-TYPE"
EXT_X_I_FRAMES_ONLY: Final = "#EXT-X-I-FRAMES-ONLY"

# §4.3.4 Master playlist tags.
EXT_X_MEDIA: Final = "#EXT-X-MEDIA"
EXT_X_STREAM_INF: Final = "#EXT-X-STREAM-INF"
EXT_X_I_FRAME_STREAM_INF: Final = "#EXT-X-I-FRAME-STREAM-INF"
EXT_X_SESSION_DATA: Final = "#EXT-X-SESSION-DATA"
EXT_X_SESSION_KEY: Final = "#EXT-X-SESSION-KEY"

# §4.3.5 Tags that may appear in either kind of playlist.
EXT_X_INDEPENDENT_SEGMENTS: Final = "#EXT-X-INDEPENDENT-SEGMENTS"
EXT_X_START: Final = "#EXT-X-START"
EXT_X_DEFINE: Final = "#EXT-X-DEFINE"  # rfc8216bis §4.4.2.3: variable substitution

# Low-latency HLS (draft-pantos-hls-rfc8216bis §4.4).
EXT_X_PART: Final = "#EXT-X-PART"
EXT_X_PART_INF: Final = "#EXT-X-PART-INF"
EXT_X_PRELOAD_HINT: Final = "#EXT-X-PRELOAD-HINT"
EXT_X_RENDITION_REPORT: Final = "#EXT-X-RENDITION-REPORT"
EXT_X_SERVER_CONTROL: Final = "#EXT-X-SERVER-CONTROL"
EXT_X_SKIP: Final = "#EXT-X-SKIP"

# Ad-insertion cue dialects found in the wild (not in RFC 8216; SCTE-35 over
# EXT-X-DATERANGE is the standard one, §4.3.2.7.1).
EXT_X_CUE_OUT: Final = "#EXT-X-CUE-OUT"
EXT_X_CUE_OUT_CONT: Final = "#EXT-X-CUE-OUT-CONT"
EXT_X_CUE_IN: Final = "#EXT-X-CUE-IN"
EXT_OATCLS_SCTE35: Final = "#EXT-OATCLS-SCTE35"
EXT_X_SCTE35: Final = "#EXT-X-SCTE35"

CUE_TAGS: Final = frozenset(
    {EXT_X_CUE_OUT, EXT_X_CUE_OUT_CONT, EXT_X_CUE_IN, EXT_OATCLS_SCTE35, EXT_X_SCTE35}
)
"""Tags that mark ad opportunities without being EXT-X-DATERANGE."""

URI_ATTRIBUTE_TAGS: Final = frozenset(
    {
        EXT_X_KEY,  # §4.3.2.4 (absent when METHOD=NONE)
        EXT_X_MAP,  # §4.3.2.5
        EXT_X_MEDIA,  # §4.3.4.1 (absent for CLOSED-CAPTIONS)
        EXT_X_I_FRAME_STREAM_INF,  # §4.3.4.3
        EXT_X_SESSION_DATA,  # §4.3.4.4 (optional, a JSON document)
        EXT_X_SESSION_KEY,  # §4.3.4.5
        EXT_X_PART,  # rfc8216bis §4.4.4.9
        EXT_X_PRELOAD_HINT,  # rfc8216bis §4.4.5.3
        EXT_X_RENDITION_REPORT,  # rfc8216bis §4.4.5.4
    }
)
"""Tags whose attribute list may carry a ``URI`` that a player will fetch."""

URI_LINE_TAGS: Final = frozenset({EXTINF, EXT_X_STREAM_INF})
"""Tags that apply to the next URI line (§4.3.2.1, §4.3.4.2)."""

MASTER_ONLY_TAGS: Final = frozenset({EXT_X_STREAM_INF, EXT_X_I_FRAME_STREAM_INF, EXT_X_MEDIA})
"""Tags that make a playlist a master playlist (§4.3.4); refused in a media playlist."""

MEDIA_ONLY_TAGS: Final = frozenset({EXTINF, EXT_X_TARGETDURATION})
"""Tags that make a playlist a media playlist (§4.3.3); refused in a master playlist."""

KEY_METHOD_NONE: Final = "NONE"
"""EXT-X-KEY METHOD for unencrypted segments; such a tag has no URI (§4.3.2.4)."""


def tag_name(line: str) -> str:
    """Return the tag name of a tag line (``#EXTINF:4,`` -> ``#EXTINF``)."""
    colon = line.find(":")
    return line if colon < 0 else line[:colon]


def tag_value(line: str) -> str:
    """Return what follows the first ``:`` of a tag line, or ``""`` when there is none."""
    colon = line.find(":")
    return "" if colon < 0 else line[colon + 1 :]

"""Writing master playlists (RFC 8216 §4.3.4) from typed input.

The rest of the core reads and rewrites playlists someone else wrote; ingest
writes its own master playlist for each ladder it packages. `write_master_playlist`
takes the variant streams (§4.3.4.2) and audio renditions (§4.3.4.1) as typed
values, checks the rules a writer must keep, and returns the text, so the
output always parses (`parse_master_playlist`) and every tag name comes from
`hls.tags`. The order of variants is the caller's: players start with the
first one listed (see `hls.rewrite`), so which goes first is a product choice.
"""

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from . import tags
from .attributes import MAX_DECIMAL_INTEGER, Resolution

# §4.2: a quoted-string cannot hold a double quote, CR or LF.
_QUOTABLE = re.compile(r'[^"\r\n]*')
_AUDIO = "AUDIO"


@dataclass(frozen=True, slots=True, kw_only=True)
class VariantStream:
    """One variant stream: an EXT-X-STREAM-INF tag and its URI line (§4.3.4.2).

    ``bandwidth`` is the peak segment bit rate and ``average_bandwidth`` the
    mean over the presentation, both in bits per second. ``frame_rate`` is
    written rounded to three decimal places, as §4.3.4.2 asks. ``audio`` names
    the GROUP-ID of the `AudioRendition`s that play with this variant.
    """

    uri: str
    bandwidth: int
    average_bandwidth: int | None = None
    resolution: Resolution | None = None
    frame_rate: float | None = None
    codecs: str | None = None
    audio: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioRendition:
    """An alternative audio rendition, EXT-X-MEDIA with TYPE=AUDIO (§4.3.4.1)."""

    group_id: str
    name: str
    uri: str | None = None
    language: str | None = None
    default: bool = False
    autoselect: bool = False
    channels: str | None = None


def _quoted(name: str, value: str) -> str:
    if _QUOTABLE.fullmatch(value) is None:
        raise ValueError(f"{name} cannot be a quoted-string (§4.2): {value!r}")
    return f'{name}="{value}"'


def _integer(name: str, value: int) -> str:
    if not 0 <= value <= MAX_DECIMAL_INTEGER:
        raise ValueError(f"{name} must be a decimal-integer (§4.2): {value!r}")
    return f"{name}={value}"


def _yes_no(name: str, value: bool) -> str:
    return f"{name}={'YES' if value else 'NO'}"


def _check_uri_line(uri: str) -> str:
    # §4.1: a line that starts with "#" is a tag or comment, and one line is one URI.
    if not uri or uri != uri.strip() or uri.startswith("#") or "\n" in uri or "\r" in uri:
        raise ValueError(f"not usable as a URI line: {uri!r}")
    return uri


def _media_line(rendition: AudioRendition) -> str:
    """The EXT-X-MEDIA line of an audio rendition (§4.3.4.1)."""
    if rendition.default and not rendition.autoselect:
        raise ValueError(f"{rendition.name!r}: DEFAULT=YES needs AUTOSELECT=YES (§4.3.4.1)")
    attributes = [
        f"TYPE={_AUDIO}",
        _quoted("GROUP-ID", rendition.group_id),
        _quoted("NAME", rendition.name),
    ]
    if rendition.language is not None:
        attributes.append(_quoted("LANGUAGE", rendition.language))
    attributes += [
        _yes_no("DEFAULT", rendition.default),
        _yes_no("AUTOSELECT", rendition.autoselect),
    ]
    if rendition.channels is not None:
        attributes.append(_quoted("CHANNELS", rendition.channels))
    if rendition.uri is not None:
        attributes.append(_quoted("URI", _check_uri_line(rendition.uri)))
    return f"{tags.EXT_X_MEDIA}:{','.join(attributes)}"


def _stream_inf_line(variant: VariantStream) -> str:
    """The EXT-X-STREAM-INF line of a variant (§4.3.4.2)."""
    attributes = [_integer("BANDWIDTH", variant.bandwidth)]
    if variant.average_bandwidth is not None:
        attributes.append(_integer("AVERAGE-BANDWIDTH", variant.average_bandwidth))
    if variant.resolution is not None:
        width, height = variant.resolution
        if width <= 0 or height <= 0:
            raise ValueError(f"RESOLUTION must be positive: {variant.resolution}")
        attributes.append(f"RESOLUTION={variant.resolution}")
    if variant.frame_rate is not None:
        if not (math.isfinite(variant.frame_rate) and variant.frame_rate > 0):
            raise ValueError(f"FRAME-RATE must be positive: {variant.frame_rate!r}")
        attributes.append(f"FRAME-RATE={variant.frame_rate:.3f}")
    if variant.codecs is not None:
        attributes.append(_quoted("CODECS", variant.codecs))
    if variant.audio is not None:
        attributes.append(_quoted(_AUDIO, variant.audio))
    return f"{tags.EXT_X_STREAM_INF}:{','.join(attributes)}"


def _check_groups(variants: Sequence[VariantStream], audio: Sequence[AudioRendition]) -> None:
    """§4.3.4.1.1 and §4.3.4.2: groups are consistent and every AUDIO names one."""
    names: dict[str, set[str]] = {}
    defaults: set[str] = set()
    for rendition in audio:
        group = names.setdefault(rendition.group_id, set())
        if rendition.name in group:
            raise ValueError(f"two renditions named {rendition.name!r} in {rendition.group_id!r}")
        group.add(rendition.name)
        if rendition.default:
            if rendition.group_id in defaults:
                raise ValueError(f"more than one DEFAULT=YES in {rendition.group_id!r}")
            defaults.add(rendition.group_id)
    for variant in variants:
        if variant.audio is not None and variant.audio not in names:
            raise ValueError(f"{variant.uri!r}: no audio group {variant.audio!r}")


def write_master_playlist(
    variants: Sequence[VariantStream],
    *,
    audio: Sequence[AudioRendition] = (),
    version: int | None = None,
    independent_segments: bool = False,
) -> str:
    """The text of a master playlist, LF line endings, ending with a newline.

    ``#EXTM3U`` (§4.3.1.1), then EXT-X-VERSION when ``version`` is given
    (§4.3.1.2), EXT-X-INDEPENDENT-SEGMENTS when asked (§4.3.5.1), the audio
    renditions, and each variant's EXT-X-STREAM-INF followed by its URI, in the
    order given. Attributes are written in a fixed order. Raises `ValueError`
    for input that would make the playlist invalid: no variant, a value that
    cannot be quoted, a DEFAULT rendition without AUTOSELECT, a group with two
    renditions of one name or two defaults, an AUDIO group that is not there.
    """
    if not variants:
        raise ValueError("a master playlist needs at least one variant stream")
    if version is not None and version < 1:
        raise ValueError(f"EXT-X-VERSION must be at least 1: {version}")
    _check_groups(variants, audio)
    lines = [tags.EXTM3U]
    if version is not None:
        lines.append(f"{tags.EXT_X_VERSION}:{version}")
    if independent_segments:
        lines.append(tags.EXT_X_INDEPENDENT_SEGMENTS)
    lines += [_media_line(rendition) for rendition in audio]
    for variant in variants:
        lines += [_stream_inf_line(variant), _check_uri_line(variant.uri)]
    return "\n".join(lines) + "\n"

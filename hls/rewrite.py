"""Compile origin playlists into `PlaylistTemplate`s with one token slot per URI.

Every URI a player will fetch (segments, EXT-X-MAP, EXT-X-KEY, EXT-X-MEDIA,
variant and I-frame playlists, LL-HLS parts and hints, session keys) is resolved
against the playlist's URL path (RFC 3986 §5.2), checked to stay under the
film's root, and given a ``t=`` query parameter whose value is a slot. Every
other line, known or not, is copied byte for byte with its own line terminator.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from . import tags
from .attributes import AttributeList, parse_decimal_integer, parse_tag_attributes
from .errors import ForeignUriError, PlaylistError, excerpt
from .lines import Line, LineKind, split_playlist
from .model import ByteRange
from .parser import (
    parse_daterange,
    parse_extinf,
    parse_init_section,
    parse_key,
    parse_master_playlist,
    parse_start,
)
from .template import Piece, PlaylistTemplate, Slot, StartLine, assemble_template

TOKEN_PARAMETER = "t"  # noqa: S105 - the name of a query parameter, not a secret
"""Query parameter that carries the per-URI token."""

TOKEN_QUERY = f"?{TOKEN_PARAMETER}="
"""What a URI without a query of its own gets before its token slot."""

# Characters that are not allowed in a URI path (RFC 3986 §3.3: pchar and "/"), or
# that a server might decode into a path separator or dot segment after our check.
# A player percent-encodes the others (space, '"', "<", "{", non-ASCII...) before it
# requests the path, so a token signed for the path as written would never match.
_UNSAFE = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/%]|%(?:2[eEfF]|5[cC]|00)")
# A bare file name (no "/", ":", "%", query or fragment, not "." or ".."): it
# resolves to the playlist's own directory without further checks.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9._~-]*")

# Tags whose URI must be present (RFC 8216 §4.3.2.5, §4.3.4.3; rfc8216bis §4.4).
_URI_REQUIRED = frozenset(
    {
        tags.EXT_X_MAP,
        tags.EXT_X_I_FRAME_STREAM_INF,
        tags.EXT_X_PART,
        tags.EXT_X_PRELOAD_HINT,
        tags.EXT_X_RENDITION_REPORT,
    }
)
_KEY_TAGS = frozenset({tags.EXT_X_KEY, tags.EXT_X_SESSION_KEY})
_INTEGER_TAGS = frozenset(
    {
        tags.EXT_X_TARGETDURATION,
        tags.EXT_X_MEDIA_SEQUENCE,
        tags.EXT_X_DISCONTINUITY_SEQUENCE,
        tags.EXT_X_VERSION,
    }
)
# An attribute naming something a player fetches, in a tag this module does not rewrite:
# SERVER-URI (EXT-X-CONTENT-STEERING), X-ASSET-URI and X-ASSET-LIST (interstitials in
# EXT-X-DATERANGE), or a URI in a tag it does not know. Read as loosely as players read
# attribute lists (any case, spaces around "="), since a player is what must not see it.
_OTHER_URI_ATTRIBUTE = re.compile(
    r"[:,][ \t]*(?:[A-Z0-9-]*-)?(?:URI|X-ASSET-LIST)[ \t]*=", re.IGNORECASE
)


def _check_other_tag(name: str, content: str) -> None:
    """Refuse a tag copied verbatim that would have a player fetch an unsigned URI.

    EXT-X-DEFINE (rfc8216bis §4.4.3.8) declares variables that players substitute into
    URIs after this module has checked them, so a checked ``{$v}/seg.ts`` could become
    a URL on another host: playlists that use it are refused.
    """
    if name == tags.EXT_X_DEFINE:
        raise PlaylistError(f"{name} is not supported: variables would change checked URIs")
    if name != tags.EXTINF and _OTHER_URI_ATTRIBUTE.search(content) is not None:
        raise PlaylistError(f"{name} carries a URI that cannot be signed")


def _split_reference(uri: str) -> tuple[str, str | None, str | None]:
    """Split a URI reference into path, query and fragment (RFC 3986 §3)."""
    rest, hash_mark, fragment = uri.partition("#")
    path, question_mark, query = rest.partition("?")
    return path, query if question_mark else None, fragment if hash_mark else None


def _remove_dot_segments(path: str) -> str:
    """Remove ``.`` and ``..`` segments from an absolute path (RFC 3986 §5.2.4).

    As in the RFC, ``..`` above the top is dropped rather than kept.
    """
    output: list[str] = []
    segments = path.split("/")[1:]
    for segment in segments:
        if segment == "..":
            if output:
                output.pop()
        elif segment != ".":
            output.append(segment)
    if segments[-1] in (".", ".."):
        output.append("")  # "a/b/.." names the directory "a/"
    return "/" + "/".join(output)


def _has_dot_segments(path: str) -> bool:
    return "." in path and any(segment in (".", "..") for segment in path.split("/"))


def _check_base(playlist_path: str, root: str) -> None:
    """Check the arguments every resolution relies on; a failure is a caller bug."""
    if not (root.startswith("/") and root.endswith("/")):
        raise ValueError(f"root must be a directory path ending in '/': {root!r}")
    if not playlist_path.startswith(root) or len(playlist_path) == len(root):
        raise ValueError(f"playlist path must be a file under {root!r}: {playlist_path!r}")
    if (
        _has_dot_segments(playlist_path)
        or _UNSAFE.search(playlist_path)
        or ("?" in playlist_path or "#" in playlist_path)
    ):
        raise ValueError(f"playlist path must be a normalised path: {playlist_path!r}")


def _resolve(uri: str, playlist_path: str, root: str) -> str:
    """`resolve_uri` without re-checking ``playlist_path`` and ``root``."""
    path, _, _ = _split_reference(uri)
    if path.startswith("//"):
        raise ForeignUriError(f"URI names another host: {excerpt(uri)}")
    # RFC 3986 §3.1 and §4.2: a relative reference cannot have ":" in its first
    # segment, so one there means a scheme (http:, skd:, data:, c:...).
    if ":" in path.partition("/")[0]:
        raise ForeignUriError(f"URI has a scheme: {excerpt(uri)}")
    if _UNSAFE.search(path):
        raise ForeignUriError(f"URI has unsafe characters: {excerpt(uri)}")
    if not path:
        target = playlist_path  # §5.2.2: an empty path refers to the base itself
    elif path.startswith("/"):
        target = _remove_dot_segments(path)
    else:
        # §5.2.3: merge with the base path up to and including its last "/".
        target = _remove_dot_segments(playlist_path[: playlist_path.rfind("/") + 1] + path)
    if len(target) <= len(root) or not target.startswith(root):
        raise ForeignUriError(f"URI resolves outside {root}: {excerpt(uri)}")
    return target


def resolve_uri(uri: str, playlist_path: str, root: str) -> str:
    """Resolve a URI from a playlist to an absolute URL path under ``root``.

    ``playlist_path`` is the normalised URL path the playlist is served at (the
    base URI, RFC 8216 §4.1 and RFC 3986 §5.1); ``root`` is a directory path
    ending in ``/`` that every resolved path must lie strictly under, e.g.
    ``/hls/abc/``. The result has dot segments removed and no query or fragment;
    percent-encoding is left as written.

    Raises `ForeignUriError` for a URI with a scheme or authority, one that
    resolves outside ``root``, or one with characters that could change meaning
    once decoded (``%2e``, ``%2f``, backslash, whitespace, controls); raises
    `ValueError` when ``playlist_path`` or ``root`` are themselves unusable.
    """
    _check_base(playlist_path, root)
    return _resolve(uri, playlist_path, root)


class _UriRewriter:
    """Turns URIs into pieces ``[prefix…?t=, slot, #fragment…]``, checked once each."""

    __slots__ = ("_base_dir", "_cache", "playlist_path", "root")

    def __init__(self, playlist_path: str, root: str) -> None:
        _check_base(playlist_path, root)
        self.playlist_path = playlist_path
        self.root = root
        self._base_dir = playlist_path[: playlist_path.rfind("/") + 1]
        self._cache: dict[str, tuple[str, str, str]] = {}

    def rewrite(self, uri: str) -> tuple[str, str, str]:
        """Return ``(text before token, resolved path, text after token)`` for ``uri``."""
        cached = self._cache.get(uri)
        if cached is not None:
            return cached
        if _PLAIN_NAME.fullmatch(uri):
            # The common case, "seg_00042.ts": a file next to the playlist.
            result = self._cache[uri] = (uri + TOKEN_QUERY, self._base_dir + uri, "")
            return result
        if not uri:
            raise PlaylistError("empty URI")
        resolved = _resolve(uri, self.playlist_path, self.root)
        path, query, fragment = _split_reference(uri)
        # Keep the author's relative text unless it has dot segments to hide.
        text = resolved if _has_dot_segments(path) else path
        if query:
            if any(p.partition("=")[0] == TOKEN_PARAMETER for p in query.split("&")):
                raise PlaylistError(
                    f"URI already has a {TOKEN_PARAMETER}= parameter: {excerpt(uri)}"
                )
            before = f"{text}?{query}&{TOKEN_PARAMETER}="
        else:
            before = text + TOKEN_QUERY
        after = "" if fragment is None else "#" + fragment
        result = self._cache[uri] = (before, resolved, after)
        return result

    def uri_line(self, line: Line) -> tuple[list[Piece], str]:
        """Pieces for a URI line (§4.1), keeping any surrounding whitespace."""
        text = line.text
        uri = text.strip()
        before, path, after = self.rewrite(uri)
        if len(uri) == len(text):
            return [before, Slot(path), after + line.eol], path
        start = len(text) - len(text.lstrip())
        pieces: list[Piece] = [
            text[:start] + before,
            Slot(path),
            after + text[start + len(uri) :] + line.eol,
        ]
        return pieces, path

    def attribute_uri(
        self, line: Line, name: str, attributes: AttributeList
    ) -> tuple[list[Piece], str | None]:
        """Pieces for a tag with a ``URI`` attribute, spliced into the line in place."""
        text = line.text
        item = attributes.get("URI")
        if name in _KEY_TAGS:
            method = attributes.enum("METHOD")
            if method is None:
                raise PlaylistError(f"{name} without METHOD")
            if method == tags.KEY_METHOD_NONE:
                return [text + line.eol], None  # nothing to fetch (§4.3.2.4)
            if item is None:
                raise PlaylistError(f"{name} METHOD={method} without URI")
        if item is None:
            if name in _URI_REQUIRED:
                raise PlaylistError(f"{name} without URI")
            return [text + line.eol], None
        if not item.quoted:
            raise PlaylistError(f"{name} URI must be a quoted-string")  # §4.2
        before, path, after = self.rewrite(item.value)
        pieces: list[Piece] = [
            text[: item.start] + before,
            Slot(path),
            after + text[item.end :] + line.eol,
        ]
        return pieces, path


def compile_media_playlist(text: str, *, playlist_path: str, root: str) -> PlaylistTemplate:
    """Compile a media playlist (RFC 8216 §4.3.3) into a template.

    Raises `PlaylistError` if it is malformed and `ForeignUriError` if any URI
    a player would fetch is not under ``root``.
    """
    lines, pieces, _ = media_pieces(text, playlist_path, root)
    return assemble_template(pieces, lines[0])


class MediaPieces(NamedTuple):
    """A checked, rewritten media playlist: ``pieces[starts[i]:starts[i + 1]]``
    render ``lines[i]`` (and ``starts`` ends with ``len(pieces)``)."""

    lines: list[Line]
    pieces: list[Piece]
    starts: list[int]


def media_pieces(text: str, playlist_path: str, root: str) -> MediaPieces:
    """Check and rewrite a media playlist into pieces, remembering each line's own.

    Shared with the ad stitcher (`hls.ads.stitch`), which splices ad pods
    between lines and so produces content URIs exactly as this module does.
    """
    lines = split_playlist(text)
    rewriter = _UriRewriter(playlist_path, root)
    pieces: list[Piece] = [lines[0].text + lines[0].eol]
    starts = [0]
    add = pieces.append
    mark = starts.append
    # What parse_media_playlist refuses is refused here too (its checks, made only on
    # the lines where they apply), so a compiled playlist always re-parses.
    extinf = False  # an EXTINF waits for its URI line
    byterange = False  # so does an EXT-X-BYTERANGE
    has_target_duration = False
    for line in lines[1:]:
        mark(len(pieces))
        try:
            kind = line.kind
            if kind is LineKind.URI:
                if not extinf:
                    raise PlaylistError("URI line without EXTINF")  # §4.3.2.1: REQUIRED
                extinf = byterange = False
                pieces.extend(rewriter.uri_line(line)[0])
                continue
            if kind is not LineKind.TAG:
                add(line.text + line.eol)
                continue
            content = line.text
            name = tags.tag_name(content)
            if name == tags.EXTINF:
                if extinf:
                    raise PlaylistError("two EXTINF tags for one segment")
                parse_extinf(tags.tag_value(content))
                extinf = True
            elif name == tags.EXT_X_BYTERANGE:
                ByteRange.parse(tags.tag_value(content).strip())
                byterange = True
            elif name in tags.URI_ATTRIBUTE_TAGS:
                if name in tags.MASTER_ONLY_TAGS:
                    raise PlaylistError(f"{name} in a media playlist")
                attributes = parse_tag_attributes(content)
                pieces.extend(rewriter.attribute_uri(line, name, attributes)[0])
                if name == tags.EXT_X_KEY:
                    parse_key(attributes)
                elif name == tags.EXT_X_MAP:
                    parse_init_section(attributes)
                continue
            elif name == tags.EXT_X_DATERANGE:
                _check_other_tag(name, content)
                parse_daterange(content)
            elif name in _INTEGER_TAGS:
                parse_decimal_integer(tags.tag_value(content).strip())
                has_target_duration = has_target_duration or name == tags.EXT_X_TARGETDURATION
            elif name == tags.EXT_X_START:
                parse_start(content)
                add(StartLine(content + line.eol))
                continue
            elif name in tags.MASTER_ONLY_TAGS:
                raise PlaylistError(f"{name} in a media playlist")
            else:
                _check_other_tag(name, content)
            add(content + line.eol)
        except PlaylistError as err:
            raise _at_line(err, line) from err
    if extinf or byterange:
        raise PlaylistError("EXTINF or EXT-X-BYTERANGE without a URI line at end of playlist")
    if not has_target_duration:
        raise PlaylistError("missing EXT-X-TARGETDURATION")  # §4.3.3.1: REQUIRED
    mark(len(pieces))
    return MediaPieces(lines, pieces, starts)


def _at_line(err: PlaylistError, line: Line) -> PlaylistError:
    """Attach a line number to an error raised without one."""
    if err.line is not None:
        return err
    return type(err)(err.message, line=line.number)


class VariantRef(NamedTuple):
    """A variant stream kept in a filtered master playlist."""

    path: str  # resolved URL path of its media playlist
    bandwidth: int
    height: int | None  # None for audio-only variants (no RESOLUTION)


@dataclass(frozen=True, slots=True, kw_only=True)
class MasterTemplate:
    """A master playlist compiled for one tier, with what it lets a session fetch.

    ``variants`` lists the kept EXT-X-STREAM-INF variants in output order; it is
    empty when the tier allows none (the gateway answers ``not_entitled``).
    ``playlist_paths`` are all media playlists the output references (variants,
    I-frame playlists, EXT-X-MEDIA renditions); ``renditions`` are their
    directory names under the root (``720p``, ``audio``).
    """

    template: PlaylistTemplate
    variants: tuple[VariantRef, ...]
    playlist_paths: frozenset[str]
    renditions: frozenset[str]

    @property
    def paths(self) -> tuple[str, ...]:
        """The paths to compute tokens for, in slot order."""
        return self.template.paths

    def render(self, tokens: Sequence[str], *, start_offset: float | None = None) -> str:
        """Render the filtered master playlist; see `PlaylistTemplate.render`."""
        return self.template.render(tokens, start_offset=start_offset)


@dataclass(slots=True)
class _Block:
    """Consecutive pieces that are kept, dropped or moved together."""

    pieces: list[Piece] = field(default_factory=list)
    kind: Literal["variant", "iframe", "other"] = "other"
    height: int | None = None
    bandwidth: int = 0
    playlist_path: str | None = None


def _height(attributes: AttributeList) -> int | None:
    resolution = attributes.resolution("RESOLUTION")
    return None if resolution is None else resolution.height


def _bandwidth(name: str, attributes: AttributeList) -> int:
    bandwidth = attributes.integer("BANDWIDTH")
    if bandwidth is None:
        raise PlaylistError(f"{name} without BANDWIDTH")  # §4.3.4.2: REQUIRED
    return bandwidth


def _split_master(lines: list[Line], rewriter: _UriRewriter) -> list[_Block]:
    """Group master playlist lines into blocks: one per variant, I-frame or other line."""
    blocks: list[_Block] = [_Block(pieces=[lines[0].text + lines[0].eol])]
    variant: _Block | None = None  # an EXT-X-STREAM-INF waiting for its URI line
    for line in lines[1:]:
        try:
            kind = line.kind
            content = line.text
            if kind is LineKind.URI:
                if variant is None:
                    raise PlaylistError("URI line without EXT-X-STREAM-INF")  # §4.3.4.2
                pieces, variant.playlist_path = rewriter.uri_line(line)
                variant.pieces.extend(pieces)
                variant = None
                continue
            block = variant if variant is not None else _Block()
            if variant is None:
                blocks.append(block)
            name = tags.tag_name(content) if kind is LineKind.TAG else ""
            if name == tags.EXT_X_STREAM_INF:
                if variant is not None:
                    raise PlaylistError("EXT-X-STREAM-INF without a URI line")
                attributes = parse_tag_attributes(content)
                block.kind = "variant"
                block.bandwidth = _bandwidth(name, attributes)
                block.height = _height(attributes)
                block.pieces.append(content + line.eol)
                variant = block
            elif name in tags.URI_ATTRIBUTE_TAGS:
                attributes = parse_tag_attributes(content)
                pieces, path = rewriter.attribute_uri(line, name, attributes)
                block.pieces.extend(pieces)
                if name == tags.EXT_X_I_FRAME_STREAM_INF:
                    block.kind = "iframe"
                    block.bandwidth = _bandwidth(name, attributes)
                    block.height = _height(attributes)
                if name in (tags.EXT_X_I_FRAME_STREAM_INF, tags.EXT_X_MEDIA):
                    block.playlist_path = path
            elif name == tags.EXT_X_START:
                parse_start(content)
                block.pieces.append(StartLine(content + line.eol))
            elif name in tags.MEDIA_ONLY_TAGS:
                raise PlaylistError(f"{name} in a master playlist")
            else:
                if kind is LineKind.TAG:
                    _check_other_tag(name, content)
                block.pieces.append(content + line.eol)
        except PlaylistError as err:
            raise _at_line(err, line) from err
    if variant is not None:
        raise PlaylistError("EXT-X-STREAM-INF without a URI line at end of playlist")
    return blocks


def _preferred_first(blocks: list[_Block], preferred_height: int | None) -> list[_Block]:
    """Move the variants of the preferred height ahead of the other variants.

    Players start with the first variant listed (RFC 8216 §6.3.1 leaves the
    choice to the client; in practice it is the first), so listing the
    data-saver rung first makes playback start there. Without an exact match,
    the highest height at or below the preference is used.
    """
    if preferred_height is None:
        return blocks
    heights = {b.height for b in blocks if b.kind == "variant" and b.height is not None}
    eligible = [height for height in heights if height <= preferred_height]
    if not eligible:
        return blocks
    chosen = max(eligible)
    first = next(i for i, b in enumerate(blocks) if b.kind == "variant")
    moved = [b for b in blocks if b.kind == "variant" and b.height == chosen]
    rest = [b for b in blocks[first:] if not (b.kind == "variant" and b.height == chosen)]
    return blocks[:first] + moved + rest


def compile_master_playlist(
    text: str,
    *,
    playlist_path: str,
    root: str,
    max_height: int | None,
    preferred_height: int | None,
) -> MasterTemplate:
    """Compile a master playlist (RFC 8216 §4.3.4) filtered for a subscriber's tier.

    Variants and I-frame playlists taller than ``max_height`` are dropped
    (None keeps all; variants without RESOLUTION, i.e. audio-only, are always
    kept), and the ``preferred_height`` variants are listed first. Raises
    `PlaylistError` if malformed and `ForeignUriError` for a URI outside ``root``.
    """
    lines = split_playlist(text)
    if not lines[-1].eol:
        # Blocks are filtered and moved: the last line may not stay last, so it is ended
        # like the first (else the next block's first line would be glued onto it).
        lines[-1] = lines[-1]._replace(eol=lines[0].eol or "\n")
    rewriter = _UriRewriter(playlist_path, root)
    blocks = _split_master(lines, rewriter)
    # Master playlists are a few lines: all of the parser's checks cost next to nothing,
    # and refuse what it refuses, so a compiled master playlist always re-parses.
    parse_master_playlist(text)
    blocks = [
        block
        for block in blocks
        if max_height is None or block.height is None or block.height <= max_height
    ]
    blocks = _preferred_first(blocks, preferred_height)
    playlist_paths = frozenset(b.playlist_path for b in blocks if b.playlist_path is not None)
    renditions = frozenset(
        relative.partition("/")[0]
        for relative in (path[len(root) :] for path in playlist_paths)
        if "/" in relative
    )
    return MasterTemplate(
        template=assemble_template((piece for block in blocks for piece in block.pieces), lines[0]),
        variants=tuple(
            VariantRef(b.playlist_path, b.bandwidth, b.height)
            for b in blocks
            if b.kind == "variant" and b.playlist_path is not None
        ),
        playlist_paths=playlist_paths,
        renditions=renditions,
    )

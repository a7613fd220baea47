"""A compiled playlist: literal text chunks with one token slot per fetchable URI.

Compiling (parsing, resolving, checking every URI) happens once per origin
playlist and is cached; serving a request is then `PlaylistTemplate.render`,
which interleaves the per-URI tokens with the chunks in a single ``"".join``.

Compilers (`hls.rewrite` for origin playlists, `hls.ads` for stitched ones)
build a list of `Piece`s, literal text, token `Slot`s and the `StartLine`, and
hand it to `assemble_template`; both kinds of playlist are assembled by this
one function, so their templates render alike.
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from .errors import PlaylistError
from .lines import Line
from .tags import EXT_X_START


class StartSlot(NamedTuple):
    """Where `PlaylistTemplate.render` puts an EXT-X-START line in ``chunks[0]``.

    ``insert_at`` is just after the ``#EXTM3U`` line; ``old_start:old_end`` is the
    source's own EXT-X-START line (with its terminator), empty when there is none,
    and is cut out when a new start offset is rendered. ``eol`` terminates the
    inserted line, matching the ``#EXTM3U`` line (LF or CRLF).
    """

    insert_at: int
    old_start: int
    old_end: int
    eol: str


_DEFAULT_START = StartSlot(0, 0, 0, "\n")


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaylistTemplate:
    """Playlist text split around its token slots: ``len(chunks) == len(paths) + 1``.

    ``paths[i]`` is the absolute URL path whose token goes between ``chunks[i]``
    and ``chunks[i + 1]``; the same path may occur several times (byte ranges).
    """

    chunks: tuple[str, ...]
    paths: tuple[str, ...]
    start: StartSlot = _DEFAULT_START

    def __post_init__(self) -> None:
        if len(self.chunks) != len(self.paths) + 1:
            raise ValueError("a template needs exactly one more chunk than paths")
        head = self.chunks[0]
        insert_at, old_start, old_end, _ = self.start
        if not 0 <= insert_at <= old_start <= old_end <= len(head):
            raise ValueError("start slot outside the first chunk")

    def render(self, tokens: Sequence[str], *, start_offset: float | None = None) -> str:
        """Return the playlist with ``tokens[i]`` in the slot for ``paths[i]``.

        Tokens are inserted as given, so they must already be URL-safe. With
        ``start_offset`` (seconds; negative counts from the end, RFC 8216 §4.3.5.2)
        the output starts playback there via EXT-X-START, replacing the source's.
        """
        chunks = self.chunks
        if len(tokens) != len(chunks) - 1:
            raise ValueError(f"expected {len(chunks) - 1} tokens, got {len(tokens)}")
        parts: list[str] = [""] * (2 * len(chunks) - 1)
        parts[::2] = chunks
        parts[1::2] = tokens
        if start_offset is not None:
            parts[0] = self._with_start(start_offset)
        return "".join(parts)

    def _with_start(self, offset: float) -> str:
        """Return ``chunks[0]`` carrying ``#EXT-X-START:TIME-OFFSET=…,PRECISE=YES``."""
        if not math.isfinite(offset):
            raise ValueError("start offset must be a finite number of seconds")
        head = self.chunks[0]
        insert_at, old_start, old_end, eol = self.start
        line = f"{EXT_X_START}:TIME-OFFSET={offset:.3f},PRECISE=YES"
        if insert_at and head[insert_at - 1] != "\n":
            # The #EXTM3U line was the whole playlist, without a terminator.
            line = eol + line
        else:
            line += eol
        return head[:insert_at] + line + head[insert_at:old_start] + head[old_end:]


class Slot(NamedTuple):
    """A token slot for ``path`` in a list of pieces."""

    path: str


class StartLine(NamedTuple):
    """The source's EXT-X-START line (with terminator), tracked so render can replace it."""

    text: str


Piece = str | Slot | StartLine
"""What a compiler emits: literal text, a token slot, or the EXT-X-START line."""


def assemble_template(pieces: Iterable[Piece], first: Line) -> PlaylistTemplate:
    """Merge pieces into chunks and paths, and note where EXT-X-START goes.

    ``first`` is the ``#EXTM3U`` line the pieces start with: a rendered
    EXT-X-START goes right after it and ends like it (LF or CRLF).
    At most one EXT-X-START is allowed (RFC 8216 §4.3.5.2); one written after
    the first URI is moved up into ``chunks[0]`` so render can find it.
    """
    chunks: list[str] = []
    paths: list[str] = []
    buffer: list[str] = []
    head_size = 0
    start_span: tuple[int, int] | None = None
    late_start: str | None = None
    for piece in pieces:
        if piece.__class__ is str and chunks:  # the hot case, after the header
            buffer.append(piece)
            continue
        if isinstance(piece, Slot):
            chunks.append("".join(buffer))
            buffer = []
            paths.append(piece.path)
            continue
        if isinstance(piece, StartLine):
            if start_span is not None or late_start is not None:
                raise PlaylistError("more than one EXT-X-START")  # §4.3.5.2
            if chunks:
                late_start = piece.text
                continue
            start_span = (head_size, head_size + len(piece.text))
        text = piece if isinstance(piece, str) else piece.text
        buffer.append(text)
        if not chunks:
            head_size += len(text)
    chunks.append("".join(buffer))
    insert_at = len(first.text) + len(first.eol)
    if late_start is not None:
        # An EXT-X-START after the first URI: move it up so render can find it.
        head = chunks[0]
        chunks[0] = head[:insert_at] + late_start + head[insert_at:]
        start_span = (insert_at, insert_at + len(late_start))
    old_start, old_end = start_span or (insert_at, insert_at)
    return PlaylistTemplate(
        chunks=tuple(chunks),
        paths=tuple(paths),
        start=StartSlot(insert_at, old_start, old_end, first.eol or "\n"),
    )

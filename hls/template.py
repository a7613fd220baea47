"""A compiled playlist: literal text chunks with one token slot per fetchable URI.

Compiling (parsing, resolving, checking every URI) happens once per origin
playlist and is cached; serving a request is then `PlaylistTemplate.render`,
which interleaves the per-URI tokens with the chunks in a single ``"".join``.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

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

"""Splitting playlist text into lines that remember their own terminators.

RFC 8216 §4.1: each line ends with LF or CR+LF. Keeping each line's terminator
(and the absence of one on the last line) lets a rewrite reproduce every line it
does not touch byte for byte.
"""

from enum import Enum
from typing import NamedTuple

from .errors import PlaylistError
from .tags import EXTM3U


class LineKind(Enum):
    """What a line is, by §4.1: blank, comment, tag (``#EXT``) or URI."""

    BLANK = "blank"
    COMMENT = "comment"
    TAG = "tag"
    URI = "uri"


class Line(NamedTuple):
    """One line: 1-based ``number``, ``text`` without terminator, and ``eol``."""

    number: int
    text: str
    eol: str  # "\n", "\r\n", or "" for a last line without terminator

    @property
    def kind(self) -> LineKind:
        """Classify the line (§4.1)."""
        text = self.text
        if text.startswith("#"):
            return LineKind.TAG if text.startswith("#EXT") else LineKind.COMMENT
        # A line of only whitespace is treated as blank, as players do.
        return LineKind.URI if text.strip() else LineKind.BLANK


def split_lines(text: str) -> list[Line]:
    """Split ``text`` on LF, recording CRLF or a missing final newline per line."""
    pieces = text.split("\n")
    last = pieces.pop()  # what follows the final LF: "" when the text ends with one
    lines = [
        Line(number, piece[:-1], "\r\n") if piece.endswith("\r") else Line(number, piece, "\n")
        for number, piece in enumerate(pieces, 1)
    ]
    if last:
        lines.append(Line(len(pieces) + 1, last, ""))
    return lines


def split_playlist(text: str) -> list[Line]:
    """Split playlist text and check that it starts with ``#EXTM3U`` (§4.3.1.1)."""
    lines = split_lines(text)
    if not lines or lines[0].text.rstrip(" \t") != EXTM3U:
        raise PlaylistError("playlist does not start with #EXTM3U", line=1)
    return lines

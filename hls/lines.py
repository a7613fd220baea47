"""Splitting playlist text into lines that remember their own terminators.

RFC 8216 §4.1: each line ends with LF or CR+LF. Keeping each line's terminator
(and the absence of one on the last line) lets a rewrite reproduce every line it
does not touch byte for byte.

Every other character that some reader takes for a line break is refused, so that
the lines the core checks are the lines every player sees: a lone CR (old Mac line
ends, and a line break to many parsers), the other C0 and C1 controls that §4.1
forbids (NEL, U+0085, is one; so are VT, FF and the file separators, which Python's
``str.splitlines`` splits on) and U+2028/U+2029, the Unicode line and paragraph
separators. Without this a tag copied verbatim could carry a second, unsigned URI
line past the rewriter. NUL and the other controls are refused with them (§4.1);
TAB stays, as whitespace.
"""

import re
from enum import Enum
from typing import NamedTuple

from .errors import PlaylistError
from .tags import EXTM3U
from .text import MAX_PLAYLIST_BYTES

# §4.1: no C0 (but TAB, LF, and CR before LF) or C1 control; no Unicode line or
# paragraph separator; no lone surrogate (not text: UTF-8 cannot carry one).
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]|\r(?!\n)")


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


def check_text(text: str) -> None:
    """Refuse text over `MAX_PLAYLIST_BYTES` characters, or with a character §4.1 forbids."""
    if len(text) > MAX_PLAYLIST_BYTES:
        raise PlaylistError(f"playlist of {len(text)} characters, over {MAX_PLAYLIST_BYTES}")
    found = _FORBIDDEN.search(text)
    if found is not None:
        line = text.count("\n", 0, found.start()) + 1
        code = ord(found.group()[0])
        raise PlaylistError(f"forbidden character U+{code:04X} (§4.1)", line=line)


def split_playlist(text: str) -> list[Line]:
    """Split playlist text and check that it starts with ``#EXTM3U`` (§4.3.1.1).

    Raises `PlaylistError` for text that `check_text` refuses.
    """
    check_text(text)
    lines = split_lines(text)
    if not lines or lines[0].text.rstrip(" \t") != EXTM3U:
        raise PlaylistError("playlist does not start with #EXTM3U", line=1)
    return lines

"""Edits to a compiled media playlist's pieces, made by line index and applied at once.

The stitcher never rewrites content text itself: it takes the pieces that
`hls.rewrite.media_pieces` produced for each line, and adds pieces before or
after a line or replaces a line's pieces. `Splice.join` then yields the
stitched pieces in order, every untouched line exactly as `compile_media_playlist`
writes it.
"""

from ..lines import Line
from ..template import Piece
from .content import KeyLine


class Splice:
    """Pieces to add to or change in the content's pieces, by line index."""

    def __init__(self, lines: list[Line], pieces: list[Piece], starts: list[int]) -> None:
        self.lines = lines
        self.pieces = pieces
        self.starts = starts
        self.eol = lines[0].eol or "\n"
        self.before: dict[int, list[Piece]] = {}
        self.after: dict[int, list[Piece]] = {}
        self.replaced: dict[int, list[Piece]] = {}

    def line_pieces(self, index: int) -> list[Piece]:
        """The pieces that render content line ``index`` as compiled."""
        return self.pieces[self.starts[index] : self.starts[index + 1]]

    def tag(self, text: str) -> str:
        """A line we write, ended like the playlist's first line (LF or CRLF, §4.1)."""
        return text + self.eol

    def key_line(self, key: KeyLine, media_sequence: int | None) -> list[Piece]:
        """The pieces of a content key line, with an explicit IV when asked (§5.2)."""
        pieces = self.line_pieces(key.line)
        if media_sequence is None or not key.implicit_iv:
            return pieces
        eol = self.lines[key.line].eol
        last = pieces[-1]
        assert isinstance(last, str)  # a line's pieces end with its text and terminator
        iv = f",IV=0x{media_sequence:032X}"
        return [*pieces[:-1], last[: len(last) - len(eol)] + iv + eol]

    def join(self, dropped: set[int]) -> list[Piece]:
        """All pieces in order with the edits applied, leaving out lines in ``dropped``."""
        out: list[Piece] = list(self.line_pieces(0))
        for index in range(1, len(self.lines)):
            out.extend(self.before.get(index, ()))
            if index in self.replaced:
                out.extend(self.replaced[index])
            elif index not in dropped:
                out.extend(self.line_pieces(index))
            out.extend(self.after.get(index, ()))
        out.extend(self.before.get(len(self.lines), ()))
        return out

"""Errors raised by the HLS core; the gateway maps them to HTTP responses."""

_EXCERPT_CHARS = 60


def excerpt(text: str) -> str:
    """``repr`` of ``text`` for an error message, cut to a few dozen characters.

    Messages quote the offending input, which can be a line of megabytes: they end up
    in logs, so they stay short whatever the input.
    """
    if len(text) <= _EXCERPT_CHARS:
        return repr(text)
    return f"{text[:_EXCERPT_CHARS]!r}… ({len(text)} characters)"


class PlaylistError(Exception):
    """The playlist text is not a playlist we can serve (malformed or unsupported)."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        self.message = message
        self.line = line
        super().__init__(message if line is None else f"line {line}: {message}")


class ForeignUriError(PlaylistError):
    """A URI points outside the film's root (scheme, host or path escape).

    Such playlists are refused when loaded: the gateway only ever fetches from its
    configured origin, and never hands a player a URL it cannot sign.
    """

"""Errors raised by the HLS core; the gateway maps them to HTTP responses."""


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

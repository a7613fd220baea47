"""Playlist bytes to text at the boundary where they arrive from an origin."""

from __future__ import annotations

from hls.errors import PlaylistError


def decode_playlist(data: bytes) -> str:
    """UTF-8 text of a playlist, or :class:`PlaylistError` for anything else.

    RFC 8216 §4.1: playlist files MUST be encoded in UTF-8. Invalid bytes mean a broken
    or foreign file at the origin: refused as unusable, never a crash.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PlaylistError(f"not UTF-8 (byte {err.start})") from None

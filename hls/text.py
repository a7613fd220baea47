"""Playlist bytes to text at the boundary where they arrive from an origin."""

from __future__ import annotations

from typing import Final

from hls.errors import PlaylistError

MAX_PLAYLIST_BYTES: Final = 4 * 1024 * 1024
"""The largest playlist the core accepts, 4 MiB: `decode_playlist` refuses more bytes
and every parser and compiler more characters (a 2-hour film's media playlist is about
50 KiB; 4 MiB is over 100 000 segments). The bound keeps the time and memory a playlist
costs proportional to something small, whatever an origin serves."""


def decode_playlist(data: bytes) -> str:
    """UTF-8 text of a playlist, or :class:`PlaylistError` for anything else.

    RFC 8216 §4.1: playlist files MUST be encoded in UTF-8. Invalid bytes mean a broken
    or foreign file at the origin: refused as unusable, never a crash. So is a playlist
    over `MAX_PLAYLIST_BYTES`.
    """
    if len(data) > MAX_PLAYLIST_BYTES:
        raise PlaylistError(f"playlist of {len(data)} bytes, over {MAX_PLAYLIST_BYTES}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PlaylistError(f"not UTF-8 (byte {err.start})") from None

"""Origin playlists compiled once into templates, per film version (no HTTP here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.repository import Movie
from hls import (
    MasterTemplate,
    MediaPlaylist,
    PlaylistTemplate,
    compile_master_playlist,
    compile_media_playlist,
    parse_master_playlist,
    parse_media_playlist,
    resolve_uri,
)
from hls.text import MAX_PLAYLIST_BYTES, decode_playlist
from origin import OriginStore, object_key


def hls_root(movie_id: str) -> str:
    """The URL path under which a film's HLS files are served."""
    return f"/hls/{movie_id}/"


def origin_key_for(movie_id: str, *parts: str) -> str:
    """The origin key for a film file; raises InvalidObjectKey for a bad component."""
    return object_key("videos", movie_id, *parts)


@dataclass(frozen=True, slots=True)
class MediaEntry:
    """A compiled media playlist, its source and parse, and each segment's start time
    (for progress and ad confirmation)."""

    template: PlaylistTemplate
    starts: dict[str, float]
    duration: float
    text: str
    parsed: MediaPlaylist

    @property
    def container(self) -> str:
        """``fmp4`` when segments need an init section (EXT-X-MAP), else ``ts``."""
        first = self.parsed.segments[0] if self.parsed.segments else None
        return "fmp4" if first is not None and first.map is not None else "ts"


class PlaylistCache:
    """Origin playlists compiled once into templates, keyed by film version.

    A re-ingest bumps ``movies.version``, which changes the key, so stale templates are
    simply never asked for again (and age out of the bounded cache).
    """

    def __init__(self, origin: OriginStore, *, max_entries: int = 2048) -> None:
        self.origin = origin
        self.max_entries = max_entries
        self._masters: dict[tuple[str, int, int, int], MasterTemplate] = {}
        self._audio: dict[tuple[str, int], tuple[str, ...]] = {}
        self._master_texts: dict[tuple[str, int], str] = {}
        self._media: dict[tuple[str, int, str], MediaEntry] = {}

    async def _read(self, key: str) -> str:
        data = await self.origin.read_bytes(key, max_size=MAX_PLAYLIST_BYTES)
        return decode_playlist(data)

    async def _master_text(self, movie: Movie) -> str:
        """The origin master playlist of a film version, read once (each tier's template
        and the audio list are built from it)."""
        cache_key = (movie.id, movie.version)
        text = self._master_texts.get(cache_key)
        if text is None:
            text = await self._read(movie.master_key or origin_key_for(movie.id, "master.m3u8"))
            self._remember(self._master_texts, cache_key, text)
        return text

    async def master(self, movie: Movie, *, max_height: int, preferred: int) -> MasterTemplate:
        cache_key = (movie.id, movie.version, max_height, preferred)
        found = self._masters.get(cache_key)
        if found is None:
            text = await self._master_text(movie)
            root = hls_root(movie.id)
            found = compile_master_playlist(
                text,
                playlist_path=root + "master.m3u8",
                root=root,
                max_height=max_height,
                preferred_height=preferred,
            )
            self._remember(self._masters, cache_key, found)
        return found

    async def audio_playlists(self, movie: Movie) -> tuple[str, ...]:
        """URL paths of the film's alternate-audio playlists (EXT-X-MEDIA TYPE=AUDIO):
        ad pods must line up in them as in the video renditions."""
        cache_key = (movie.id, movie.version)
        found = self._audio.get(cache_key)
        if found is None:
            text = await self._master_text(movie)
            root = hls_root(movie.id)
            found = tuple(
                resolve_uri(r.uri, root + "master.m3u8", root)
                for r in parse_master_playlist(text).renditions
                if r.type == "AUDIO" and r.uri
            )
            self._remember(self._audio, cache_key, found)
        return found

    async def media(self, movie_id: str, version: int, rendition: str, name: str) -> MediaEntry:
        cache_key = (movie_id, version, f"{rendition}/{name}")
        found = self._media.get(cache_key)
        if found is None:
            text = await self._read(origin_key_for(movie_id, rendition, name))
            root = hls_root(movie_id)
            playlist_path = f"{root}{rendition}/{name}"
            template = compile_media_playlist(text, playlist_path=playlist_path, root=root)
            parsed = parse_media_playlist(text)
            starts: dict[str, float] = {}
            elapsed = 0.0
            for segment in parsed.segments:
                # the path a player requests: resolved as the template resolved it (dot
                # segments, query and fragment), so progress finds every segment
                path = resolve_uri(segment.uri, playlist_path, root)
                starts.setdefault(path, elapsed)
                elapsed += segment.duration
            found = MediaEntry(template, starts, elapsed, text, parsed)
            self._remember(self._media, cache_key, found)
        return found

    def _remember(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        if len(table) >= self.max_entries:
            table.pop(next(iter(table)))
        table[key] = value

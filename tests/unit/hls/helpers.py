"""Shared data for the HLS core tests: the golden fixtures and a deterministic token."""

from __future__ import annotations

import hashlib
from pathlib import Path

from hls import PlaylistTemplate

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "playlists"
ROOT = "/hls/abc123/"
MASTER_PATH = "/hls/abc123/master.m3u8"

# Golden media playlists: fixture name -> URL path the playlist is served at.
MEDIA_CASES: dict[str, str] = {
    "vod_ts": "/hls/abc123/720p/index.m3u8",
    "fmp4_map": "/hls/abc123/1080p/index.m3u8",
    "byterange": "/hls/abc123/480p/index.m3u8",
    "aes128_keys": "/hls/abc123/720p/index.m3u8",
    "iframes": "/hls/abc123/720p/iframes.m3u8",
    "unknown_tags": "/hls/abc123/720p/index.m3u8",
    "crlf": "/hls/abc123/360p/index.m3u8",
    "query_and_dots": "/hls/abc123/720p/index.m3u8",
    "llhls": "/hls/abc123/720p/index.m3u8",
}

# Golden master playlists: expected-output label -> max_height (preferred is 480).
MASTER_CASES: dict[str, int | None] = {"max480": 480, "max720": 720, "all": None}

FOREIGN_MEDIA = (
    "foreign_absolute",
    "foreign_network_path",
    "foreign_escape_root",
    "foreign_key_skd",
    "foreign_data_uri",
)


def fake_token(path: str) -> str:
    """A deterministic stand-in for the real segment token of ``path``."""
    return "T" + hashlib.sha1(path.encode(), usedforsecurity=False).hexdigest()[:8]


def read_fixture(name: str) -> str:
    """Read a fixture exactly, CRLF and missing final newline included."""
    return (FIXTURES / name).read_bytes().decode("utf-8")


def render_fake(template: PlaylistTemplate) -> str:
    """Render ``template`` with `fake_token` for every slot."""
    return template.render([fake_token(path) for path in template.paths])

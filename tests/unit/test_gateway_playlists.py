"""The playlist cache: a segment's start time is found under the path a player requests."""

from __future__ import annotations

from pathlib import Path

from gateway.playlists import PlaylistCache, origin_key_for
from origin import LocalOrigin

MEDIA = """#EXTM3U
#EXT-X-TARGETDURATION:6
#EXT-X-PLAYLIST-TYPE:VOD
#EXTINF:4.000,
seg_00000.ts
#EXTINF:5.000,
./seg_00001.ts
#EXTINF:6.000,
../720p/seg_00002.ts?v=2
#EXTINF:4.000,
seg_00003.ts#frag
#EXTINF:4.000,
/hls/m1/720p/seg_00004.ts
#EXT-X-ENDLIST
"""


async def test_segment_starts_are_keyed_by_resolved_path(tmp_path: Path) -> None:
    origin = LocalOrigin(tmp_path)
    await origin.put_bytes(origin_key_for("m1", "720p", "index.m3u8"), MEDIA.encode())
    entry = await PlaylistCache(origin).media("m1", 1, "720p", "index.m3u8")
    # "./", "../720p/", a query and a fragment were kept in the key, so progress and ad
    # confirmation never found those segments
    assert entry.starts == {
        "/hls/m1/720p/seg_00000.ts": 0.0,
        "/hls/m1/720p/seg_00001.ts": 4.0,
        "/hls/m1/720p/seg_00002.ts": 9.0,
        "/hls/m1/720p/seg_00003.ts": 15.0,
        "/hls/m1/720p/seg_00004.ts": 19.0,
    }
    assert set(entry.starts) <= set(entry.template.paths)
    assert entry.duration == 23.0

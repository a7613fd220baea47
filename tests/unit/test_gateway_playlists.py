"""The playlist cache: a segment's start time is found under the path a player requests;
concurrent misses of one playlist share one read and compile."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.playlists import PlaylistCache, origin_key_for
from origin import LocalOrigin, ObjectNotFound

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


class CountingOrigin(LocalOrigin):
    """A local origin that counts reads (and can hold them until told)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: list[str] = []
        self.release = asyncio.Event()

    async def read_bytes(self, key: str, *, max_size: int) -> bytes:
        self.reads.append(key)
        await self.release.wait()
        return await super().read_bytes(key, max_size=max_size)


async def test_concurrent_misses_read_and_compile_once(tmp_path: Path) -> None:
    origin = CountingOrigin(tmp_path)
    await origin.put_bytes(origin_key_for("m1", "720p", "index.m3u8"), MEDIA.encode())
    cache = PlaylistCache(origin)
    waiters = [asyncio.ensure_future(cache.media("m1", 1, "720p", "index.m3u8")) for _ in range(16)]
    await asyncio.sleep(0)
    waiters[0].cancel()  # a viewer who went away does not cancel the others' build
    origin.release.set()
    entries = await asyncio.gather(*waiters[1:])
    assert origin.reads == [origin_key_for("m1", "720p", "index.m3u8")]
    assert all(entry is entries[0] for entry in entries)
    # afterwards it is cached; another version is another build
    assert await cache.media("m1", 1, "720p", "index.m3u8") is entries[0]
    await cache.media("m1", 2, "720p", "index.m3u8")
    assert len(origin.reads) == 2


async def test_a_failed_build_fails_its_waiters_and_is_tried_again(tmp_path: Path) -> None:
    origin = CountingOrigin(tmp_path)
    origin.release.set()
    cache = PlaylistCache(origin)
    results = await asyncio.gather(
        *(cache.media("m1", 1, "720p", "index.m3u8") for _ in range(4)), return_exceptions=True
    )
    assert all(isinstance(r, ObjectNotFound) for r in results)
    assert len(origin.reads) == 1
    await origin.put_bytes(origin_key_for("m1", "720p", "index.m3u8"), MEDIA.encode())
    assert (await cache.media("m1", 1, "720p", "index.m3u8")).duration == 23.0
    assert len(origin.reads) == 2

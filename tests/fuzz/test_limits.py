"""Bounded time and memory by a size limit, not by timing: input over the documented
`MAX_PLAYLIST_BYTES` is refused at every entry point (before any line is split), and
the largest inputs under it, such as 50 000 segments, are served correctly.

Each call does work linear in its input (one pass per line), so the limit bounds what
any playlist can cost; no test here measures time (the machine is shared and timings
flake).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.playlists import PlaylistCache, origin_key_for
from hls import (
    PlaylistError,
    Pod,
    compile_master_playlist,
    compile_media_playlist,
    parse_master_playlist,
    parse_media_playlist,
    stitch_media_playlist,
)
from hls.text import MAX_PLAYLIST_BYTES, decode_playlist
from origin import LocalOrigin, ObjectTooLarge
from tests.fuzz.hostile import (
    AD,
    MASTER_PATH,
    MEDIA_PATH,
    ROOT,
    check_signed,
    media_skeleton,
    signer,
)

TEN_MB_LINE = "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-KUSH-NOTE:" + "x" * 10_000_000 + "\n"


def _readers() -> list[tuple[str, object]]:
    return [
        ("parse media", parse_media_playlist),
        ("parse master", parse_master_playlist),
        (
            "compile media",
            lambda text: compile_media_playlist(text, playlist_path=MEDIA_PATH, root=ROOT),
        ),
        (
            "compile master",
            lambda text: compile_master_playlist(
                text, playlist_path=MASTER_PATH, root=ROOT, max_height=None, preferred_height=None
            ),
        ),
        (
            "stitch",
            lambda text: stitch_media_playlist(
                text,
                playlist_path=MEDIA_PATH,
                root=ROOT,
                pods=(Pod(index=0, at_s=0.0, ads=(AD,)),),
                content_height=720,
                content_container="ts",
            ),
        ),
    ]


@pytest.mark.parametrize("size", [MAX_PLAYLIST_BYTES + 1, len(TEN_MB_LINE)])
def test_over_the_limit_is_refused_everywhere(size: int) -> None:
    text = (TEN_MB_LINE + "#" * size)[:size]
    with pytest.raises(PlaylistError, match="over"):
        decode_playlist(text.encode())
    for name, reader in _readers():
        with pytest.raises(PlaylistError, match="over"):
            reader(text)  # type: ignore[operator]
        assert name


def test_a_ten_megabyte_line_is_refused_at_the_origin(tmp_path: Path) -> None:
    async def load() -> None:
        origin = LocalOrigin(tmp_path)
        await origin.put_bytes(origin_key_for("m1", "720p", "index.m3u8"), TEN_MB_LINE.encode())
        await PlaylistCache(origin).media("m1", 1, "720p", "index.m3u8")

    with pytest.raises(ObjectTooLarge):
        asyncio.run(load())


def test_a_limit_sized_line_is_read_in_one_pass() -> None:
    # just under the limit, one line: refused for what it is (no target duration), not
    # for its size, and without splitting it character by character
    text = "#EXTM3U\n#EXT-X-KUSH-NOTE:" + "x" * (MAX_PLAYLIST_BYTES - 40) + "\n"
    assert len(text) <= MAX_PLAYLIST_BYTES
    with pytest.raises(PlaylistError, match="TARGETDURATION"):
        compile_media_playlist(text, playlist_path=MEDIA_PATH, root=ROOT)


@pytest.mark.slow
def test_fifty_thousand_segments_are_served() -> None:
    text = "\n".join(media_skeleton(50_000, key=True, fmp4=False, byterange=False)) + "\n"
    assert len(text.encode()) < MAX_PLAYLIST_BYTES
    template = compile_media_playlist(text, playlist_path=MEDIA_PATH, root=ROOT)
    assert len(template.paths) == 50_001  # the segments and the key
    output = template.render(signer().sign_many(template.paths))
    # every URI line has its token; the oracle checks the ends in full
    assert output.count("?t=") == 50_001
    lines = output.split("\n")
    assert check_signed("\n".join(lines[:400] + lines[-400:]), MEDIA_PATH) > 390
    assert len(parse_media_playlist(output).segments) == 50_000
    pods = [Pod(index=i, at_s=i * 20_000.0, ads=(AD,)) for i in range(10)]
    stitched = stitch_media_playlist(
        text,
        playlist_path=MEDIA_PATH,
        root=ROOT,
        pods=pods,
        content_height=720,
        content_container="ts",
    )
    assert len(stitched.pods) == 10
    assert len(stitched.content_segments) == 50_000

"""An independent oracle: the `m3u8` library reads our output and every URI is signed.

m3u8 is only a test dependency; the package never imports it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import m3u8
import pytest

from hls import (
    PlaylistTemplate,
    compile_master_playlist,
    compile_media_playlist,
    resolve_uri,
)
from tests.unit.hls.helpers import (
    MASTER_CASES,
    MASTER_PATH,
    MEDIA_CASES,
    ROOT,
    fake_token,
    read_fixture,
    render_fake,
)


def uris_seen_by_m3u8(playlist: Any) -> Iterator[str]:
    """Every URI m3u8 found: segments, parts, maps, keys, hints, reports, playlists."""
    for segment in playlist.segments:
        if segment.uri is not None:
            yield segment.uri
        yield from (part.uri for part in segment.parts)
        if segment.init_section is not None:
            yield segment.init_section.uri
    yield from (key.uri for key in playlist.keys if key is not None and key.uri is not None)
    yield from (key.uri for key in playlist.session_keys if key is not None)
    yield from (section.uri for section in playlist.segment_map)
    if playlist.preload_hint is not None:
        yield playlist.preload_hint.uri
    yield from (report.uri for report in playlist.rendition_reports)
    yield from (variant.uri for variant in playlist.playlists)
    yield from (variant.uri for variant in playlist.iframe_playlists)
    yield from (media.uri for media in playlist.media if media.uri is not None)


def check_every_uri_is_signed(output: str, template: PlaylistTemplate, base: str) -> None:
    seen: set[str] = set()
    for uri in uris_seen_by_m3u8(m3u8.loads(output)):
        resolved = resolve_uri(uri, base, ROOT)
        token = fake_token(resolved)
        assert parse_qs(urlsplit(uri).query)["t"] == [token], uri
        assert uri.partition("#")[0].endswith(f"t={token}"), uri
        # Players check extensions: the file name stays at the end of the path.
        assert urlsplit(uri).path.rsplit("/", 1)[-1] == resolved.rsplit("/", 1)[-1]
        seen.add(resolved)
    # m3u8 and our compiler agree on which resources a player will fetch.
    assert seen == set(template.paths)


@pytest.mark.parametrize("name", sorted(MEDIA_CASES))
def test_media_playlists(name: str) -> None:
    base = MEDIA_CASES[name]
    template = compile_media_playlist(read_fixture(f"{name}.m3u8"), playlist_path=base, root=ROOT)

    check_every_uri_is_signed(render_fake(template), template, base)


@pytest.mark.parametrize(("label", "max_height"), sorted(MASTER_CASES.items()))
def test_master_playlists(label: str, max_height: int | None) -> None:
    master = compile_master_playlist(
        read_fixture("master.m3u8"),
        playlist_path=MASTER_PATH,
        root=ROOT,
        max_height=max_height,
        preferred_height=480,
    )

    check_every_uri_is_signed(render_fake(master.template), master.template, MASTER_PATH)


def test_m3u8_reads_the_same_segments_before_and_after() -> None:
    source = read_fixture("unknown_tags.m3u8")
    template = compile_media_playlist(source, playlist_path=MEDIA_CASES["unknown_tags"], root=ROOT)
    before = m3u8.loads(source)
    after = m3u8.loads(render_fake(template))

    assert [s.duration for s in after.segments] == [s.duration for s in before.segments]
    assert [s.title for s in after.segments] == [s.title for s in before.segments]
    assert [s.discontinuity for s in after.segments] == [s.discontinuity for s in before.segments]
    assert [s.cue_out for s in after.segments] == [s.cue_out for s in before.segments]
    assert after.media_sequence == before.media_sequence == 100

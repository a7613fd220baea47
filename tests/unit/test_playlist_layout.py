"""Byte layouts of playlist templates (gateway.playlists.TokenLayout): the bytes served
are exactly the template rendered with the session's version 2 tokens, every token
verifies for its own path, and layouts are reused per template."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.playlists import Layouts, TokenLayout
from hls import PlaylistTemplate, compile_media_playlist
from tokens import SegmentKeyring, new_session_id, verify_segment_token

NOW = 1_700_000_000
EXPIRES = NOW + 3600
ROOT = "/hls/6f1c2a9e-4b7d-4c1e-8f0a-1234567890ab/"

SOURCE = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:6
#EXT-X-START:TIME-OFFSET=2.0
#EXT-X-MAP:URI="init.mp4"
#X-UNKNOWN-TAG:kept byte for byte, even "ünïcödé"
#EXT-X-KEY:METHOD=AES-128,URI="../keys/k1.key"
#EXTINF:6.0,
seg_00000.m4s
#EXT-X-BYTERANGE:1000@0
#EXTINF:6.0,
seg_00001.m4s?x=1
#EXT-X-BYTERANGE:1000@1000
#EXTINF:6.0,
seg_00001.m4s?x=1
#EXT-X-ENDLIST
"""


def _template(text: str = SOURCE) -> PlaylistTemplate:
    return compile_media_playlist(text, playlist_path=ROOT + "720p/index.m3u8", root=ROOT)


@pytest.mark.parametrize("start_offset", [None, 0.0, 12.5, -30.0])
def test_layout_renders_the_template_byte_for_byte(start_offset: float | None) -> None:
    ring = SegmentKeyring({3: bytes(range(32))}, 3)
    template = _template()
    layout = TokenLayout(template)
    sealer = ring.session_sealer(new_session_id(), EXPIRES)
    body = layout.render(sealer, start_offset=start_offset)
    tokens = sealer.sign_many(template.paths)
    assert body == template.render(tokens, start_offset=start_offset).encode("utf-8")
    for token, path in zip(tokens, template.paths, strict=True):
        assert verify_segment_token(ring, token, path, now=NOW).session_id == sealer.session_id


def test_digests_are_computed_once_per_key_ring() -> None:
    ring = SegmentKeyring({3: bytes(range(32))}, 3)
    layout = TokenLayout(_template())
    first = layout.digests(ring.path_hasher())
    assert layout.digests(ring.path_hasher()) is first
    rotated = ring.with_key(4, bytes(range(1, 33)))
    assert layout.digests(rotated.path_hasher()) != first
    sealer = rotated.session_sealer(new_session_id(), EXPIRES)
    body = layout.render(sealer).decode()
    assert body == layout.template.render(sealer.sign_many(layout.template.paths))


def test_a_playlist_without_uris() -> None:
    template = PlaylistTemplate(chunks=("#EXTM3U\n#EXT-X-ENDLIST\n",), paths=())
    sealer = SegmentKeyring({1: bytes(32)}, 1).session_sealer(new_session_id(), EXPIRES)
    assert TokenLayout(template).render(sealer) == b"#EXTM3U\n#EXT-X-ENDLIST\n"


def test_layouts_are_kept_per_template_and_bounded() -> None:
    layouts = Layouts(max_entries=2)
    a, b, c = _template(), _template(), _template()
    assert layouts.of(a) is layouts.of(a)
    assert layouts.of(b).template is b
    layouts.of(c)
    assert len(layouts) == 2


@settings(max_examples=60, deadline=None)
@given(
    names=st.lists(st.from_regex(r"[a-z0-9_]{1,12}\.ts", fullmatch=True), min_size=1),
    start=st.none() | st.floats(-100, 100, allow_nan=False),
)
def test_any_segment_list(names: list[str], start: float | None) -> None:
    text = "#EXTM3U\n#EXT-X-TARGETDURATION:6\n"
    text += "".join(f"#EXTINF:6.0,\n{name}\n" for name in names) + "#EXT-X-ENDLIST\n"
    template = _template(text)
    sealer = SegmentKeyring({1: bytes(32)}, 1).session_sealer(new_session_id(), EXPIRES)
    expected = template.render(sealer.sign_many(template.paths), start_offset=start)
    assert TokenLayout(template).render(sealer, start_offset=start) == expected.encode()


def test_holes_are_grouped_into_equally_spaced_runs() -> None:
    from gateway.playlists import _blocks, _runs

    assert _runs([]) == []
    assert _runs([5]) == [(5, 44, 0, 1)]
    assert _runs([0, 50, 100, 150, 210, 300, 390]) == [(0, 50, 0, 4), (210, 90, 4, 3)]
    assert _runs([0, 50, 120]) == [(0, 50, 0, 2), (120, 44, 2, 1)]
    # a pod of 2 and 3 content lines, three times at a period of 400 bytes and 5 holes,
    # then a last, shorter content run: three blocks
    runs = [(0, 60, 0, 2), (150, 50, 2, 3), (400, 60, 5, 2), (550, 50, 7, 3)]
    runs += [(800, 60, 10, 2), (950, 50, 12, 3), (1200, 50, 15, 2)]
    assert _blocks(runs) == [
        (0, 400, 0, 5, 3, 60, 2),
        (150, 400, 2, 5, 3, 50, 3),
        (1200, 0, 15, 0, 1, 50, 2),
    ]


@settings(max_examples=60, deadline=None)
@given(
    blocks=st.lists(
        st.tuples(st.integers(1, 14), st.integers(1, 9), st.booleans()), min_size=1, max_size=8
    ),
    start=st.none() | st.floats(-100, 100, allow_nan=False),
)
def test_runs_of_any_length_and_spacing(
    blocks: list[tuple[int, int, bool]], start: float | None
) -> None:
    """Blocks of segment lines of one length (long runs, filled by one strided copy)
    between lines of other lengths and tags (short runs, filled one by one)."""
    text = "#EXTM3U\n#EXT-X-TARGETDURATION:6\n"
    number = 0
    for count, width, with_tag in blocks:
        if with_tag:
            text += "#EXT-X-DISCONTINUITY\n"
        for _ in range(count):
            text += f"#EXTINF:6.0,\ns{number:0{width}d}.ts\n"
            number += 1
    template = _template(text + "#EXT-X-ENDLIST\n")
    ring = SegmentKeyring({1: bytes(32)}, 1)
    sealer = ring.session_sealer(new_session_id(), EXPIRES)
    body = TokenLayout(template).render(sealer, start_offset=start)
    tokens = sealer.sign_many(template.paths)
    assert body == template.render(tokens, start_offset=start).encode()


@pytest.mark.parametrize(("pods", "names"), [(1, 10), (3, 10), (12, 10), (12, 100)])
def test_stitched_pods_at_a_regular_cadence(pods: int, names: int) -> None:
    """Pods of ad lines and the content between them, repeated: each kind of run is one
    2-D copy (rows > 1), the irregular ones copied alone; same bytes as the template.
    With ``names`` 100 the pods from the tenth on are a byte longer (as a stitched
    playlist's ``ad-10`` is): more blocks, filled from whole tokens."""
    text = "#EXTM3U\n#EXT-X-TARGETDURATION:6\n"
    for pod in range(pods):
        text += "#EXT-X-DISCONTINUITY\n"
        text += "".join(f"#EXTINF:5.0,\n../ads/a{pod % names}_{k}.ts\n" for k in range(3))
        text += "#EXT-X-DISCONTINUITY\n"
        text += "".join(f"#EXTINF:6.0,\nseg_{pod:03d}{k:02d}.ts\n" for k in range(7))
    template = _template(text + "#EXT-X-ENDLIST\n")
    layout = TokenLayout(template)
    if pods > 1:
        longest = pods if names == 10 else 10  # pods 10 and 11 start a second block
        assert max(block[4] for block in layout._blocks) == longest
    for start in (None, 30.0):
        sealer = SegmentKeyring({1: bytes(32)}, 1).session_sealer(new_session_id(), EXPIRES)
        expected = template.render(sealer.sign_many(template.paths), start_offset=start)
        assert layout.render(sealer, start_offset=start) == expected.encode()

"""Compiling media playlists into templates: golden outputs, pass-through, refusals."""

from __future__ import annotations

import pytest

from hls import (
    ForeignUriError,
    PlaylistError,
    PlaylistTemplate,
    compile_media_playlist,
)
from hls.lines import LineKind, split_lines
from tests.unit.hls.helpers import (
    FOREIGN_MEDIA,
    MEDIA_CASES,
    ROOT,
    fake_token,
    read_fixture,
    render_fake,
)

MEDIA = "/hls/abc123/720p/index.m3u8"


def compile_fixture(name: str) -> PlaylistTemplate:
    return compile_media_playlist(
        read_fixture(f"{name}.m3u8"), playlist_path=MEDIA_CASES[name], root=ROOT
    )


@pytest.mark.parametrize("name", sorted(MEDIA_CASES))
def test_golden_output(name: str) -> None:
    template = compile_fixture(name)

    assert render_fake(template) == read_fixture(f"{name}.expected.m3u8")


@pytest.mark.parametrize("name", sorted(MEDIA_CASES))
def test_every_other_line_passes_through_in_order(name: str) -> None:
    source = read_fixture(f"{name}.m3u8")
    output = render_fake(compile_fixture(name))
    kept = [
        line
        for line in split_lines(source)
        if line.kind is not LineKind.URI and 'URI="' not in line.text
    ]

    # Compare whole lines, terminators included, as a subsequence of the output.
    remaining = iter(split_lines(output))
    for line in kept:
        assert any((o.text, o.eol) == (line.text, line.eol) for o in remaining), line


def test_unknown_tags_start_offset_replaces_the_source_start() -> None:
    template = compile_fixture("unknown_tags")
    tokens = [fake_token(path) for path in template.paths]

    assert template.render(tokens, start_offset=95) == read_fixture(
        "unknown_tags.start95.expected.m3u8"
    )


def test_start_offset_is_inserted_after_extm3u() -> None:
    template = compile_fixture("vod_ts")
    output = template.render([""] * len(template.paths), start_offset=1234.56789)

    assert output.startswith(
        "#EXTM3U\n#EXT-X-START:TIME-OFFSET=1234.568,PRECISE=YES\n#EXT-X-VERSION:3\n"
    )
    assert output.count("#EXT-X-START") == 1


def test_start_offset_uses_the_playlist_line_ending() -> None:
    template = compile_fixture("crlf")
    output = template.render([""] * len(template.paths), start_offset=0)

    assert output.startswith("#EXTM3U\r\n#EXT-X-START:TIME-OFFSET=0.000,PRECISE=YES\r\n")


def test_start_after_first_segment_is_still_replaced() -> None:
    text = "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\na.ts\n#EXT-X-START:TIME-OFFSET=3\n"
    template = compile_media_playlist(text, playlist_path=MEDIA, root=ROOT)

    assert template.render(["X"], start_offset=-6) == (
        "#EXTM3U\n#EXT-X-START:TIME-OFFSET=-6.000,PRECISE=YES\n"
        "#EXT-X-TARGETDURATION:6\n#EXTINF:6,\na.ts?t=X\n"
    )
    # Without an offset the source's start survives (moved up to the header).
    assert template.render(["X"]).count("#EXT-X-START:TIME-OFFSET=3\n") == 1


def test_start_offset_must_be_finite() -> None:
    template = compile_fixture("vod_ts")

    with pytest.raises(ValueError, match="finite"):
        template.render([""] * len(template.paths), start_offset=float("nan"))


def test_render_needs_one_token_per_path() -> None:
    template = compile_fixture("vod_ts")

    with pytest.raises(ValueError, match="expected 6 tokens"):
        template.render(["a"])


def test_paths_follow_slot_order_with_one_slot_per_occurrence() -> None:
    template = compile_fixture("byterange")

    assert template.paths == ("/hls/abc123/480p/main.mp4",) * 5
    assert len(template.chunks) == 6


def test_key_method_none_is_not_tokenized() -> None:
    template = compile_fixture("aes128_keys")

    assert "/hls/abc123/keys/k0001.key" in template.paths
    assert "/hls/abc123/720p/k0002.key" in template.paths
    assert len(template.paths) == 7  # 5 segments + 2 keys
    assert "#EXT-X-KEY:METHOD=NONE\n" in render_fake(template)


def test_missing_final_newline_is_kept() -> None:
    text = "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\nlast.ts"
    template = compile_media_playlist(text, playlist_path=MEDIA, root=ROOT)

    assert template.render(["X"]) == text + "?t=X"


def test_whitespace_around_a_uri_line_is_kept() -> None:
    text = "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\n  a.ts \n"
    template = compile_media_playlist(text, playlist_path=MEDIA, root=ROOT)

    assert template.render(["X"]) == "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\n  a.ts?t=X \n"


@pytest.mark.parametrize("name", FOREIGN_MEDIA)
def test_foreign_uris_are_refused(name: str) -> None:
    with pytest.raises(ForeignUriError):
        compile_media_playlist(read_fixture(f"{name}.m3u8"), playlist_path=MEDIA, root=ROOT)


HEAD = "#EXTM3U\n#EXT-X-TARGETDURATION:6\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "#EXTM3U"),
        ("\ufeff#EXTM3U\n#EXT-X-TARGETDURATION:6\n", "#EXTM3U"),
        ("#EXT-X-TARGETDURATION:6\n#EXTINF:6,\na.ts\n", "#EXTM3U"),
        (HEAD + "#EXTINF:6,\na.ts\n#EXTINF:6,\n", "without a URI line"),
        (HEAD + "#EXTINF:6,\n#EXT-X-BYTERANGE:10@0\n", "without a URI line"),
        (HEAD + "a.ts\n", "URI line without EXTINF"),
        ("#EXTM3U\n#EXTINF:6,\na.ts\n", "EXT-X-TARGETDURATION"),
        (HEAD + "#EXTINF:six,\na.ts\n", "decimal-floating-point"),
        (HEAD + "#EXTINF:6,\n#EXT-X-BYTERANGE:abc\na.ts\n", "byte range"),
        (HEAD + "#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n", "in a media playlist"),
        (HEAD + "#EXT-X-KEY:METHOD=AES-128\n", "without URI"),
        (HEAD + '#EXT-X-KEY:URI="k.key"\n', "without METHOD"),
        (HEAD + '#EXT-X-MAP:BYTERANGE="1@0"\n', "without URI"),
        (HEAD + "#EXT-X-MAP:URI=init.mp4\n", "quoted-string"),
        (HEAD + '#EXT-X-MAP:URI=""\n', "empty URI"),
        (HEAD + "#EXTINF:6,\na.ts?t=old\n", "already has a t= parameter"),
        (HEAD + "#EXT-X-START:TIME-OFFSET=1\n#EXT-X-START:TIME-OFFSET=2\n", "more than one"),
    ],
)
def test_malformed_playlists_are_refused(text: str, message: str) -> None:
    with pytest.raises(PlaylistError, match=message):
        compile_media_playlist(text, playlist_path=MEDIA, root=ROOT)


def test_errors_carry_the_line_number() -> None:
    with pytest.raises(PlaylistError) as caught:
        compile_media_playlist(
            HEAD + "#EXTINF:6,\nhttps://x.example/a.ts\n", playlist_path=MEDIA, root=ROOT
        )

    assert caught.value.line == 4
    assert str(caught.value).startswith("line 4: ")


def test_playlist_must_live_under_root() -> None:
    with pytest.raises(ValueError, match="must be a file under"):
        compile_media_playlist(HEAD, playlist_path="/hls/other/720p/index.m3u8", root=ROOT)


def test_template_checks_its_shape() -> None:
    with pytest.raises(ValueError, match="one more chunk"):
        PlaylistTemplate(chunks=("a",), paths=("/p",))
